"""Command line: thin. It parses, builds a ``TrainConfig`` and dispatches; the work lives in the library.

The ``train`` flags are generated from the config dataclasses: ``TrainConfig``'s fields, and the options of the
chosen rule, architecture and dataset, each scoped to its owner. An option has a qualified flag
(``--rule.beta``, ``--arch.epsilon``, ``--data.n-train``) and, when no other chosen owner (nor the core) has an
option of that name, the short one (``--beta``). So two rules, or a rule and an architecture, may share a name.
Torch is imported only by commands that compute: ``--help`` and ``list`` start in a fraction of a second.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import re
import sys
import typing
import warnings
from pathlib import Path
from typing import Any

from . import __version__
from .config import FACTS, TrainConfig, flags
from .errors import BioplausibleError, ConfigError, FolderBusy
from .registry import ARCHS, DATASETS, RULES

KINDS = {"rules": RULES, "archs": ARCHS, "datasets": DATASETS}
SCOPES = {"rule": ("rule_options", RULES), "arch": ("arch_options", ARCHS), "data": ("dataset_options", DATASETS)}
NOT_FLAGS = {"rule_options", "arch_options", "dataset_options"} | set(FACTS)
# the owners a run chooses, and their defaults (from TrainConfig: the CLI names no rule or architecture)
CHOSEN = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.name in ("rule", "arch", "dataset")}


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the problem, and where the help is: not 50 lines of usage) and no abbreviated
    flags (``--a``, the energy net's option, must never be read as ``--arch``)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        # argparse (3.11) reads "-5e-4" as a flag, so ``--lr -5e-4`` said "expected one argument"; a negative number
        # in scientific notation is a value, which the options' bounds then judge
        self._negative_number_matcher = re.compile(r"^-((\d+\.?\d*|\.\d+)(e[-+]?\d+)?|inf(inity)?|nan)$", re.I)

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def _flag(name: str) -> str:
    return flags([name])


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


def _arg_spec(f: dataclasses.Field, hint: Any, default: Any) -> dict[str, Any]:
    """argparse keyword arguments for one dataclass field, from its type hint and metadata."""
    base = [a for a in typing.get_args(hint) if a is not type(None)]
    kind = base[0] if base and typing.get_origin(hint) in (typing.Union, __import__("types").UnionType) else hint
    spec: dict[str, Any] = {"help": f.metadata.get("help", ""), "default": argparse.SUPPRESS}
    if f.metadata.get("choices"):
        spec["choices"] = f.metadata["choices"]
    if kind is bool:
        spec["action"] = argparse.BooleanOptionalAction
    elif typing.get_origin(kind) in (tuple, list):
        item = next((a for a in typing.get_args(kind) if a is not Ellipsis), str)
        spec.update(type=_list_parser(item), metavar="A,B,...")
    elif kind is dict:
        spec.update(type=json.loads, metavar="JSON")
    else:
        spec["type"] = kind
    if default is not None and kind is not bool:
        spec["help"] += f" (default: {default})"
    return spec


def _fields(cls: type) -> list[tuple[dataclasses.Field, Any, Any]]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        out.append((f, hints[f.name], default))
    return out


def _dataset_fields(name: str) -> list[tuple[str, Any, Any]]:
    """(option, type, default) of a dataset builder's keyword-only options."""
    import inspect

    builder = DATASETS.get(name)
    hints = typing.get_type_hints(builder)
    params = inspect.signature(builder).parameters.values()
    return [(p.name, hints.get(p.name, str), p.default) for p in params if p.kind is p.KEYWORD_ONLY]


def _owner_options(scope: str, name: str) -> list[tuple[str, dict[str, Any]]]:
    """(option name, argparse spec) for the options of the rule / architecture / dataset ``name``."""
    if scope == "data":
        specs = []
        for option, hint, default in _dataset_fields(name):
            field = dataclasses.field(metadata={"help": f"option of dataset {name}"})
            field.name = option
            specs.append((option, _arg_spec(field, hint, default)))
        return specs
    cls = SCOPES[scope][1].get(name).Config
    return [(f.name, _arg_spec(f, hint, default)) for f, hint, default in _fields(cls)]


