"""Sweeps through Optuna: a study spec (YAML or a dict) -> one run folder per trial, resumable and shareable.

A spec::

    name: lr-by-rule                 # optional; the Optuna study name (default: the folder's name)
    notes: what was reduced, why     # optional; printed by the report
    base:                            # TrainConfig fields every trial shares
      dataset: synthetic
      epochs: 1
      arch: mlp
      arch_options: {depth: 2, width: 16}
    grid:                            # field -> values; the trials are the product of the lists
      rule: [bp, fa]
      lr: [0.01, 0.1]
      rule_options.feedback_scale: [1.0]
    seeds: [0, 1]                    # a grid axis (grid), or every seed per trial (random search)
    overrides: {epochs: 1}           # set by the command line's --epochs etc.: base settings that replaced the
                                     # spec's (the report prints them beside the notes)
    random:                          # random search: n_trials samples per grid point (the points take turns)
      n_trials: 20
      sampler: tpe                   # tpe | random
      seed: 0                        # random: trial k's values depend on (seed, k) alone, in any worker
      params:
        lr: {low: 1.0e-4, high: 0.1, log: true}
        arch_options.depth: {low: 2, high: 5}        # integers when both bounds are integers
        rule_options.schedule: {choices: [parallel, alternating]}

``grid`` may also be a list of such mappings: the trials are then the union of their products (e.g. a different
lr grid per rule). Each trial trains with ``fit`` into ``<study_dir>/runs/<trial number>`` and scores the test
accuracy at the best validation epoch (when there is a validation split), else the final test accuracy. A
diverged run is a COMPLETE trial at chance accuracy (user attr ``status=diverged``); a failed run is a FAIL trial;
the study goes on after both.

Resuming: the default storage is ``sqlite:///<study_dir>/study.db``; a rerun loads the study and runs only the
grid points no trial has taken. A RUNNING trial whose process is gone (same host, pid not alive) or whose Optuna
heartbeat stopped is marked FAIL and queued again with the same parameters; the retry continues the killed run's
folder from its last checkpoint. A trial interrupted by Ctrl-C (SIGINT) is retried the same way by the next run:
``run_sweep`` then raises ``KeyboardInterrupt`` whose message says so, with no Optuna traceback. A FAIL trial with
an error (its data missing, say) is retried once by each later run, since its cause may have been fixed. Workers
queue these retries one at a time (a file lock in the study folder), so two starting together retry a trial once;
a queued retry carries none of the attempt's worker, error or interruption. With any
SQLAlchemy URL (``postgresql://...``) many workers share one study: the
GridSampler gives trial number k the grid point k (trial numbers are unique in the database), so workers never
take the same point.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
import os
import random
import re
import socket
import sys
import time
import typing
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import yaml
from filelock import FileLock
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from ..analysis.grid import chosen, grids_of, points_of
from ..analysis.results import score
from ..config import FACTS, TrainConfig
from ..errors import ConfigError

SPEC_KEYS = {"name", "notes", "base", "grid", "random", "seeds", "study", "overrides"}
OPTION_GROUPS = ("rule_options", "arch_options", "dataset_options")
HEARTBEAT_S = 30  # Optuna marks a RUNNING trial whose worker stopped beating for GRACE_S as failed
GRACE_S = 120
WORKER = f"{socket.gethostname()}:{os.getpid()}"


# ----------------------------------------------------------------------------------------------- the spec


class SpecLoader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-3`` (no dot) as a string; a spec means the number."""


SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_spec(spec: str | Path | dict[str, Any]) -> dict[str, Any]:
    """A checked spec from a dict, a YAML file or a preset name (``skip-connections``, ...)."""
    if isinstance(spec, dict):
        data = spec
    else:
        path = Path(spec)
        if path.suffix in (".yaml", ".yml", ".json") or path.exists():
            try:
                data = yaml.load(path.read_text(), Loader=SpecLoader)  # SpecLoader is a SafeLoader
            except OSError as err:
                raise ConfigError(f"cannot read the study spec {path}: {err}") from None
            except yaml.YAMLError as err:
                raise ConfigError(f"the study spec {path} is not valid YAML: {err}") from None
        else:
            from .presets import PRESETS, available_spec, preset_spec

            if str(spec) not in PRESETS:
                raise ConfigError(
                    f"{spec!r} is neither a YAML file nor a preset; presets: {', '.join(sorted(PRESETS))}"
                )
            data, messages = available_spec(preset_spec(str(spec)))
            for message in messages:
                print(f"note: {message}", file=sys.stderr)
            if data is None:
                raise ConfigError(f"nothing of the study {spec!r} can run yet")
    check_spec(data)
    return data


