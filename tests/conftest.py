"""Shared fixtures: an offline, isolated environment, a tiny training config, and a CLI runner."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from filelock import FileLock

from bioplausible.config import TrainConfig

# The tests use small tensors, where extra threads only add synchronisation; one thread also keeps a test from
# stalling when another process (a benchmark, a training run) holds the other core.
torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _offline_environment(tmp_path_factory: pytest.TempPathFactory):
    """No test may touch the network or the user's data and cache folders (subprocesses inherit this too)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BIOPLAUSIBLE_OFFLINE", "1")
        mp.delenv("BIOPLAUSIBLE_DATA", raising=False)
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture
def tiny_config(tmp_path) -> Callable[..., TrainConfig]:
    """A factory of small, fast ``TrainConfig``s on the ``synthetic`` dataset; keyword arguments override fields.

    The default run folder is ``tmp_path / "run"``; the device is the CPU so that runs are bit-reproducible.
    """

    def make(**overrides: Any) -> TrainConfig:
        settings: dict[str, Any] = {
            "dataset": "synthetic",
            "arch": "mlp",
            "arch_options": {"depth": 2, "width": 16},
            "epochs": 3,
            "batch_size": 32,
            "lr": 1e-2,
            "device": "cpu",
            "progress": False,
            "out": str(tmp_path / "run"),
        }
        settings.update(overrides)
        return TrainConfig(**settings)

    return make


@pytest.fixture
def run_cli(tmp_path) -> Callable[..., subprocess.CompletedProcess]:
    """Run ``python -m bioplausible.cli ARGS`` in ``tmp_path``; returns the finished process with text output."""

    def run(*args: Any, env: dict[str, str] | None = None, timeout: float = 1800) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "bioplausible.cli", *map(str, args)],
            cwd=tmp_path,
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


@pytest.fixture
def sgd_steps() -> Callable[..., list[dict]]:
    """``sgd_steps(rule, model, x, y, steps=20, lr=0.2)``: that many plain-SGD steps of ``rule`` on one batch;
    returns each step's metrics (the loss as a float), for tests that a rule lowers the loss."""

    def run(rule, model, x, y, steps: int = 20, lr: float = 0.2) -> list[dict]:
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        records = []
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            metrics = rule.step(model, x, y)
            optimizer.step()
            records.append({**metrics, "loss": metrics["loss"].item()})
        return records

    return run


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """The folder ``name``, filled by ``build(folder)`` once for the whole test session, also when ``make test``
    spreads the tests over several pytest-xdist workers (each worker would otherwise build its own copy of a
    module-scoped fixture, at the same time). Tests must only read it. Raises what ``build`` raises, in every
    worker that needs the folder."""
    root = tmp_path_factory.getbasetemp()
    shared = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root  # the workers' common parent
    folder, done = shared / name, shared / f"{name}.done"
    with FileLock(str(shared / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a failed build in another worker left
            build(folder)
            done.touch()
    return folder
