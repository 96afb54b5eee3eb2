"""Run folders loaded once, for reports, studies and notebooks: each run's resolved config, metrics, summary, the
probes it logged (as :class:`~bioplausible.probes.spec.ProbeSpec`) and the labels its rule and architecture
declare.

Runs written by older versions are made comparable: settings their config lacks get today's defaults, and their
rule's and architecture's options are resolved from the registry's defaults (a run from before resolved configs
stored only the options given). Their probes, from before ``probes.json``, are inferred from the metric keys
present, with the specs that the package's rules and the engine declare for those kinds. A folder that cannot be
read is named with the version that wrote it, in one line, and left out.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from ..config import SETTINGS, TrainConfig
from ..errors import BioplausibleError
from ..probes.spec import ALIGNMENT_PROBES, ProbeSpec
from ..registry import ARCHS, DATASETS, RULES, Registry, dataset_defaults
from ..runs import RunFolder, read_json


@dataclass
class Run:
    """One run folder, read once. ``config`` is resolved (see the module docstring); ``metrics`` holds one record
    per epoch and ``step_metrics`` the evaluations at ``eval_steps``."""

    path: Path
    config: dict[str, Any]
    summary: dict[str, Any]
    metrics: list[dict[str, Any]] = field(default_factory=list)
    step_metrics: list[dict[str, Any]] = field(default_factory=list)
    probes: tuple[ProbeSpec, ...] = ()
    rule_label: str = ""
    arch_label: str = ""

    @property
    def rule(self) -> str:
        return str(self.config.get("rule"))

    @property
    def arch(self) -> str:
        return str(self.config.get("arch"))

    @property
    def data(self) -> str:
        """What the run trained on: its loader's description ("CIFAR-10 (JPEG q75)"), else the dataset's name."""
        source = self.config.get("data_source") or {}
        return source.get("description") or self.summary.get("data") or str(self.config.get("dataset"))

    def test_error(self, which: str = "test_accuracy") -> float:
        """100 × (1 − the summary's ``which`` accuracy), in %; NaN when it is missing."""
        value = self.summary.get(which)
        return math.nan if value is None else 100 * (1 - value)

    def __getitem__(self, key: str) -> Any:
        """Dict-style access (``run["config"]``) for code written against ``runs.load_run``."""
        return str(self.path) if key == "path" else getattr(self, key)


@dataclass
class Loaded:
    """The runs under a folder, sorted by path, and one line per folder that could not be read."""

    runs: list[Run]
    problems: list[str]


class UnreadableRun(BioplausibleError):
    """A run folder whose files cannot be read."""


def run_folders(root: str | Path) -> list[Path]:
    """Every run folder (one holding summary.json) under ``root``, sorted."""
    return sorted(p.parent for p in Path(root).rglob("summary.json"))


def load_runs(root: str | Path) -> Loaded:
    """Read every run folder under ``root`` once; see the module docstring."""
    runs, problems = [], []
    for path in run_folders(root):
        try:
            runs.append(load(path))
        except UnreadableRun as err:
            problems.append(str(err))
    for path in sorted(p.parent for p in Path(root).rglob("config.json")):
        if not (path / "summary.json").exists():  # said, not silently dropped
            problems.append(f"{path} holds config.json but no summary.json, so it is left out (a run stopped before "
                            "its first summary, or copied in part)")  # fmt: skip
    distinguish(runs)
    return Loaded(runs, problems)


def load(path: str | Path) -> Run:
    """One run folder as a :class:`Run`. Raises UnreadableRun naming the file, the problem and the version."""
    folder = RunFolder(path)
    reading = folder.summary  # the file being read, named in the error
    try:
        summary = _mapping(read_json(reading), reading)
        for key in ("test_accuracy", "best_test_accuracy", "train_accuracy"):  # compared and averaged later
            if not isinstance(summary.get(key, 0.0), (int, float, type(None))):
                raise ValueError(f"{key} is {summary[key]!r}, not a number")
        reading = folder.config
        config = _mapping(read_json(reading), reading) if reading.exists() else {}
        reading = folder.metrics
        records = folder.read_metrics()
        if not all(isinstance(r, dict) for r in records):
            raise ValueError("a line that is not a JSON object")
        reading = folder.probes
        declared = read_json(reading) if reading.exists() else None
        specs = None if declared is None else tuple(ProbeSpec.from_dict(d) for d in declared)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
        raise UnreadableRun(f"{reading}: unreadable ({err}); written by {_writer(folder)}") from None
    try:  # valid JSON of the wrong shape (options as a list, an accuracy as text)
        return make_run(folder.path, config, summary, records, specs)
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise UnreadableRun(
            f"{folder.path}: unreadable ({type(err).__name__}: {err}); written by {_writer(folder)}"
        ) from None


def make_run(
    path: str | Path,
    config: dict[str, Any],
    summary: dict[str, Any],
    records: Iterable[dict[str, Any]] = (),
    probes: Iterable[ProbeSpec] | None = None,
) -> Run:
    """A Run from its parts: the config resolved, the records split, the probes inferred when not declared."""
    records = list(records)
    config = resolve(config)
    epochs = [r for r in records if r.get("eval") != "step"]
    specs = tuple(probes) if probes is not None else inferred_probes(epochs)
    return Run(
        path=Path(path),
        config=config,
        summary=summary,
        metrics=epochs,
        step_metrics=[r for r in records if r.get("eval") == "step"],
        probes=specs,
        rule_label=describe(RULES, config.get("rule"), config.get("rule_options") or {}),
        arch_label=describe(ARCHS, config.get("arch"), config.get("arch_options") or {}),
    )


def as_run(run: Run | dict[str, Any]) -> Run:
    """A Run, from a Run or a ``runs.load_run``-style dict (path, config, summary, metrics, ...)."""
    if isinstance(run, Run):
        return run
    records = [*run.get("metrics", []), *run.get("step_metrics", [])]
    probes = run.get("probes")
    specs = None if probes is None else [p if isinstance(p, ProbeSpec) else ProbeSpec.from_dict(p) for p in probes]
    return make_run(run.get("path", ""), run.get("config", {}), run.get("summary", {}), records, specs)


def _mapping(data: Any, path: Path) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} holds {type(data).__name__}, not an object")
    return data


