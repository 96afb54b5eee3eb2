"""Every command the README shows is exercised here (train runs shortened to one epoch, outputs in tmp)."""

import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SHARED_DATA = ROOT.parent / "shared" / "data"


def bash_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


COMMANDS = bash_commands()


def cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``bioplausible ARGS`` run in this process with ``cwd`` as the working directory; its exit code must be 0.

    In-process because a subprocess per command spent most of this file's time importing torch again; what the
    CLI does as a program of its own (entry point, ``python -m``, torchrun, no torch for ``--help``) is tested in
    tests/test_cli.py and tests/test_distributed.py. Torch's thread count, which ``--threads`` sets, is restored."""
    import torch

    from bioplausible.cli import main

    out, err = io.StringIO(), io.StringIO()
    previous, threads = os.getcwd(), torch.get_num_threads()
    try:
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as exit:  # argparse's own exits (--help)
                code = exit.code
    finally:
        os.chdir(previous)
        torch.set_num_threads(threads)
    assert code in (0, None), err.getvalue()
    return subprocess.CompletedProcess(args, 0, out.getvalue(), err.getvalue())


def test_readme_shows_the_two_commands_and_ci_runs_the_test_one():
    assert "make demo" in COMMANDS and "make test" in COMMANDS
    assert "make test" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("target, expected", [("demo", "bioplausible demo"), ("test", "pytest")])
def test_make_targets_run_what_the_readme_says(target, expected):
    out = subprocess.run(["make", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert expected in out and "torch==2.13.0" in out


def test_demo_command(tmp_path):
    out = cli(["demo", "--epochs", "2", "--out", str(tmp_path / "demo")], cwd=tmp_path).stdout
    assert "| dense-mlp |" in out and (tmp_path / "demo" / "learning_curves.png").stat().st_size > 10_000


def shortened(args: list[str], tmp_path: Path) -> list[str]:
    """A README train command made quick and local: one epoch of 3 batches, on the CPU, writing into tmp."""
    args = [str(SHARED_DATA) + a[len("../shared/data") :] if a.startswith("../shared/data") else a for a in args]
    args = ["cpu" if a == "cuda" else a for a in args]
    args[args.index("--out") + 1] = str(tmp_path / "run")
    # No per-epoch probes: they are tested on their own, and EP's BPTT reference would dominate the test's time.
    # EP settles at most 20 steps here: the evaluation settles the whole test set.
    if "--free-steps" in args:
        args[args.index("--free-steps") + 1] = "20"
    return [*args, "--epochs", "1", "--max-batches", "3", "--no-progress", "--probe-every", "0"]


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith("bioplausible ")])
def test_bioplausible_command(command, tmp_path):
    args = shlex.split(command)[1:]
    training = args[0] == "train" and "--help" not in args
    if training:
        if "../shared/data" in command and not SHARED_DATA.exists():
            pytest.skip("the real data in ../shared/data is not on this machine")
        args = shortened(args, tmp_path)
    if args[0] in ("sweep", "reproduce") and "--n-trials" not in args:  # a whole study: run one short trial of it
        if "../shared/data" in command and not SHARED_DATA.exists():
            pytest.skip("the real data in ../shared/data is not on this machine")
        args = [str(SHARED_DATA) if a == "../shared/data" else a for a in args]
        args[args.index("--out") + 1] = str(tmp_path / "study")
        args += ["--n-trials", "1", "--epochs", "1", "--max-steps", "2", "--eval-steps", "1,2"]
    if args[0] == "bench":  # a benchmark's ratios need rounds; its command only needs to run
        args += ["--rounds", "1", "--steps", "1", "--batch-size", "2"]
        args += ["--width", "32"] if "mlp" in args else []
    if args[0] == "report":
        shutil.copytree(ROOT / args[1], tmp_path / "runs", ignore=shutil.ignore_patterns("checkpoint.pt"))
        args[1] = str(tmp_path / "runs")
    result = cli(args, cwd=tmp_path)
    if training:
        assert result.stdout.startswith("ok:")
    if args[0] == "report":
        assert "(Bartunov" in result.stdout or "(Gammell" in result.stdout  # the papers' numbers beside ours


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith("torchrun ")])
def test_torchrun_command(command, tmp_path):
    args = shortened(shlex.split(command)[1:], tmp_path)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--master_port", "29511"]
    result = subprocess.run([*launcher, *args], cwd=tmp_path, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "summary.json").exists()


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith("python benchmarks/")])
def test_benchmark_command(command, tmp_path):
    args = shlex.split(command)[1:]
    if "step_time" in args[0]:
        args = ["cpu" if a == "cuda" else "3,16,16" if a == "3,224,224" else a for a in args]
        args += ["--rounds", "1", "--steps", "1", "--width", "32", "--batch-size", "2"]
    elif "tp_alternating" in args[0]:
        args += ["--samples", "200", "--epochs", "2", "--every", "1"]
    elif "conv_ep_settling" in args[0]:
        args += ["--rounds", "1", "--sweeps", "1", "--batch-size", "2"]
    elif "ep_settling" in args[0]:  # parts a and b run in the --epochs 0 command; the other needs only part c
        part_c = "--epochs" in args and args[args.index("--epochs") + 1] != "0"
        args += ["--samples", "40", "--test-samples", "40", "--tolerance", "1e-2", "--rounds", "1"]
        args += ["--parts", "c", "--epochs", "1"] if part_c else []
    elif "lc_patches" in args[0]:
        args = [args[0], "--rules", "bp", "--rounds", "1", "--batch-size", "2"]
    elif "adam_step" in args[0]:
        args += ["--repeats", "1", "--sizes", "8,4,2"]
    else:
        args += ["--repeats", "1", "--batch-size", "2"]
    result = subprocess.run(
        [sys.executable, str(ROOT / args[0]), *args[1:]], capture_output=True, text=True, timeout=1800, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    expected = (
        "ratio to bp",
        "block sweep / euler step",
        "saved for backward",
        "fused / foreach",
        "time to the fixed-cap run's final test accuracy",
        "epoch 1 fwd 1",
        "against the bare convolutions",
        "kept / eager",
        "new / old",
    )
    assert any(e in result.stdout for e in expected), result.stdout


def test_python_example_runs():
    code = re.search(r"```python\n(.*?)```", README, flags=re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert set(namespace["metrics"]) == {"loss", "accuracy"}
    assert all(p.grad is not None for p in namespace["model"].parameters())
    assert list(namespace["rule"].layers) == ["0"]  # the output layer stayed on backprop


def test_every_readme_command_is_exercised():
    known = ("make ", "bioplausible ", "torchrun ", "python benchmarks/")
    assert all(c.startswith(known) for c in COMMANDS), [c for c in COMMANDS if not c.startswith(known)]