def add_train_arguments(p: argparse.ArgumentParser, rule: str, arch: str, dataset: str) -> dict[str, list[str]]:
    """Every TrainConfig field, and the options of the chosen rule, architecture and dataset (see module doc)."""
    p.add_argument("--config", help="JSON file of settings (e.g. a run's config.json) used as defaults")
    core = p.add_argument_group("training")
    names: dict[str, list[str]] = {"core": []}
    for f, hint, default in _fields(TrainConfig):
        if f.name not in NOT_FLAGS:
            core.add_argument(_flag(f.name), **_arg_spec(f, hint, default))
            names["core"].append(f.name)
    owners = {"rule": rule, "arch": arch, "data": dataset}
    options = {scope: _owner_options(scope, owner) for scope, owner in owners.items()}
    counts: dict[str, int] = {}
    for name in [o for opts in options.values() for o, _ in opts] + names["core"]:
        counts[name] = counts.get(name, 0) + 1
    for scope, opts in options.items():
        kind = {"rule": "rule", "arch": "architecture", "data": "dataset"}[scope]
        group = p.add_argument_group(f"options of {kind} {owners[scope]}")
        names[scope] = []
        for option, spec in opts:
            flags = [f"--{scope}.{option.replace('_', '-')}"]
            if counts[option] == 1:
                flags.insert(0, _flag(option))
            else:
                spec["help"] += f" (the name is shared with another owner: use {flags[-1]})"
            if "metavar" not in spec and "choices" not in spec and spec.get("type") is not None:
                spec["metavar"] = option.upper()
            group.add_argument(*flags, dest=f"{scope}.{option}", **spec)
            names[scope].append(option)
    return names


def _read_config_file(path: str | Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read config {path}: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} is not a JSON object of settings")
    return {k: v for k, v in data.items() if k not in FACTS}


def _base_settings(argv: list[str]) -> tuple[dict[str, Any], argparse.Namespace]:
    """Phase one: the settings the command line starts from (a --config file, or the run being resumed), and
    the chosen rule / architecture / dataset, which decide the flags of phase two."""
    pre = Parser(add_help=False)
    for name in ("--rule", "--arch", "--dataset", "--config", "--out"):
        pre.add_argument(name)
    pre.add_argument("--resume", action="store_true")
    known, _ = pre.parse_known_args(argv)
    base: dict[str, Any] = {}
    if known.config:
        base = _read_config_file(known.config)
    elif known.resume and known.out and (Path(known.out) / "config.json").exists():
        base = _read_config_file(Path(known.out) / "config.json")  # --resume needs only --out
    elif known.resume and known.out and not known.rule:  # it would start bp on the defaults, unasked
        raise ConfigError(
            f"nothing to resume in {known.out}: it holds no run; to start one there, give its settings (--rule ...)"
        )
    for key, default in CHOSEN.items():
        setattr(known, key, getattr(known, key) or base.get(key) or default)
    return base, known


def train_parser(argv: list[str]) -> tuple[Parser, dict[str, list[str]], dict[str, Any]]:
    base, chosen = _base_settings(argv)
    p = Parser(
        prog="bioplausible train",
        description="Train one rule on one architecture and dataset; every setting is a flag.",
        epilog=(
            f"The options shown are those of rule {chosen.rule}, architecture {chosen.arch} and dataset "
            f"{chosen.dataset}; another choice shows its own: `bioplausible train {_other_choice(chosen)} --help`. "
            "An option is also reachable as --rule.NAME, --arch.NAME or --data.NAME."
        ),
    )
    names = add_train_arguments(p, chosen.rule, chosen.arch, chosen.dataset)
    return p, names, base


HELP_EXAMPLES = ("--rule ep --arch energy-net", "--rule dtp --arch convnet")


def _other_choice(chosen: argparse.Namespace) -> str:
    """An example of other flags for the --help epilog: not the rule being shown."""
    return next(e for e in HELP_EXAMPLES if not e.startswith(f"--rule {chosen.rule} "))


OWNER_FIELD = {"rule": "rule", "arch": "arch", "data": "dataset"}


def config_from_args(ns: argparse.Namespace, names: dict[str, list[str]], base: dict[str, Any]) -> TrainConfig:
    """The TrainConfig: field defaults, then ``base`` settings (--config or the resumed run), then the flags
    given. The base's options of a rule/architecture/dataset carry over only if that owner is unchanged; otherwise
    a warning names those it drops (``_warn_dropped``)."""
    data = {k: v for k, v in base.items() if k not in NOT_FLAGS}
    data.update({k: getattr(ns, k) for k in names["core"] if hasattr(ns, k)})
    if data.get("lr_schedule") != "step" and base.get("lr_milestones") and not hasattr(ns, "lr_milestones"):
        data["lr_milestones"] = ()  # the base's milestones belonged to the step schedule that a flag replaced
    for scope, (field, _) in SCOPES.items():
        owner = OWNER_FIELD[scope]
        given = {k: getattr(ns, f"{scope}.{k}") for k in names[scope] if hasattr(ns, f"{scope}.{k}")}
        if (base.get(owner) or CHOSEN[owner]) == (data.get(owner) or CHOSEN[owner]):  # none named: the default
            kept = base.get(field, {})
        else:
            kept = {}
            _warn_dropped(scope, base, data, _set_options(scope, base, given), names[scope])
        data[field] = {**kept, **given}
    return TrainConfig.from_dict(data)


