"""End-to-end tests of the ``bioplausible`` command line, each in a subprocess through ``run_cli``."""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import pytest

from bioplausible.cli import main
from bioplausible.config import TrainConfig
from bioplausible.runs import RunFolder

# Fast settings for a run that is expected to fail before or right at the start of training.
QUICK = (
    "--dataset", "synthetic",
    "--arch", "mlp", "--depth", "1", "--width", "16",
    "--epochs", "1",
    "--device", "cpu",
    "--threads", "1",
    "--no-progress",
)  # fmt: skip
IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def listed_names(stdout: str) -> list[str]:
    """The entry names of ``bioplausible list``: the first word of every indented line."""
    return [line.split()[0] for line in stdout.splitlines() if line.startswith("  ")]


def without_time(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in records]


# ---------------------------------------------------------------- list and help


def test_list_everything(run_cli):
    result = run_cli("list")
    assert result.returncode == 0, result.stderr
    for heading in ("rules:", "archs:", "datasets:"):
        assert heading in result.stdout.splitlines()
    names = listed_names(result.stdout)
    assert {"bp", "fa", "dfa", "mlp", "dense-mlp", "synthetic", "digits", "mnist"} <= set(names)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("rules", {"bp", "fa", "dfa", "usf", "frsf", "brsf"}),
        ("archs", {"mlp", "dense-mlp"}),
        ("datasets", {"synthetic", "digits", "mnist", "fashion-mnist", "cifar10"}),
    ],
)
def test_list_one_kind(run_cli, kind, expected):
    result = run_cli("list", kind)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"{kind}:"
    assert expected <= set(listed_names(result.stdout))
    assert [line for line in result.stdout.splitlines() if not line.startswith("  ")] == [f"{kind}:"]


def test_list_with_pattern(run_cli):
    result = run_cli("list", "rules", "--pattern", "*sf")
    assert result.returncode == 0, result.stderr
    names = listed_names(result.stdout)
    assert {"usf", "frsf", "brsf"} <= set(names)
    assert all(name.endswith("sf") for name in names)
    assert not {"bp", "fa", "dfa"} & set(names)


def test_train_help_lists_core_rule_and_arch_flags(run_cli):
    result = run_cli("train", "--rule", "fa", "--help")
    assert result.returncode == 0, result.stderr
    for flag in (
        "--feedback-scale",
        "--bp-layers",
        "--depth",
        "--width",
        "--activation",
        "--lr",
        "--batch-size",
        "--seed",
        "--out",
        "--data-dir",
        "--device",
    ):
        assert flag in result.stdout, flag
    ep = run_cli("train", "--rule", "ep", "--arch", "energy-net", "--help")
    assert "--beta" in ep.stdout and "--nudging" in ep.stdout and "--feedback-scale" not in ep.stdout
    assert "--hidden-sizes" in ep.stdout and "--depth" not in ep.stdout


# ---------------------------------------------------------------- training


def test_train_writes_a_run_and_config_file_reproduces_it(run_cli, tmp_path):
    flags = ("--dataset", "digits", "--epochs", "1", "--arch", "mlp", "--depth", "1", "--width", "16", "--lr", "0.005")
    first = run_cli("train", *flags, "--seed", "2", "--threads", "1", "--no-progress", "--out", "first")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("ok:"), first.stdout
    assert "Traceback" not in first.stderr
    run = tmp_path / "first"
    files = ["checkpoint.pt", "config.json", "metrics.jsonl", "probes.json", "summary.json"]
    assert sorted(p.name for p in run.iterdir() if p.name != ".lock") == files
    saved = json.loads((run / "config.json").read_text())
    assert (saved["dataset"], saved["lr"], saved["seed"], saved["epochs"]) == ("digits", 0.005, 2, 1)
    assert saved["arch_options"] == {"depth": 1, "width": 16, "activation": "tanh", "bias": True}  # resolved
    assert json.loads((run / "summary.json").read_text())["status"] == "ok"

    second = run_cli("train", "--config", run / "config.json", "--out", "second")
    assert second.returncode == 0, second.stderr
    copy = json.loads((tmp_path / "second" / "config.json").read_text())
    assert copy.pop("out") == "second"
    saved.pop("out")
    for fact in ("threads_used", "data_source"):  # facts of each run: threads chosen for the machine's load
        copy.pop(fact), saved.pop(fact)
    assert copy == saved
    assert without_time(RunFolder(tmp_path / "second").read_metrics()) == without_time(RunFolder(run).read_metrics())