def check_spec(spec: Any) -> None:
    """Raise ConfigError naming the problem: not a mapping, an unknown key or field, an empty search space."""
    if not isinstance(spec, dict):
        raise ConfigError(f"a study spec must be a mapping with base/grid/random/seeds; got {type(spec).__name__}")
    unknown = sorted(set(spec) - SPEC_KEYS)
    if unknown:
        raise ConfigError(f"unknown study spec key(s) {', '.join(unknown)}; known: {', '.join(sorted(SPEC_KEYS))}")
    base = spec.get("base", {})
    if not isinstance(base, dict):
        raise ConfigError("the spec's base must be a mapping of TrainConfig fields")
    TrainConfig.from_dict(base)  # names an unknown field
    if "grid" not in spec and "random" not in spec:
        raise ConfigError("the study spec has no search space: give a grid or a random search")
    for grid in grids_of(spec):
        if not isinstance(grid, dict):
            raise ConfigError(f"a grid must map fields to lists of values; got {grid!r}")
        for key, values in grid.items():
            check_key(key)
            if not isinstance(values, list) or not values:
                raise ConfigError(f"grid entry {key!r} must be a non-empty list of values; got {values!r}")
    if "random" in spec:
        check_random(spec["random"])
    seeds = spec.get("seeds", [base.get("seed", 0)])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise ConfigError(f"seeds must be a non-empty list of integers; got {seeds!r}")
    if not points_of(spec) and not spec.get("random", {}).get("params"):
        raise ConfigError("the study's search space is empty: the grid has no points and random search no params")


def check_key(key: str) -> None:
    """A grid or search key is a TrainConfig setting or location field, or ``rule_options.X`` /
    ``arch_options.X`` / ``dataset_options.X`` (facts are recorded by a run, never set)."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - set(OPTION_GROUPS) - {"out", "resume"} - FACTS
    group, _, option = key.partition(".")
    if option and group in OPTION_GROUPS:
        return
    if key not in fields:
        raise ConfigError(
            f"unknown field {key!r} in the search space; use a TrainConfig field ({', '.join(sorted(fields))}) "
            "or rule_options.NAME / arch_options.NAME / dataset_options.NAME"
        )


def check_random(random: Any) -> None:
    if not isinstance(random, dict) or not isinstance(random.get("params", {}), dict):
        raise ConfigError("random must be a mapping with n_trials, params and optionally sampler (tpe | random), seed")
    if not isinstance(random.get("n_trials"), int) or random["n_trials"] < 1:
        raise ConfigError(f"random.n_trials must be a positive integer; got {random.get('n_trials')!r}")
    if random.get("sampler", "tpe") not in ("tpe", "random"):
        raise ConfigError(f"random.sampler must be tpe or random; got {random['sampler']!r}")
    if not isinstance(random.get("seed", 0), int):
        raise ConfigError(f"random.seed must be an integer; got {random['seed']!r}")
    for key, dist in random.get("params", {}).items():
        check_key(key)
        ok_range = isinstance(dist, dict) and {"low", "high"} <= set(dist) and dist["low"] <= dist["high"]
        ok_choices = isinstance(dist, dict) and isinstance(dist.get("choices"), list) and dist["choices"]
        if not (ok_range or ok_choices):
            raise ConfigError(f"random.params.{key} must be {{low, high[, log]}} or {{choices: [...]}}; got {dist!r}")


def applicable(params: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """The drawn parameters without the rule and architecture options the trial's rule or architecture lacks.

    One random space serves every grid point, so a search over, say, TP's ``rule_options.inverse_lr`` next to bp
    draws a value for bp too; it is dropped here rather than refused by bp (a conditional search space)."""
    accepts = {group: options_of(group, chosen(field, params, base)) for group, field in OWNERS.items()}
    kept = {}
    for key, value in params.items():
        group, _, option = key.partition(".")
        if not option or group not in OPTION_GROUPS or option in accepts[group]:
            kept[key] = value
    return without_unread_params(kept, base)


def without_unread_params(params: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """The drawn parameters without those the trial would not read given its other settings (``unread_options``:
    Adam's ``adam_eps`` on a trial drawn with SGD, an energy net's ``nudged_steps`` on a bp trial): one space
    serves every trial, so they are dropped here, not refused. The base's own settings stay and are judged."""
    from ..build import unread_options

    while True:  # until none is left: dropping one can leave another unread (nudged_settle, then epsilon)
        try:
            unread = unread_options(trial_config(base, params, Path("check")))
        except (ConfigError, TypeError, ValueError):  # an invalid point: resolve_config names the problem later
            return params
        if not unread.keys() & params.keys():
            return params
        params = {key: value for key, value in params.items() if key not in unread}


