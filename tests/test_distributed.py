"""Data-parallel training, for every rule: 2 CPU processes (gloo, launched by torchrun) end where 1 process on the
whole batch does, including every rule's own state (TP's inverses and their optimizer, EP's persistent states,
KP's and WM's learned feedback), and a run stopped after one epoch and resumed ends where an uninterrupted one does."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import built_once

from bioplausible.registry import RULES

JOB = Path(__file__).parent / "ddp_job.py"
RULES_UNDER_TEST = [*RULES.list(), "ep@conv-energy-net"]  # every registered rule; EP on both energy nets


def launch(out: Path, epochs: int, mode: str, nproc: int, port: int) -> None:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc)]
    launcher += ["--master_port", str(port)] if nproc > 1 else []
    command = [*launcher, str(JOB)] if nproc > 1 else [sys.executable, str(JOB)]
    result = subprocess.run([*command, str(out), str(epochs), mode, *RULES_UNDER_TEST], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


def launch_all(root: Path) -> None:
    launch(root / "one", 2, "fresh", 1, 0)
    launch(root / "two", 2, "fresh", 2, 29521)
    launch(root / "resumed", 1, "fresh", 2, 29522)
    launch(root / "resumed", 2, "resume", 2, 29523)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return built_once(tmp_path_factory, "ddp", launch_all)


def state(root: Path, rule: str) -> dict:
    return torch.load(root / rule / "checkpoint.pt", weights_only=False)


def flat(tree, prefix=""):
    """Every tensor of a nested state (model, rule, optimizer) by path."""
    if torch.is_tensor(tree):
        return {prefix: tree}
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, (list, tuple)) else []
    out = {}
    for k, v in items:
        out.update(flat(v, f"{prefix}/{k}"))
    return out


@pytest.mark.parametrize("rule", RULES_UNDER_TEST)
def test_two_processes_match_one_process_on_the_combined_batch(runs, rule):
    one, two = state(runs / "one", rule), state(runs / "two", rule)
    assert one["state"]["step"] == two["state"]["step"] == 16  # 256 examples / 32 per global batch, 2 epochs
    a, b = flat({"model": one["model"], "rule": one["rule"]}), flat({"model": two["model"], "rule": two["rule"]})
    assert a.keys() == b.keys()
    for name, tensor in a.items():
        if tensor.is_floating_point():
            torch.testing.assert_close(b[name], tensor, rtol=1e-4, atol=1e-5, msg=name)
        else:
            assert torch.equal(b[name], tensor), name


@pytest.mark.parametrize("rule", RULES_UNDER_TEST)
def test_a_resumed_data_parallel_run_equals_an_uninterrupted_one(runs, rule):
    two, resumed = state(runs / "two", rule), state(runs / "resumed", rule)
    a = flat({"model": two["model"], "rule": two["rule"], "optimizer": two["optimizer"]})
    b = flat({"model": resumed["model"], "rule": resumed["rule"], "optimizer": resumed["optimizer"]})
    assert a.keys() == b.keys()
    for name, tensor in a.items():
        assert torch.equal(b[name], tensor), name


def test_torchrun_runs_the_package_as_a_module(tmp_path):
    """``torchrun -m bioplausible train ...`` (and so ``python -m bioplausible``) works, and prints its result line
    once, not once per process."""
    args = ["train", "--dataset", "synthetic", "--epochs", "1", "--max-batches", "2", "--threads", "1"]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29524"]
    result = subprocess.run(
        [*command, "-m", "bioplausible", *args, "--no-progress", "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "r" / "summary.json").exists()
    assert result.stdout.count("ok: test accuracy") == 1, result.stdout