def _set_options(scope: str, base: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """The base's options of its rule/architecture/dataset that differ from that owner's defaults (a saved
    config.json lists every option) and that no flag gives anew."""
    field, registry = SCOPES[scope]
    owner = base.get(OWNER_FIELD[scope]) or CHOSEN[OWNER_FIELD[scope]]
    try:
        defaults = {f.name: f.default for f in dataclasses.fields(registry.get(owner).Config)}
    except (BioplausibleError, AttributeError, TypeError):  # an unknown owner: its options are all the user's
        defaults = {}
    missing = object()
    return {
        k: v
        for k, v in base.get(field, {}).items()
        if k not in given and _comparable(defaults.get(k, missing)) != _comparable(v)
    }


def _comparable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _as_flag(flag: str, value: Any) -> str:
    """A setting as the command line takes it (booleans as --x / --no-x, lists comma-separated)."""
    if isinstance(value, bool):
        return flag if value else flag.replace("--", "--no-", 1)
    if isinstance(value, (list, tuple)):
        return f"{flag} {','.join(map(str, value))}"
    return f"{flag} {value}"


def _warn_dropped(
    scope: str, base: dict[str, Any], data: dict[str, Any], dropped: dict[str, Any], new_options: list[str]
) -> None:
    """Warn that the base's options of a rule/architecture/dataset that a flag replaced are not used: an option
    of the same name may mean something else to the new owner, so none is carried over unasked. The flags
    suggested are those of the options the new owner has (``new_options``)."""
    if not dropped:
        return
    owner = OWNER_FIELD[scope]
    old, new = base.get(owner) or CHOSEN[owner], data.get(owner) or CHOSEN[owner]
    named = "" if base.get(owner) else " (the config names none: the default)"
    listed = ", ".join(f"{k}={v!r}" for k, v in dropped.items())
    shared = {k: v for k, v in dropped.items() if k in new_options}
    flags = " ".join(_as_flag(f"--{scope}.{k.replace('_', '-')}", v) for k, v in shared.items())
    keep = f"to keep one, give it as a flag ({flags})" if shared else f"{new} has none of them"
    warnings.warn(
        f"--config's {owner} options {listed} belong to {owner} {old!r}{named}, not {new!r}, and are not used; {keep}",
        UserWarning,
        stacklevel=3,
    )


def cmd_list(args) -> int:
    kinds = [args.kind] if args.kind else list(KINDS)
    for kind in kinds:
        registry = KINDS[kind]
        print(f"{kind}:")
        for name in registry.list(args.pattern):
            print(f"  {name:<16} {registry.doc(name)}")
    return 0


def _unknown_flags_error(unknown: list[str], names: dict[str, list[str]], ns) -> ConfigError:
    """One line for flags no chosen owner has: which rules / architectures / datasets do have them."""
    flags = [u.split("=")[0] for u in unknown if u.startswith("--")]
    if not flags:
        return ConfigError(f"unexpected argument(s) {' '.join(unknown)}")
    option = flags[0][2:].replace("-", "_").split(".")[-1]
    chosen = f"rule {ns.rule}, architecture {ns.arch} or dataset {ns.dataset}"
    for scope, owner in (("rule", ns.rule), ("arch", ns.arch), ("data", ns.dataset)):
        if option in names.get(scope, []):  # the chosen owner has it, under another scope
            flag = f"--{scope}.{option.replace('_', '-')}"
            return ConfigError(f"{flags[0]} is not an option there; {option} is an option of {owner}: use {flag}")
    owners = []
    for kind, registry in (("rule", RULES), ("architecture", ARCHS)):
        for name in registry.list():
            if option in {f.name for f in dataclasses.fields(registry.get(name).Config)}:
                owners.append(f"{kind} {name}")
    where = f"; it is an option of {', '.join(owners)}" if owners else ""
    if not owners:
        known = [_flag(n) for n in names["core"]] + [
            f"--{scope}.{n.replace('_', '-')}" for scope in ("rule", "arch", "data") for n in names.get(scope, [])
        ]
        close = difflib.get_close_matches(flags[0], known, n=3, cutoff=0.75)
        where = f"; did you mean {' or '.join(close)}?" if close else ""
    return ConfigError(f"{flags[0]} ({option}) is not an option of {chosen}{where} (see `bioplausible train --help`)")


def cmd_train(argv: list[str]) -> int:
    p, names, base = train_parser(argv)
    ns, unknown = p.parse_known_args(argv)
    if unknown:
        chosen = {key: getattr(ns, key, base.get(key, default)) for key, default in CHOSEN.items()}
        raise _unknown_flags_error(unknown, names, argparse.Namespace(**chosen))
    config = config_from_args(ns, names, base)
    from .distributed import is_main_process
    from .engine import fit  # torch loads here, not for --help
    from .runs import read_json

    path = fit(config)
    summary = read_json(path / "summary.json")
    reason = f" ({summary['reason']})" if summary.get("reason") else ""
    if is_main_process():  # under torchrun every process returns here; one line is enough
        print(
            f"{summary['status']}{reason}: test accuracy {summary['test_accuracy']:.2%} "
            f"(best {summary['best_test_accuracy']:.2%}, epoch {summary['best_epoch']}) "
            f"in {summary['wall_time_s']:.1f} s -> {path}"
        )
        if summary.get("warnings"):  # shown as they came, maybe thousands of lines up
            count, where = len(summary["warnings"]), path / "summary.json"
            print(f'  warned {count} time{"s" if count > 1 else ""} while training: see "warnings" in {where}')
    return 0 if summary["status"] != "failed" else 1


def cmd_demo(args) -> int:
    from .demo import run_demo

    chosen = {k: v for k, v in (("rules", args.rules), ("archs", args.archs)) if v is not None}
    run_demo(
        **chosen,
        dataset=args.dataset,
        epochs=args.epochs,
        out=args.out,
        data_dir=args.data_dir,
        device=args.device,
        threads=args.threads,
    )
    return 0


def cmd_report(args) -> int:
    from .report import write_report_files

    written = write_report_files(args.dir)  # the runs are loaded once
    print(written.results)
    for note in written.notes:
        print(f"\n{note}")
    print(f"\nwrote {written.page} and the report's figures in {args.dir}")
    return 0


def _apply_overrides(spec: dict[str, Any], args) -> dict[str, Any]:
    """--epochs / --data-dir / --device / --threads from the command line replace the spec's base settings; those
    that change what is trained are also listed under ``overrides`` (spec.yaml, and the report beside the notes,
    which describe the spec as written)."""
    for name in ("epochs", "max_steps", "eval_steps", "data_dir", "device", "threads"):
        value = getattr(args, name, None)
        if value is not None:
            value = list(value) if isinstance(value, tuple) else value
            spec.setdefault("base", {})[name] = value
            if name in ("epochs", "max_steps", "eval_steps"):
                spec.setdefault("overrides", {})[name] = value
    return spec


REPORT_WAIT_S = 600  # how long a study's worker waits for another one writing the report


def _run_study(spec: dict[str, Any], args) -> int:
    from .report import write_report
    from .studies import run_sweep, sensitivity_table, trial_results

    spec = _apply_overrides(spec, args)
    study = run_sweep(spec, args.out, storage=args.storage, n_trials=args.n_trials, quiet=True)
    results = trial_results(study, base=spec.get("base", {}))
    retried = {n for t in study.trials for n in t.system_attrs.get("retry_history", [])}
    states: dict[str, int] = {}
    for trial in study.trials:
        state = "INTERRUPTED" if trial.user_attrs.get("interrupted") else trial.state.name  # retried next run
        state = "RETRIED" if trial.number in retried else state  # an attempt another trial stands for
        states[state] = states.get(state, 0) + 1
    print(f"study {study.study_name}: " + ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items())))
    if results:
        print(sensitivity_table(results))
        try:  # another worker finishing at the same moment may be writing it: wait, then write it with every run
            print(f"\nwrote {write_report(args.out, wait_s=REPORT_WAIT_S)}")
        except FolderBusy:
            print(f"\nthe report is being written by another process; `bioplausible report {args.out}` rewrites it")
    failed = [
        t for t in study.trials if t.state.name == "FAIL" and t.user_attrs.get("error") and t.number not in retried
    ]
    if failed:  # a trial that raised (not one killed, which the next run retries): the exit code says so
        for trial in failed:  # again here: the failure may date from an earlier run of the study
            print(f"trial {trial.number} failed: {trial.user_attrs['error']}", file=sys.stderr)
        numbers = ", ".join(f"{t.number} ({t.user_attrs.get('run', '?')})" for t in failed)
        print(f"error: trial(s) {numbers} failed; fix the cause and run the same command again: it retries "
              "them", file=sys.stderr)  # fmt: skip
        return 1
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
    from .bench import run_bench

    return run_bench(args)