# option group -> the field that chooses its owner
OWNERS = {"rule_options": "rule", "arch_options": "arch", "dataset_options": "dataset"}


def options_of(group: str, name: str) -> set[str]:
    """The option names of rule (``rule_options``), architecture (``arch_options``) or dataset
    (``dataset_options``) ``name``."""
    return set(option_defaults(group, name))


def option_defaults(group: str, name: str) -> dict[str, Any]:
    """{option: default} of the rule, architecture or dataset ``name`` (a dataset's: its loader's keywords)."""
    from ..config import default_of
    from ..data import dataset_identity
    from ..registry import ARCHS, RULES

    if group == "dataset_options":
        return dataset_identity(name, {})[1]
    registry = RULES if group == "rule_options" else ARCHS
    return {f.name: default_of(f) for f in dataclasses.fields(registry.get(name).Config)}


def trial_config(base: dict[str, Any], params: dict[str, Any], out: Path) -> TrainConfig:
    """The base settings with the trial's parameters (dotted keys go into the option dicts)."""
    data = json.loads(json.dumps(base))  # a deep copy
    for group in OPTION_GROUPS:
        data.setdefault(group, {})
    for key, value in params.items():
        group, _, option = key.partition(".")
        if option:
            data[group][option] = value
        else:
            data[key] = value
    data.update(out=str(out), resume=True, progress=False)
    return coerce(TrainConfig.from_dict(data))


def coerce(config: TrainConfig) -> TrainConfig:
    """YAML gives ints where floats are meant (``lr: 1``); the config wants floats there."""
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if hints[f.name] is float and isinstance(value, int) and not isinstance(value, bool):
            setattr(config, f.name, float(value))
    return config


# ----------------------------------------------------------------------------------------------- the study


# Base settings that say where and how a trial runs, not what it trains: workers may differ in them.
EXECUTION_SETTINGS = ("data_dir", "device", "threads", "progress", "download")


def check_folder(spec: dict[str, Any], study_dir: Path) -> None:
    """Refuse a study folder that holds another study (its ``spec.yaml`` names another): its runs, database and
    report would be mixed with this one's. Nothing is written before this check."""
    saved = study_dir / "spec.yaml"
    if not saved.exists():
        return
    other = (yaml.safe_load(saved.read_text()) or {}).get("name") or study_dir.resolve().name
    name = spec.get("name") or study_dir.resolve().name
    if other != name:
        raise ConfigError(
            f"{study_dir} holds the study {other!r} (its spec.yaml), not {name!r}: give {name!r} another --out"
        )


