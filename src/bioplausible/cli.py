"""Command line: thin. It parses, builds a ``TrainConfig`` and dispatches; the work lives in the library.

The ``train`` flags are generated from the config dataclasses (``TrainConfig`` and every registered rule's and
architecture's ``Config``), so a new field or a new rule's option is on the command line with its help text.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path
from typing import Any

from . import __version__
from .config import TrainConfig
from .errors import BioplausibleError, ConfigError
from .registry import ARCHS, DATASETS, RULES
from .runs import RUN_FACTS

KINDS = {"rules": RULES, "archs": ARCHS, "datasets": DATASETS}


def _load_registries() -> None:
    from . import archs, data, rules  # noqa: F401  (importing registers everything)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parse_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _list_parser(item: type):
    """A comma-separated list of ``item`` values, e.g. ``500,500`` for ``tuple[int, ...]``."""

    def parse(text: str) -> tuple:
        try:
            return tuple(item(part) for part in _parse_list(text))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {item.__name__}: {text!r}") from None

    return parse


def _arg_spec(f: dataclasses.Field, hint: Any) -> dict[str, Any]:
    """argparse keyword arguments for one dataclass field, from its type hint and metadata."""
    base = [a for a in typing.get_args(hint) if a is not type(None)]
    kind = base[0] if base and typing.get_origin(hint) in (typing.Union, __import__("types").UnionType) else hint
    spec: dict[str, Any] = {"help": f.metadata.get("help", "")}
    if f.metadata.get("choices"):
        spec["choices"] = f.metadata["choices"]
    if kind is bool:
        spec["action"] = argparse.BooleanOptionalAction
    elif typing.get_origin(kind) in (tuple, list):
        item = next((a for a in typing.get_args(kind) if a is not Ellipsis), str)
        spec.update(type=_list_parser(item), metavar="A,B,...")
    else:
        spec["type"] = kind
    return spec


def _add_fields(group, cls: type) -> list[str]:
    """One flag per field; only flags actually given land in the namespace, so they can override --config."""
    hints = typing.get_type_hints(cls)
    names = []
    for f in dataclasses.fields(cls):
        if hints[f.name] is dict or typing.get_origin(hints[f.name]) is dict:
            continue
        spec = _arg_spec(f, hints[f.name])
        spec["default"] = argparse.SUPPRESS
        if f.default is not None:
            spec["help"] += f" (default: {f.default})"
        group.add_argument(_flag(f.name), **spec)
        names.append(f.name)
    return names


def _option_owners(registry) -> dict[str, list[tuple[str, dataclasses.Field, Any]]]:
    """option name -> [(entry name, field, type hint)] for every rule or architecture that has the option."""
    owners: dict[str, list] = {}
    for name in registry:
        cls = registry.get(name).Config
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            owners.setdefault(f.name, []).append((name, f, hints[f.name]))
    return owners


def _defaults_text(owners: list[tuple[str, dataclasses.Field, Any]]) -> str:
    """'default: 3' when all owners agree, else 'default: 3 for mlp, dense-mlp; 4 for convnet'."""
    by_default: dict[str, list[str]] = {}
    for name, f, _ in owners:
        by_default.setdefault(repr(f.default) if isinstance(f.default, str) else str(f.default), []).append(name)
    if len(by_default) == 1:
        return f"default: {next(iter(by_default))}; for: {', '.join(n for n, _, _ in owners)}"
    return "default: " + "; ".join(f"{d} for {', '.join(names)}" for d, names in by_default.items())


def _add_options(parser, registry, title: str) -> list[str]:
    group = parser.add_argument_group(title)
    names = []
    for option, owners in sorted(_option_owners(registry).items()):
        _, f, hint = owners[0]
        spec = _arg_spec(f, hint)
        choices = {c for _, g, _ in owners for c in (g.metadata.get("choices") or ())}
        if "choices" in spec:
            spec["choices"] = sorted(choices)
        spec["default"] = argparse.SUPPRESS
        spec["help"] += f" ({_defaults_text(owners)})"
        group.add_argument(_flag(option), **spec)
        names.append(option)
    return names


def add_train_arguments(parser: argparse.ArgumentParser) -> tuple[list[str], list[str], list[str]]:
    """Add every TrainConfig field, rule option and architecture option to ``parser``."""
    parser.add_argument("--config", help="JSON file of settings (e.g. a run's config.json) used as defaults")
    core = _add_fields(parser.add_argument_group("training"), TrainConfig)
    rule_opts = _add_options(parser, RULES, "rule options")
    arch_opts = _add_options(parser, ARCHS, "architecture options")
    clash = set(rule_opts) & set(arch_opts)
    assert not clash, f"an option name is both a rule and an architecture option: {clash}"
    return core, rule_opts, arch_opts


def config_from_args(
    ns: argparse.Namespace, names: tuple[list[str], list[str], list[str]], base: dict[str, Any] | None = None
) -> TrainConfig:
    """Build the TrainConfig: field defaults, then ``base`` settings (from --config), then the flags given."""
    core, rule_opts, arch_opts = names
    data = {**(base or {}), **{k: getattr(ns, k) for k in core if hasattr(ns, k)}}
    data["rule_options"] = {
        **(base or {}).get("rule_options", {}),
        **{k: getattr(ns, k) for k in rule_opts if hasattr(ns, k)},
    }
    data["arch_options"] = {
        **(base or {}).get("arch_options", {}),
        **{k: getattr(ns, k) for k in arch_opts if hasattr(ns, k)},
    }
    return TrainConfig.from_dict(data)


def _read_config_file(path: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read --config {path}: {err}") from None
    for fact in RUN_FACTS:
        data.pop(fact, None)
    return data


def cmd_list(args) -> int:
    kinds = [args.kind] if args.kind else list(KINDS)
    for kind in kinds:
        registry = KINDS[kind]
        print(f"{kind}:")
        for name in registry.list(args.pattern):
            doc = (registry.get(name).__doc__ or "").strip().splitlines()
            print(f"  {name:<16} {doc[0] if doc else ''}")
    return 0


def cmd_train(args, names) -> int:
    from .engine import fit
    from .runs import read_json

    base = _read_config_file(args.config) if args.config else None
    config = config_from_args(args, names, base)
    path = fit(config)
    summary = read_json(path / "summary.json")
    print(
        f"{summary['status']}: test accuracy {summary['test_accuracy']:.2%} "
        f"(best {summary['best_test_accuracy']:.2%}, epoch {summary['best_epoch']}) "
        f"in {summary['wall_time_s']:.1f} s -> {path}"
    )
    return 0 if summary["status"] != "failed" else 1


def cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(
        rules=args.rules,
        archs=args.archs,
        dataset=args.dataset,
        epochs=args.epochs,
        out=args.out,
        data_dir=args.data_dir,
        device=args.device,
    )
    return 0


def cmd_report(args) -> int:
    from .report import find_runs, results_table
    from .report.html import write_report

    runs = find_runs(args.dir)
    if not runs:
        raise ConfigError(f"no run folders (with summary.json) under {args.dir}")
    page = write_report(args.dir)
    print(results_table(runs))
    out = Path(args.dir)
    figures = ", ".join(sorted(p.name for p in out.glob("*.png")))
    print(f"\nwrote {out / 'report.md'}, {page} and {figures}")
    return 0


def _apply_overrides(spec: dict[str, Any], args) -> dict[str, Any]:
    """--epochs / --data-dir / --device from the command line replace the spec's base settings."""
    for name in ("epochs", "data_dir", "device"):
        value = getattr(args, name, None)
        if value is not None:
            spec.setdefault("base", {})[name] = value
    return spec


