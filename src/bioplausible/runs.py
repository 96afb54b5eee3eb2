"""Run folders: plain files that reports, sweeps and people read.

    config.json      every setting, the seed and the package version
    metrics.jsonl    one JSON object per evaluation (epoch, step, train/..., test/..., probe/...); evaluations
                     at the ``eval_steps`` of a step budget carry ``"eval": "step"`` and only test/...
    summary.json     status (ok | diverged | failed | running: not finished,
                     or killed), accuracies, epochs, wall time, throughput
    checkpoint.pt    model, optimizer, rule and RNG state after the last finished epoch
    probes.json      the probes the run logs (kind, label, unit, scale), as the report draws them
    .lock            held while a process writes the folder: a second writer is refused

Every write goes to a temporary file that is then renamed over the old one, so a run killed at any instant
leaves a folder whose files are each complete: the last checkpoint, and the metrics up to it.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout

from .errors import ConfigError

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: Path, write) -> None:
    """Call ``write(file_object)`` on a temporary file beside ``path``, then rename it to ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; the file is an ordinary, readable result
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_safe(value: Any) -> Any:
    """NaN and inf are not JSON; write them as null so every reader can parse the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_json(path: Path, data: Any) -> None:
    text = json.dumps(_json_safe(data), indent=2, sort_keys=True) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


class RunFolder:
    """The files of one run; see the module docstring."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config = self.path / "config.json"
        self.metrics = self.path / "metrics.jsonl"
        self.summary = self.path / "summary.json"
        self.checkpoint = self.path / "checkpoint.pt"
        self.probes = self.path / "probes.json"
        self._lock: FileLock | None = None
        self._created = False

    def lock(self) -> None:
        """Create the folder if needed and hold its lock; ConfigError if another process holds it."""
        self._created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.path / ".lock", thread_local=False)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            self._remove_if_empty()
            raise ConfigError(
                f"{self.path} is in use by another process (a run or report writing it); wait for it to finish, "
                "or choose another --out"
            ) from None
        self._lock = lock

    def unlock(self) -> None:
        """Release the lock; a folder this process created and left without any run file is removed."""
        if self._lock is not None:
            self._lock.release()  # the file stays: deleting it could race a process acquiring it
            self._lock = None
        self._remove_if_empty()

    def _remove_if_empty(self) -> None:
        if self._created and self.path.is_dir() and {p.name for p in self.path.iterdir()} <= {".lock"}:
            (self.path / ".lock").unlink(missing_ok=True)
            self.path.rmdir()

    def create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    def holds_run(self) -> bool:
        return any(p.exists() for p in (self.config, self.checkpoint, self.summary))

    def write_metrics(self, records: list[dict[str, Any]]) -> None:
        """Rewrite the whole file (it is small): appending could leave half a line behind a kill. Keys keep the
        order they were recorded in: per-layer probes in the model's module order, which the figures rely on."""
        text = "".join(json.dumps(_json_safe(r)) + "\n" for r in records)
        atomic_write(self.metrics, lambda f: f.write(text.encode()))

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics.exists():
            return []
        return [json.loads(line) for line in self.metrics.read_text().splitlines() if line.strip()]

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        atomic_write(self.checkpoint, lambda f: torch.save(state, f))

    def load_checkpoint(self, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        return torch.load(self.checkpoint, map_location=map_location, weights_only=False)


def load_run(path: str | Path) -> dict[str, Any]:
    """Config, metrics and summary of a run folder, as plain Python objects (for reports and notebooks)."""
    run = RunFolder(path)
    records = run.read_metrics()
    probes = read_json(run.probes) if run.probes.exists() else None
    return {
        "path": str(run.path),
        "config": read_json(run.config) if run.config.exists() else {},
        "metrics": [r for r in records if r.get("eval") != "step"],  # one per epoch
        "step_metrics": [r for r in records if r.get("eval") == "step"],  # the evaluations at ``eval_steps``
        "probes": probes,  # declared probe specs (None for runs written before probes.json existed)
        "summary": read_json(run.summary) if run.summary.exists() else {},
    }