def test_explicit_flags_override_a_config_file_even_with_default_values(run_cli, tmp_path):
    base = TrainConfig(dataset="synthetic", arch_options={"depth": 1, "width": 16}, epochs=1, lr=0.005, progress=False)
    (tmp_path / "base.json").write_text(json.dumps(base.to_dict()))
    result = run_cli("train", "--config", "base.json", "--lr", "0.001", "--threads", "1", "--out", "run")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "run" / "config.json").read_text())["lr"] == 0.001


# ---------------------------------------------------------------- bad input: one line, `error: ...`, exit 2


def write_mnist_files(folder: Path, broken: bytes) -> Path:
    """The four MNIST file names, the first (read first) holding ``broken``, the others a valid tiny IDX file."""
    folder.mkdir()
    labels = gzip.compress(bytes([0, 0, 8, 1]) + (3).to_bytes(4, "big") + bytes([1, 2, 3]))
    for name in IDX_FILES:
        (folder / name).write_bytes(labels)
    (folder / IDX_FILES[0]).write_bytes(broken)
    return folder


def truncated_gzip() -> bytes:
    images = bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in (5, 28, 28)) + bytes(5 * 28 * 28)
    packed = gzip.compress(images)
    return packed[: len(packed) // 2]


BAD_INPUT = {
    "unknown rule": (("--rule", "nosuch"), ("nosuch", "bp", "fa", "dfa")),
    "unknown arch": (("--arch", "nosuch"), ("nosuch", "mlp")),
    "unknown dataset": (("--dataset", "nosuch"), ("nosuch", "synthetic")),
    "missing data dir": (("--dataset", "mnist", "--data-dir", "{tmp}/missing"), ("{tmp}/missing", "does not exist")),
    "garbage idx": (("--dataset", "mnist", "--data-dir", "{tmp}/garbage"), (IDX_FILES[0], "corrupt")),
    "truncated idx": (("--dataset", "mnist", "--data-dir", "{tmp}/truncated"), (IDX_FILES[0], "corrupt")),
    "zero epochs": (("--epochs", "0"), ("epochs",)),
    "zero lr": (("--lr", "0"), ("lr",)),
    "negative lr": (("--lr", "-1"), ("lr",)),
    "negative lr in scientific notation": (("--lr", "-5e-4"), ("lr must be > 0 (got -0.0005)",)),
    "infinite lr": (("--lr", "inf"), ("lr must be a finite number",)),
    "nan lr": (("--lr", "nan"), ("lr must be a finite number",)),
    "minus infinite lr": (("--lr", "-inf"), ("lr must be a finite number",)),
    "negative seed": (("--seed", "-1"), ("seed must be >= 0",)),
    "negative sdtp noise": (("--rule", "sdtp", "--noise", "-1e-1"), ("noise must be >= 0",)),
    "repeated milestones": (("--lr-schedule", "step", "--lr-milestones", "3,3"), ("strictly increasing",)),
    "option the rule lacks": (("--rule", "bp", "--feedback-scale", "2"), ("feedback_scale", "rule bp", "rule fa")),
    "unknown bp layer": (("--rule", "fa", "--bp-layers", "nosuchlayer"), ("nosuchlayer",)),
    "rule option under the arch scope": (
        ("--rule", "fa", "--arch.feedback-scale", "2"),
        ("use --rule.feedback-scale",),
    ),
    "misspelt option": (("--lr-shedule", "cosine"), ("did you mean --lr-schedule?",)),
    "eval step after the last step": (("--max-steps", "3", "--eval-steps", "2,5"), ("eval_steps 5", "max_steps 3")),
    "fp16 on the CPU": (("--precision", "fp16", "--device", "cpu"), ("fp16 needs a CUDA device", "bf16")),
    "nothing to resume": (("--resume",), ("nothing to resume in out",)),
    "milestones without the step schedule": (("--lr-milestones", "5"), ("lr_milestones apply to",)),
    "momentum with adam": (("--momentum", "0.9"), ("momentum is SGD's",)),
    "adam's options with sgd": (
        ("--optimizer", "sgd", "--adam-beta2", "0.99", "--adam-eps", "1e-6"),
        ("--adam-beta2, --adam-eps are options of Adam", "sgd does not read"),
    ),
    "nudged-phase option without a nudged phase": (
        ("--dataset", "synthetic", "--rule", "bp", "--arch", "energy-net", "--nudged-steps", "5"),
        ("--nudged-steps sets the nudged phase of energy-net", "rule 'bp' does not run"),
    ),
    "eval steps out of order": (("--eval-steps", "5,2"), ("eval_steps must increase",)),
    "eval step after the run": (("--eval-steps", "100000"), ("eval_steps 100000 come after the run's last step",)),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_error_line(tmp_path, case, monkeypatch, capsys):
    write_mnist_files(tmp_path / "garbage", b"this is not gzip data at all")
    write_mnist_files(tmp_path / "truncated", truncated_gzip())
    args, fragments = BAD_INPUT[case]
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    # --resume with --out alone names no rule; the energy net takes none of QUICK's MLP options
    base = [] if case in ("nothing to resume", "nudged-phase option without a nudged phase") else QUICK

    monkeypatch.chdir(tmp_path)  # in-process (the CLI's subprocess path is covered by the tests above)
    try:
        code = main(["train", *base, *args, "--out", "out"])
    except SystemExit as exit:  # argparse's own errors
        code = exit.code
    stderr = capsys.readouterr().err

    assert code == 2, (code, stderr)
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment.replace("{tmp}", str(tmp_path)) in lines[0], (fragment, lines[0])
    # A failed start leaves nothing that would block a corrected retry with the same --out.
    assert not RunFolder(tmp_path / "out").holds_run()


def test_help_and_list_do_not_import_torch(tmp_path):
    """`bioplausible --help` and `list` start in a fraction of a second: they import neither torch, optuna nor
    matplotlib (measured with `python -X importtime -m bioplausible list`; asserted here without a clock)."""
    import subprocess
    import sys

    probe = (
        "import sys, io, contextlib\n"
        "from bioplausible.cli import main\n"
        "for argv in (['--help'], ['list'], ['reproduce', '--help'], ['bench', '--help']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n"
        "            main(argv)\n"
        "        except SystemExit:\n"
        "            pass\n"
        "print(sorted(m for m in ('torch', 'optuna', 'matplotlib') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout


def test_a_short_option_is_never_read_as_an_abbreviated_flag():
    """energy-net's option ``a`` has the flag ``--a``: it must not be taken for ``--arch`` (argparse abbreviates)."""
    from bioplausible.cli import SCOPES, train_parser

    argv = ["--rule", "ep", "--arch", "energy-net", "--topology", "skip", "--p", "0.1", "--a", "0.168"]
    parser, names, base = train_parser(argv)
    ns = parser.parse_args(argv)
    assert ns.arch == "energy-net" and getattr(ns, "arch.a") == 0.168 and getattr(ns, "arch.p") == 0.1
    assert SCOPES


def run_main(argv, capsys):
    """``bioplausible ARGV`` in-process: (exit code, stdout, stderr)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit:
        code = exit.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_small_things_that_used_to_go_wrong(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    # a typo in a choice: one line, not the whole usage
    code, _, err = run_main(["train", "--lr-schedule", "cosin"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "invalid choice: 'cosin'" in err
    # a rule name in the wrong case is suggested
    code, _, err = run_main(["train", "--rule", "FA"], capsys)
    assert code == 2 and "Did you mean 'fa'?" in err
    # infinity where it means "never" stays allowed: --diverge-factor inf turns the loss blow-up check off
    code, _, err = run_main(["train", *QUICK, "--epochs", "1", "--diverge-factor", "inf", "--out", "never"], capsys)
    assert code == 0, err
    # --resume needs only --out: the saved settings are read from the run's config.json
    flags = ["train", *QUICK, "--epochs", "1", "--lr", "0.007", "--out", "run"]
    assert run_main(flags, capsys)[0] == 0
    code, out, err = run_main(["train", "--out", "run", "--resume", "--epochs", "2"], capsys)
    assert code == 0, err
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["lr"] == 0.007 and saved["epochs"] == 2 and saved["dataset"] == QUICK[QUICK.index("--dataset") + 1]
    # a resume with nothing left to train says so; fewer epochs than done is refused
    code, out, err = run_main(["train", "--out", "run", "--resume"], capsys)
    assert code == 0 and "nothing to train in run: 2 of 2 epochs are done" in err
    code, out, err = run_main(["train", "--out", "run", "--resume", "--epochs", "1"], capsys)
    assert code == 2 and "2 epochs done, more than --epochs 1" in err
    # a resume that changes a setting names it with both values as config.json has them
    code, out, err = run_main(["train", "--out", "run", "--resume", "--epochs", "3", "--lr", "0.01"], capsys)
    assert code == 2 and "lr: saved 0.007, given 0.01" in err
    # a step schedule replaced on resume takes its milestones with it (they came from config.json, not the user)
    step = ["--lr-schedule", "step", "--lr-milestones", "5"]
    assert run_main(["train", *QUICK, "--epochs", "1", *step, "--out", "steps"], capsys)[0] == 0
    code, out, err = run_main(["train", "--out", "steps", "--resume", "--epochs", "2", "--lr-schedule", "cosine"],
                              capsys)  # fmt: skip
    assert code == 0, err  # cosine gives epoch 1 the rate it trained at
    saved = json.loads((tmp_path / "steps" / "config.json").read_text())
    assert (saved["lr_schedule"], saved["lr_milestones"], saved["epochs"]) == ("cosine", [], 2), err
    # every command that trains takes --threads
    for command in (["demo"], ["sweep", "x"], ["reproduce", "skip-connections"], ["bench"], ["train"]):
        code, out, _ = run_main([*command, "--help"], capsys)
        assert code == 0 and "--threads" in out, command


def test_a_step_milestone_the_run_never_reaches_is_said(run_cli):
    """--lr-milestones 3 with --epochs 2: the decay would silently never happen; the run says so (and still runs:
    it may be extended with --resume and more epochs)."""
    flags = ("--dataset", "digits", "--epochs", "2", "--arch", "mlp", "--depth", "1", "--width", "8", "--threads", "1")
    schedule = ("--lr-schedule", "step", "--lr-milestones", "1,3")
    result = run_cli("train", *flags, *schedule, "--no-progress", "--out", "late")
    assert result.returncode == 0, result.stderr
    assert "lr milestone(s) 3 at or after the last epoch (2)" in result.stderr
    reached = run_cli("train", *flags, "--lr-schedule", "step", "--lr-milestones", "1", "--no-progress", "--out", "ok")
    assert "milestone" not in reached.stderr


@pytest.mark.parametrize(("flag", "value", "said"), [
    ("--input-shape", "0", "every size must be at least 1, got 0"),
    ("--input-shape", "3,x", "expected sizes like 784 or 3,32,32"),
    ("--arch-options", "{bad", "not valid JSON"),
    ("--arch-options", "[1]", "expected a JSON object"),
    ("--steps", "0", "must be at least 1, got 0"),
    ("--rounds", "0", "must be at least 1, got 0"),
    ("--batch-size", "0", "must be at least 1, got 0"),
    ("--classes", "1", "must be at least 2, got 1"),
    ("--precision", "", "expected a comma-separated list"),
    ("--precision", "fp32,fp32", "fp32 given twice"),
    ("--precision", "fp8", "fp8: choose from fp32, bf16, fp16"),
    ("--rules", ",", "expected a comma-separated list"),
])  # fmt: skip
def test_bench_refuses_a_bad_flag_in_one_line(capsys, flag, value, said):
    """Each of these ended in a traceback (a division by zero, a JSON error, an empty median) or, for a batch of 0,
    timed empty batches as 0 samples/s."""
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--rules", "fa", "--threads", "1", flag, value])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert f"argument {flag}: {said}" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bench_times_bp_beside_ep_without_the_nudged_phase_options(capsys):
    """bench adds bp as the reference: the energy net's nudged-phase options, which bp would refuse, are left out
    of bp's configuration only, and EP keeps them."""
    from bioplausible.bench import variants
    from bioplausible.config import TrainConfig

    options = {"hidden_sizes": [8], "free_steps": 3, "nudged_steps": 2}
    argv = ["bench", "--rules", "ep", "--arch", "energy-net", "--input-shape", "8", "--classes", "3",
            "--arch-options", json.dumps(options), "--steps", "1", "--rounds", "1", "--threads", "1"]  # fmt: skip
    assert main(argv) == 0
    rows = [line.split("|")[1].strip() for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert {"bp", "ep"} <= set(rows)
    args = argparse.Namespace(precision="fp32", both_formats=False, channels_last=False)
    cascade = {**options, "nudged_settle": "euler", "epsilon": 0.3}  # without nudged_settle, epsilon is unread too
    configs = variants(TrainConfig(arch="energy-net", arch_options=cascade), ["bp", "ep"], args, added="bp")
    assert (
        configs["bp"].arch_options == {"hidden_sizes": [8], "free_steps": 3} and configs["ep"].arch_options == cascade
    )
    asked = variants(TrainConfig(arch="energy-net", arch_options=cascade), ["bp", "ep"], args)
    assert asked["bp"].arch_options == cascade  # bp asked for with them: train's refusal, not a quiet drop
    assert main([*argv[:2], "bp,ep", *argv[3:]]) == 2
    assert "--nudged-steps sets the nudged phase" in capsys.readouterr().err


def test_a_warning_reads_as_one_line_naming_the_problem_not_our_source(run_cli, tmp_path):
    """The command line shows a warning as ``warning: TEXT (Category)``, without Python's file:line and source line."""
    proc = run_cli(
        "train", "--rule", "fa", "--init", "xavier", "--optimizer", "sgd", "--lr", "0.01", *QUICK,
        "--out", tmp_path / "run",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "--feedback-init" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: --init xavier") and lines[0].endswith("(UserWarning)")
    assert "bioplausible/" not in proc.stderr and "Warning:" not in proc.stderr


def test_a_config_whose_rule_or_arch_a_flag_replaces_warns_which_options_it_drops(run_cli, tmp_path):
    """--config's options of a rule or architecture that a flag replaces are not carried over (a name may mean
    another thing to the new owner), and not silently: one warning per scope names those set away from their
    defaults and the flags that would keep them."""
    config = tmp_path / "fa.json"
    config.write_text(json.dumps({
        "rule": "fa", "rule_options": {"feedback_scale": 3.0, "feedback_init": "default"},
        "arch": "mlp", "arch_options": {"width": 8, "depth": 1},
    }))  # fmt: skip
    quick = ["--dataset", "synthetic", "--epochs", "1", "--device", "cpu", "--threads", "1", "--no-progress"]
    proc = run_cli("train", "--config", config, "--rule", "dfa", "--arch", "dense-mlp", *quick, "--out", tmp_path / "r")
    assert proc.returncode == 0, proc.stderr
    warned = [line for line in proc.stderr.splitlines() if line.startswith("warning: --config's")]
    assert len(warned) == 2, proc.stderr
    assert "feedback_scale=3.0" in warned[0] and "feedback_init" not in warned[0]  # the default is not listed
    assert "--rule.feedback-scale 3.0" in warned[0]
    assert "width=8" in warned[1] and "depth=1" in warned[1] and "'mlp', not 'dense-mlp'" in warned[1]
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["rule_options"]["feedback_scale"] == 1.0 and saved["arch_options"]["width"] != 8
    same = run_cli("train", "--config", config, *quick, "--out", tmp_path / "s")  # unchanged owners: kept, no warning
    assert same.returncode == 0 and "warning: --config" not in same.stderr
    assert json.loads((tmp_path / "s" / "config.json").read_text())["rule_options"]["feedback_scale"] == 3.0
    unnamed = tmp_path / "unnamed.json"  # no "arch" key: the default architecture, on both sides
    unnamed.write_text(json.dumps({"arch_options": {"width": 8, "depth": 1}}))
    kept = run_cli("train", "--config", unnamed, "--rule", "fa", *quick, "--out", tmp_path / "u")
    assert kept.returncode == 0 and "warning: --config" not in kept.stderr
    assert json.loads((tmp_path / "u" / "config.json").read_text())["arch_options"]["width"] == 8
    ep = run_cli("train", "--config", config, "--rule", "ep", "--arch", "energy-net", *quick, "--max-batches", "1",
                 "--out", tmp_path / "e")  # fmt: skip
    warned = [line for line in ep.stderr.splitlines() if line.startswith("warning: --config's rule")]
    assert len(warned) == 1 and "ep has none of them" in warned[0] and "--rule." not in warned[0]  # no flag ep lacks