def _run_study(spec: dict[str, Any], args) -> int:
    from .report.html import write_report
    from .studies import run_sweep, sensitivity_table, trial_results

    study = run_sweep(_apply_overrides(spec, args), args.out, storage=args.storage, n_trials=args.n_trials, quiet=True)
    results = trial_results(study)
    states = {}
    for trial in study.trials:
        states[trial.state.name] = states.get(trial.state.name, 0) + 1
    print(f"study {study.study_name}: " + ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items())))
    if results:
        print(sensitivity_table(results))
        print(f"\nwrote {write_report(args.out)}")
    return 0


def cmd_sweep(args) -> int:
    from .studies import load_spec

    return _run_study(load_spec(args.spec), args)


def cmd_reproduce(args) -> int:
    from .studies import available_spec, preset_spec

    spec, messages = available_spec(preset_spec(args.study, args.budget))
    for message in messages:
        print(f"note: {message}", file=sys.stderr)
    if spec is None:
        raise ConfigError(f"nothing of the study {args.study} can run yet")
    print(spec.get("notes", ""))
    args.out = args.out or f"runs/{args.study}-{args.budget}"
    return _run_study(spec, args)


def cmd_bench(args) -> int:
    from .bench import main as bench_main

    return bench_main(args.bench_args)


def _add_study_arguments(p: argparse.ArgumentParser, out_required: bool) -> None:
    p.add_argument("--out", required=out_required, help="study folder: study.db, spec.yaml, runs/<trial>, report")
    p.add_argument("--storage", help="SQLAlchemy URL of a shared study, e.g. postgresql://user@host/db (default: "
                   "sqlite:///OUT/study.db)")  # fmt: skip
    p.add_argument("--n-trials", type=int, default=None, help="run at most N trials now (rerun to continue)")
    p.add_argument("--epochs", type=int, default=None, help="override the spec's epochs (e.g. for a quick check)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--device", default=None, choices=("auto", "cpu", "cuda"))