def _add_study_arguments(p: argparse.ArgumentParser, out_required: bool) -> None:
    p.add_argument("--out", required=out_required, help="study folder: study.db, spec.yaml, runs/<trial>, report")
    p.add_argument("--storage", help="SQLAlchemy URL of a shared study, e.g. postgresql://user@host/db (default: "
                   "sqlite:///OUT/study.db)")  # fmt: skip
    p.add_argument("--n-trials", type=int, default=None, help="run at most N trials now (rerun to continue)")
    p.add_argument("--epochs", type=int, default=None, help="override the spec's epochs (e.g. for a quick check)")
    p.add_argument("--max-steps", type=int, default=None, help="override the spec's step budget (step studies)")
    p.add_argument(
        "--eval-steps", type=_list_parser(int), default=None, metavar="A,B,...", help="override the evaluation steps"
    )
    p.add_argument("--data-dir", default=None)
    p.add_argument("--device", default=None, choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=int, default=None, help="CPU threads per trial (default: auto, see train)")


def build_parser() -> Parser:
    parser = Parser(
        prog="bioplausible",
        description="Train and compare biologically plausible learning rules (FA, DFA, sign symmetry, KP, weight "
        "mirrors, target propagation, equilibrium propagation) and see why they work or fail.",
    )
    parser.add_argument("--version", action="version", version=f"bioplausible {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    p = sub.add_parser("list", help="list registered rules, architectures and datasets")
    p.add_argument("kind", nargs="?", choices=list(KINDS))
    p.add_argument("--pattern", default="*", help="shell-style wildcard, e.g. '*sf'")

    sub.add_parser("train", help="train one rule on one architecture and dataset (`train --help`)", add_help=False)

    p = sub.add_parser("demo", help="quickstart: compare four rules on a plain and a densely connected MLP (digits)")
    p.add_argument("--rules", type=_parse_list, default=None, metavar="A,B,...", help="default: the demo's four")
    p.add_argument("--archs", type=_parse_list, default=None, metavar="A,B,...", help="default: the demo's two")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="CPU threads per run (0: auto)")
    p.add_argument("--out", default="runs/demo", help="folder for the runs, the table and the PNG")

    p = sub.add_parser(
        "report", help="table (with the papers' numbers), figures and an HTML page of run folders or a study"
    )
    p.add_argument("dir", help="a folder of run folders (searched recursively)")

    p = sub.add_parser("sweep", help="run (or continue) a study spec through Optuna: grid or random search")
    p.add_argument("spec", help="a YAML study spec, or a preset name (see `bioplausible reproduce --help`)")
    _add_study_arguments(p, out_required=True)

    from .studies.presets import BUDGETS, PRESETS  # data only: no optuna, no torch

    p = sub.add_parser("reproduce", help="run one of the seed studies: " + ", ".join(PRESETS))
    p.add_argument("study", choices=list(PRESETS))
    budgets = "small: a quick smoke test; medium: 2 CPU cores in a few hours; paper: the published budget"
    p.add_argument("--budget", choices=BUDGETS, default="small", help=budgets)
    _add_study_arguments(p, out_required=False)

    from .bench_args import add_bench_arguments

    p = sub.add_parser("bench", help="time each rule's training step relative to bp (ratios in one process)")
    add_bench_arguments(p)
    return parser


def dispatch(argv: list[str]) -> int:
    if argv[:1] == ["train"]:
        return cmd_train(argv[1:])
    args = build_parser().parse_args(argv)
    commands = {"list": cmd_list, "demo": cmd_demo, "report": cmd_report, "sweep": cmd_sweep}
    commands.update(reproduce=cmd_reproduce, bench=cmd_bench)
    return commands[args.command](args)


def one_line_warning(message, category, filename, lineno, line=None) -> str:
    """A warning as the command line shows it: its text and category on one line, without Python's file, line
    number and source line (which name our code, not the user's command)."""
    return f"warning: {message} ({category.__name__})\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    python_format, warnings.formatwarning = warnings.formatwarning, one_line_warning
    try:
        return dispatch(argv)
    except BioplausibleError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        reason = str(err) or "a run folder keeps its last checkpoint; continue with the same command and --resume"
        print(f"interrupted: {reason}", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = python_format


if __name__ == "__main__":
    sys.exit(main())