def trained_settings(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec's base settings that change what a trial trains (JSON-normalised), i.e. without the execution
    settings."""
    base = {k: v for k, v in spec.get("base", {}).items() if k not in EXECUTION_SETTINGS}
    return json.loads(json.dumps(base, default=str, sort_keys=True))


def open_study(spec: dict[str, Any], study_dir: Path, storage: str | None) -> optuna.Study:
    """Create the study, or load it when it exists (so a rerun continues it)."""
    study_dir.mkdir(parents=True, exist_ok=True)
    url = storage or f"sqlite:///{(study_dir / 'study.db').resolve()}"
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    rdb = connect(url, engine_kwargs)
    name = spec.get("name") or study_dir.resolve().name
    study = optuna.create_study(
        study_name=name, storage=rdb, sampler=make_sampler(spec), direction="maximize", load_if_exists=True
    )
    # grid point k must mean the same settings in every call and every worker
    space = json.loads(json.dumps({"points": points_of(spec), "random": spec.get("random")}, default=str))
    saved = study.user_attrs.get("search_space")
    if saved is None:
        study.set_user_attr("search_space", space)
    elif saved != space:
        raise ConfigError(
            f"the study {name!r} in {url} was made from a different search space; "
            "continue it with the same spec, or give another --out (or another name)"
        )
    settings, saved = trained_settings(spec), study.user_attrs.get("base_settings")
    if saved is None:  # studies made before the base settings were recorded: from now on
        study.set_user_attr("base_settings", settings)
    elif saved != settings:
        changed = ", ".join(
            f"{k}: {json.dumps(saved.get(k))} -> {json.dumps(settings.get(k))}"
            for k in sorted(set(saved) | set(settings))
            if saved.get(k) != settings.get(k)
        )
        raise ConfigError(
            f"the study {name!r} in {url} was run with other settings ({changed}); its trials would mix "
            "them: continue it with the same settings (e.g. the same --epochs), or give another --out"
        )
    return study


def connect(url: str, engine_kwargs: dict[str, Any], attempts: int = 5) -> RDBStorage:
    """The storage, with heartbeats; retried because workers starting together race to create the tables."""
    import sqlalchemy.exc

    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():  # the heartbeat is marked experimental
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=HEARTBEAT_S,
                    grace_period=GRACE_S,
                    heartbeat_stale_trial_callback=functools.partial(queue_retry, max_retry=3),
                )
        except sqlalchemy.exc.SQLAlchemyError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 + random.random())
    raise AssertionError("unreachable")


class TrialSeededRandomSampler(optuna.samplers.BaseSampler):
    """Random search that draws trial k's value of each parameter from a generator seeded by (seed, k, name).

    Optuna's RandomSampler draws from one stream per process: two workers with the same seed draw the same
    configurations, and unseeded ones cannot be rerun. Keyed to the trial number (unique in the storage), the
    configurations depend on the spec alone, however many workers share the study and in whatever order they
    finish."""

    def __init__(self, seed: int = 0):
        self.seed = seed

    def infer_relative_search_space(self, study, trial) -> dict[str, Any]:
        return {}

    def sample_relative(self, study, trial, search_space) -> dict[str, Any]:
        return {}

    def sample_independent(self, study, trial, name: str, distribution) -> Any:
        rng = np.random.default_rng([self.seed, trial.number, zlib.crc32(name.encode())])
        if isinstance(distribution, optuna.distributions.CategoricalDistribution):
            return distribution.choices[int(rng.integers(len(distribution.choices)))]
        low, high = distribution.low, distribution.high
        scale = (math.log, math.exp) if distribution.log else (float, float)
        value = scale[1](rng.uniform(scale[0](low), scale[0](high)))
        if isinstance(distribution, optuna.distributions.IntDistribution):
            return min(high, max(low, int(round(value))))
        return min(high, max(low, value))


def make_sampler(spec: dict[str, Any]) -> optuna.samplers.BaseSampler:
    if "random" not in spec:
        # seed 0 in every worker: grid id k must mean the same point everywhere
        return optuna.samplers.GridSampler({"point": list(range(len(points_of(spec))))}, seed=0)
    seed = spec["random"].get("seed", 0)
    if spec["random"].get("sampler", "tpe") == "random":
        return TrialSeededRandomSampler(seed)
    return optuna.samplers.TPESampler(seed=seed)  # adaptive: reproducible with one worker only


CONTINUE = "run the same command again to continue"


def requeue_dead_trials(study: optuna.Study) -> list[int]:
    """Queue again, with the same parameters, every trial that a killed process on this host left RUNNING (marked
    FAIL first), and every trial interrupted by Ctrl-C or failed with an error that has no retry yet (its cause,
    a missing dataset say, may be fixed now; one retry per run of the study); returns their numbers."""
    host = socket.gethostname()
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    dead, interrupted = [], []
    for trial in trials:
        worker_host, _, pid = trial.user_attrs.get("worker", "").rpartition(":")
        if trial.state == TrialState.RUNNING and worker_host == host and pid.isdigit() and not pid_alive(int(pid)):
            dead.append(trial)
        elif trial.number not in retried and ended_unfinished(trial):
            interrupted.append(trial)
    for trial in dead:
        study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
    for trial in dead + interrupted:
        queue_retry(study, study._storage.get_trial(trial._trial_id))
    return [t.number for t in dead + interrupted]


def queue_retry(study: optuna.Study, trial: optuna.trial.FrozenTrial, max_retry: int | None = None) -> None:
    """A WAITING copy of ``trial`` (its parameters and settings) that trains in the first attempt's folder
    (``failed_trial``) and lists the attempts it stands for (``retry_history``), as Optuna's retry callback does;
    without the attempt's worker, error and interruption, so that the queued retry reads as no one's, not failed.
    Nothing once ``max_retry`` retries were made (the heartbeat's stale trials)."""
    system_attrs = {"failed_trial": trial.number, "retry_history": [], **trial.system_attrs}
    system_attrs["retry_history"] = [*system_attrs["retry_history"], trial.number]
    if max_retry is not None and len(system_attrs["retry_history"]) > max_retry:
        return
    user_attrs = {k: v for k, v in trial.user_attrs.items() if k not in ("worker", "error", "interrupted", "status")}
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs=user_attrs,
            system_attrs=system_attrs,
        )
    )