def build_parser() -> tuple[argparse.ArgumentParser, tuple]:
    _load_registries()
    parser = argparse.ArgumentParser(prog="bioplausible", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"bioplausible {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="list registered rules, architectures and datasets")
    p.add_argument("kind", nargs="?", choices=list(KINDS))
    p.add_argument("--pattern", default="*", help="shell-style wildcard, e.g. '*sf'")

    p = sub.add_parser(
        "train",
        help="train one rule on one architecture and dataset",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter if False else argparse.HelpFormatter,
    )
    names = add_train_arguments(p)

    p = sub.add_parser("demo", help="quickstart: compare bp, fa, dfa and usf on mlp and dense-mlp (digits)")
    p.add_argument("--rules", type=_parse_list, default=("bp", "fa", "dfa", "usf"), metavar="A,B,...")
    p.add_argument("--archs", type=_parse_list, default=("mlp", "dense-mlp"), metavar="A,B,...")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="runs/demo", help="folder for the runs, the table and the PNG")

    p = sub.add_parser(
        "report", help="table (with the papers' numbers), figures and an HTML page of run folders or a study"
    )
    p.add_argument("dir", help="a folder of run folders (searched recursively)")

    p = sub.add_parser("sweep", help="run (or continue) a study spec through Optuna: grid or random search")
    p.add_argument("spec", help="a YAML study spec, or a preset name (see `bioplausible reproduce --help`)")
    _add_study_arguments(p, out_required=True)

    from .studies import BUDGETS, PRESETS

    p = sub.add_parser("reproduce", help="run one of the seed studies: " + ", ".join(PRESETS))
    p.add_argument("study", choices=list(PRESETS))
    p.add_argument("--budget", choices=BUDGETS, default="small", help="small: 2 CPU cores in ~1 h; paper: published")
    _add_study_arguments(p, out_required=False)

    p = sub.add_parser("bench", help="time each rule's training step relative to bp", add_help=False)
    p.add_argument("bench_args", nargs=argparse.REMAINDER)
    return parser, names


def main(argv: list[str] | None = None) -> int:
    parser, names = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            return cmd_list(args)
        if args.command == "train":
            return cmd_train(args, names)
        if args.command == "demo":
            return cmd_demo(args)
        if args.command == "report":
            return cmd_report(args)
        if args.command == "sweep":
            return cmd_sweep(args)
        if args.command == "reproduce":
            return cmd_reproduce(args)
        if args.command == "bench":
            return cmd_bench(args)
    except BioplausibleError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the run folder keeps its last checkpoint; continue with --resume", file=sys.stderr)
        return 130
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
