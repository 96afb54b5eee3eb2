"""Data-parallel training: 2 CPU processes (gloo, launched by torchrun) end where 1 process on the whole batch does."""

import subprocess
import sys

import pytest
import torch

ARGS = [
    "train",
    "--dataset",
    "synthetic",
    "--arch",
    "mlp",
    "--depth",
    "2",
    "--width",
    "16",
    "--epochs",
    "2",
    "--batch-size",
    "32",
    "--lr",
    "0.01",
    "--seed",
    "3",
    "--no-progress",
    "--threads",
    "1",
    "--device",
    "cpu",
]


def train(out, rule, nproc):
    launcher = (
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(nproc),
            "--master_port",
            str(29400 + nproc),
            "-m",
            "bioplausible.cli",
        ]
        if nproc > 1
        else [sys.executable, "-m", "bioplausible.cli"]
    )
    result = subprocess.run(
        [*launcher, *ARGS, "--rule", rule, "--out", str(out)], capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return torch.load(out / "checkpoint.pt", weights_only=False)


@pytest.mark.parametrize("rule", ["bp", "dfa", "kp"])
def test_two_processes_match_one_process_on_the_combined_batch(tmp_path, rule):
    one = train(tmp_path / "one", rule, 1)
    two = train(tmp_path / "two", rule, 2)
    assert one["state"]["step"] == two["state"]["step"] == 16  # 256 examples / 32 per global batch, 2 epochs
    for name, tensor in one["model"].items():
        torch.testing.assert_close(two["model"][name], tensor, rtol=1e-4, atol=1e-5, msg=name)
    assert not (tmp_path / "two" / "summary.json").read_text().count("failed")