def ended_unfinished(trial: optuna.trial.FrozenTrial) -> bool:
    """Interrupted by Ctrl-C (PRUNED), or failed with an error (FAIL): both are run again."""
    interrupted = trial.user_attrs.get("interrupted") and trial.state == TrialState.PRUNED
    return bool(interrupted or (trial.user_attrs.get("error") and trial.state == TrialState.FAIL))


def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def untaken_points(study: optuna.Study, n_points: int) -> set[int]:
    """Grid ids that no trial holds (finished, running or queued)."""
    taken = {t.system_attrs.get("grid_id") for t in study._storage.get_all_trials(study._study_id, deepcopy=False)}
    return set(range(n_points)) - taken


def queued(study: optuna.Study) -> bool:
    return bool(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def system_attrs(trial: optuna.Trial) -> dict[str, Any]:
    """A live trial's system attributes (grid id, retry history), read from the storage."""
    return trial.storage.get_trial_system_attrs(trial._trial_id)


class Objective:
    """Train one trial's configuration(s) and return its score; see the module docstring."""

    def __init__(self, spec: dict[str, Any], study_dir: Path, quiet: bool = True):
        self.spec, self.study_dir, self.quiet = spec, study_dir, quiet
        self.points = points_of(spec)
        self.datasets: dict[tuple, Any] = {}
        self.interrupted: int | None = None  # the number of a trial stopped by Ctrl-C

    def params(self, trial: optuna.Trial) -> dict[str, Any]:
        if "random" not in self.spec:
            return dict(self.points[trial.suggest_categorical("point", list(range(len(self.points))))])
        # random search: the grid points take turns (trial k searches point k mod N), the sampler draws the rest
        number = system_attrs(trial).get("failed_trial", trial.number)
        params = dict(self.points[number % len(self.points)]) if self.points else {}
        for key, dist in self.spec["random"].get("params", {}).items():
            if "choices" in dist:
                # Optuna's choices must be scalars: lists (hidden_sizes, ...) travel as JSON text
                options = [json.dumps(c) for c in dist["choices"]]
                params[key] = json.loads(trial.suggest_categorical(key, options))
            elif all(isinstance(dist[b], int) for b in ("low", "high")):
                params[key] = trial.suggest_int(key, dist["low"], dist["high"], log=dist.get("log", False))
            else:
                params[key] = trial.suggest_float(key, dist["low"], dist["high"], log=dist.get("log", False))
        return applicable(params, self.spec.get("base", {}))

    def __call__(self, trial: optuna.Trial) -> float:
        """The trial's score. On Ctrl-C the trial ends PRUNED and marked ``interrupted`` (Optuna would record a
        FAIL with a traceback and never run that grid point again); the next ``run_sweep`` queues it again."""
        try:
            return self.run_trial(trial)
        except KeyboardInterrupt:
            self.interrupted = trial.number
            trial.set_user_attr("interrupted", True)
            raise optuna.TrialPruned("interrupted") from None
        except optuna.TrialPruned:
            raise
        except Exception as err:
            trial.set_user_attr("error", f"{type(err).__name__}: {err}")  # shown by report_trial and kept
            raise

    def run_trial(self, trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", WORKER)
        trial.set_user_attr("interrupted", False)  # a retry copies the attributes of the trial it retries
        trial.set_user_attr("error", "")
        params = self.params(trial)
        self.refuse_duplicate(trial)
        trial.set_user_attr("params", params)
        probe = trial_config(self.spec.get("base", {}), params, self.study_dir)
        trial.set_user_attr("arch", probe.arch)
        trial.set_user_attr("rule", probe.rule)
        number = system_attrs(trial).get("failed_trial", trial.number)  # a retry continues the killed run
        folder = self.study_dir / "runs" / str(number)
        trial.set_user_attr("run", str(folder.relative_to(self.study_dir)))  # also on a failure's line
        if "seed" in params or "random" not in self.spec:
            runs = [(params, folder)]
        else:
            seeds = self.spec.get("seeds", [self.spec.get("base", {}).get("seed", 0)])
            runs = [({**params, "seed": s}, folder / f"s{s}" if len(seeds) > 1 else folder) for s in seeds]
        scores, statuses = [], []
        for run_params, out in runs:
            score, status = self.train(run_params, out)
            scores.append(score)
            statuses.append(status)
        status = "diverged" if "diverged" in statuses else "ok"
        trial.set_user_attr("status", status)
        return sum(scores) / len(scores)

    def refuse_duplicate(self, trial: optuna.Trial) -> None:
        """Prune a trial whose grid point another live or finished trial already holds.

        Only a trial numbered past the grid (after a retry) can be handed a taken point, when two workers start
        at the same instant; the earlier trial keeps the point.
        """
        attrs = system_attrs(trial)
        grid_id = attrs.get("grid_id")
        if grid_id is None or "failed_trial" in attrs:
            return
        for other in trial.study.get_trials(deepcopy=False):
            same = other.system_attrs.get("grid_id") == grid_id and other.number < trial.number
            if same and other.state in (TrialState.RUNNING, TrialState.WAITING, TrialState.COMPLETE):
                raise optuna.TrialPruned(f"grid point {grid_id} is taken by trial {other.number}")

    def train(self, params: dict[str, Any], out: Path) -> tuple[float, str]:
        from ..engine import fit
        from ..runs import RunFolder, read_json

        config = trial_config(self.spec.get("base", {}), params, out)
        run = RunFolder(out)
        if run.metrics.exists() and not run.checkpoint.exists():
            # A retried trial whose checkpoint is gone (run folders are committed without them): the engine refuses
            # to continue a run without its checkpoint, and the trial is the study's own, so it starts again.
            run.metrics.unlink()
            run.summary.unlink(missing_ok=True)
        path = fit(config, data=self.dataset(config), quiet=self.quiet)
        summary = read_json(path / "summary.json")
        return score(summary), summary["status"]

    def dataset(self, config: TrainConfig):
        """The trial's dataset, loaded once per (dataset, its options, folder) for the whole study."""
        from ..engine import load_data

        options = json.dumps(config.dataset_options, sort_keys=True, default=str)
        key = (config.dataset, options, config.data_dir, config.download)
        if key not in self.datasets:
            self.datasets[key] = load_data(config)
        return self.datasets[key]


def check_points(spec: dict[str, Any]) -> None:
    """Resolve every configuration the study can train before any trial runs, so a misspelt option or a value
    out of range is one ConfigError naming the point, not a failed trial found later: every grid point as it is
    (a grid option its rule lacks is an error: give per-rule options in a list of grids), and in a random search
    every point with each searched value at its bounds or choices (there an option the trial's rule or
    architecture lacks is dropped, as in the trials, but one that no rule or architecture of the study has is an
    error)."""
    base = spec.get("base", {})
    points = points_of(spec)
    searched = spec.get("random", {}).get("params", {})
    if "random" not in spec:
        for params in points:
            resolve_point(base, params)
        return
    check_owned(base, points, [*searched, *(k for p in points for k in p)])
    for params in points:
        for key, dist in searched.items():
            for value in dist["choices"] if "choices" in dist else (dist["low"], dist["high"]):
                resolve_point(base, applicable({**params, key: value}, base))
    check_read(base, points, searched)


MAX_COMBINATIONS = 256  # of the other searched choices, per point, when asking whether a trial reads a parameter


def check_read(base: dict[str, Any], points: list[dict[str, Any]], searched: dict[str, Any]) -> None:
    """ConfigError for a searched parameter that no trial would read (``applicable`` drops it everywhere, e.g.
    ``adam_eps`` with the base's SGD): the search would draw it for nothing. A parameter counts as read if some
    point with some combination of the other searched choices keeps it."""
    values = {k: d["choices"] if "choices" in d else [d["low"], d["high"]] for k, d in searched.items()}
    for key in searched:
        others = [[(k, v) for v in vs] for k, vs in values.items() if k != key]
        combos = list(itertools.islice(itertools.product(*others), MAX_COMBINATIONS))
        if not any(
            key in applicable({**trial, key: value}, base) and value != default_for(key, trial, base)
            for trial in ({**params, **dict(combo)} for params in points for combo in combos)
            for value in values[key]
        ):
            raise ConfigError(
                f"the searched parameter {key} is read by no trial of the study (its rule, architecture or other "
                "settings ignore it everywhere): drop it from the search, or change what makes it unread"
            )


def default_for(key: str, params: dict[str, Any], base: dict[str, Any]) -> Any:
    """The value ``key`` takes in a trial of ``params`` that does not set it: the base's, else the field's
    default (a dotted key's from its rule's or architecture's options); a default is read by every trial."""
    from ..config import TrainConfig, default_of

    group, _, option = key.partition(".")
    if not option:
        fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
        return base[key] if key in base else default_of(fields[key]) if key in fields else None
    if option in base.get(group, {}):
        return base[group][option]
    owner = chosen(OWNERS[group], params, base) if group in OWNERS else None
    return option_defaults(group, owner).get(option) if owner else None


def resolve_point(base: dict[str, Any], params: dict[str, Any]) -> None:
    from ..build import resolve_config

    try:
        resolve_config(trial_config(base, params, Path("check")))
    except ConfigError as err:
        setting = " ".join(f"{k}={v}" for k, v in params.items())
        raise ConfigError(f"the study's point {setting or '(base)'}: {err}") from None


def check_owned(base: dict[str, Any], points: list[dict[str, Any]], keys: list[str]) -> None:
    """ConfigError for a ``rule_options.X`` / ``arch_options.X`` key that no rule / architecture of the study has."""
    for group, field in OWNERS.items():
        names = {chosen(field, p, base) for p in points or [{}]}
        known = set().union(*(options_of(group, name) for name in names))
        for key in keys:
            prefix, _, option = key.partition(".")
            if prefix == group and option not in known:
                theirs = f"theirs: {', '.join(sorted(known))}" if known else "they have no options"
                raise ConfigError(
                    f"{key}: no {field} of the study ({', '.join(sorted(names))}) has an option {option!r}; {theirs}"
                )


def run_sweep(
    spec: str | Path | dict[str, Any],
    study_dir: str | Path,
    storage: str | None = None,
    n_trials: int | None = None,
    quiet: bool = True,
) -> optuna.Study:
    """Run (or continue) a study; returns the Optuna study.

    Args:
        spec: a dict spec, a YAML path or a preset name; see the module docstring.
        study_dir: the study folder: ``study.db`` (default storage), ``spec.yaml`` and ``runs/<trial number>``.
        storage: an SQLAlchemy URL shared by many workers, e.g. ``postgresql://user@host/db``.
        n_trials: run at most this many trials in this call (default: until the grid is done, or the random
            search's ``n_trials`` trials exist).
        quiet: no per-epoch lines.
    """
    spec = load_spec(spec)
    check_points(spec)
    study_dir = Path(study_dir)
    check_folder(spec, study_dir)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # one line per trial from report_trial instead
    try:
        study = open_study(spec, study_dir, storage)
        (study_dir / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        with FileLock(study_dir / ".requeue.lock"):  # two workers starting together must not retry a trial twice
            requeue_dead_trials(study)
        objective = Objective(spec, study_dir, quiet=quiet)
        done = 0
        while n_trials is None or done < n_trials:
            if not (queued(study) or more_to_start(study, spec, len(objective.points))):
                break
            report = functools.partial(report_trial, total=total_trials(spec, len(objective.points)))
            study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=False, callbacks=[report])
            if objective.interrupted is not None:
                raise KeyboardInterrupt
            done += 1
    except KeyboardInterrupt:
        raise KeyboardInterrupt(CONTINUE) from None
    return study


def total_trials(spec: dict[str, Any], n_points: int) -> int:
    """How many trials the study runs in all: one per grid point, or ``n_trials`` per point of a random search."""
    return spec["random"]["n_trials"] * max(1, n_points) if "random" in spec else n_points


def report_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial, total: int | None = None) -> None:
    """One line per finished trial on stderr: its number, settings and score (or why it failed), its run folder,
    how long it took (loading its data included) and how many of the study's ``total`` trials are complete (all
    workers together)."""
    params = trial.user_attrs.get("params", trial.params)
    settings = " ".join(f"{k}={v}" for k, v in params.items())
    if trial.user_attrs.get("interrupted"):
        return  # run_sweep says it once, in one line
    if trial.state == TrialState.COMPLETE:
        outcome = f"{100 * trial.value:.2f} % ({trial.user_attrs.get('status', 'ok')})"
    else:
        error = trial.user_attrs.get("error")
        outcome = trial.state.name.lower() + (f": {error}" if error else "")
    where = f" in {trial.user_attrs['run']}" if trial.user_attrs.get("run") else ""  # a retry trains in the first one's
    seconds = f", took {trial.duration.total_seconds():.0f} s" if trial.duration else ""  # data loading included
    complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    progress = f" [{complete} of {total} complete]" if total else ""
    print(f"trial {trial.number}: {settings} -> {outcome}{where}{seconds}{progress}", file=sys.stderr)


def more_to_start(study: optuna.Study, spec: dict[str, Any], n_points: int) -> bool:
    if "random" not in spec:
        return bool(untaken_points(study, n_points))
    started = [t for t in study.get_trials(deepcopy=False) if "failed_trial" not in t.system_attrs]
    return len(started) < spec["random"]["n_trials"] * max(1, n_points)


# ----------------------------------------------------------------------------------------------- results


def trial_results(study: optuna.Study, base: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One dict per COMPLETE trial: number, arch, rule, accuracy, status, params (for the sensitivity analysis);
    ``base``: the spec's base settings, under the trial's own (a base ``bp_layers`` names the method too)."""
    results = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        params = {**(base or {}), **t.user_attrs.get("params", {})}
        results.append(
            {
                "number": t.number,
                "arch": t.user_attrs.get("arch"),
                "rule": t.user_attrs.get("rule"),
                "accuracy": t.value,
                "status": t.user_attrs.get("status", "ok"),
                "params": params,
                "run": t.user_attrs.get("run"),
            }
        )
    return results