def _writer(folder: RunFolder) -> str:
    """ "bioplausible <version>" from whichever of the folder's JSON files still reads."""
    for path in (folder.summary, folder.config):
        try:
            version = read_json(path).get("version")
        except (OSError, ValueError, AttributeError):
            continue
        if version:
            return f"bioplausible {version}"
    return "an unknown version of bioplausible"


# ----------------------------------------------------------------------------------------------- resolving


def _plain(value: Any) -> Any:
    """As JSON has it: tuples become lists."""
    return json.loads(json.dumps(value))


@cache
def _core_defaults() -> dict[str, Any]:
    return _plain({k: v for k, v in TrainConfig().to_dict().items() if k in SETTINGS})


def registered(registry: Registry, name: Any) -> Any:
    """The registered class for ``name``, or None for a name this installation does not know."""
    return registry.get(name) if isinstance(name, str) and name in registry else None


def option_defaults(cls: Any) -> dict[str, Any]:
    """Every option of a rule's or architecture's ``Config`` with its default, as JSON has it."""
    config = getattr(cls, "Config", None)
    if config is None or not dataclasses.is_dataclass(config):
        return {}
    defaults = {}
    for f in dataclasses.fields(config):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            defaults[f.name] = f.default_factory()
    return _plain(defaults)


def resolve(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of a run's config with missing settings at today's defaults and the rule's and architecture's options
    completed from their declared defaults (options of an unregistered rule or architecture stay as given)."""
    config = _plain(config)
    for key, value in _core_defaults().items():
        config.setdefault(key, value)
    for group, registry, owner in (("rule_options", RULES, "rule"), ("arch_options", ARCHS, "arch")):
        cls = registered(registry, config.get(owner))
        config[group] = {**(option_defaults(cls) if cls else {}), **(config.get(group) or {})}
    # a run written before its dataset recorded its options' defaults (MNIST's expected_counts) must read as the
    # same configuration as one written after: a study would otherwise split its seeds into two configurations
    known = registered(DATASETS, config.get("dataset")) is not None
    defaults = _plain(dataset_defaults(config["dataset"])) if known else {}
    config["dataset_options"] = {**defaults, **(config.get("dataset_options") or {})}
    return config


def describe(registry: Registry, name: Any, options: dict[str, Any]) -> str:
    """The label the rule or architecture declares for these options (its ``describe``); else its name."""
    cls = registered(registry, name)
    label = getattr(cls, "describe", None)
    if label is None:
        return str(name)
    try:
        return label(options)
    except (KeyError, TypeError, ValueError):  # options of an older version the declaration does not expect
        return str(name)


def distinguish(runs: list[Run]) -> None:
    """Runs whose architecture (or rule) label is the same but whose architecture (rule) options differ (the label
    its ``describe`` declares does not show every option, or there is none): append the options in which they
    differ, ``energy-net topology=skip p=0.04``, ``ep nudging=symmetric cost=ce``, in place."""
    for kind in ("arch", "rule"):
        groups: dict[tuple[str, str], list[Run]] = {}
        for run in runs:
            groups.setdefault((getattr(run, kind), getattr(run, f"{kind}_label")), []).append(run)
        for (_, label), group in groups.items():
            options = [r.config.get(f"{kind}_options") or {} for r in group]
            keys = list(dict.fromkeys(k for o in options for k in o))
            varying = [k for k in keys if len({json.dumps(o.get(k), sort_keys=True) for o in options}) > 1]
            for run, o in zip(group, options):
                setattr(run, f"{kind}_label", " ".join([label, *(f"{k}={_short(o.get(k))}" for k in varying)]))


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ",".join(_short(v) for v in value)
    return str(value)


# ----------------------------------------------------------------------------------------------- probes


@cache
def declared_probes() -> dict[str, ProbeSpec]:
    """kind -> spec, from the engine's generic probes and every registered rule's declaration."""
    specs = {spec.kind: spec for spec in ALIGNMENT_PROBES}
    for name in RULES.list():
        for spec in getattr(RULES.get(name), "probes", ()):
            specs.setdefault(spec.kind, spec)
    return specs


def inferred_probes(records: list[dict[str, Any]]) -> tuple[ProbeSpec, ...]:
    """The probes a run from before probes.json logged, from its ``probe/<kind>[/<layer>]`` keys, in first-seen
    order; a kind nobody declares gets a spec named by its kind."""
    kinds: dict[str, bool] = {}
    for record in records:
        for key in record:
            if key.startswith("probe/"):
                kind, _, layer = key[len("probe/") :].partition("/")
                kinds.setdefault(kind, bool(layer))
    known = declared_probes()
    return tuple(known.get(kind) or ProbeSpec(kind, kind, per_layer=per_layer) for kind, per_layer in kinds.items())
