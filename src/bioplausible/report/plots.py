"""Figures from run folders (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def mean_probe(record: dict[str, Any], kind: str) -> float:
    """Mean over layers of the ``probe/<kind>/<layer>`` values in one metrics record (NaN if none)."""
    values = [v for k, v in record.items() if k.startswith(f"probe/{kind}/") and v is not None]
    return sum(values) / len(values) if values else math.nan


def plot_learning_curves(runs: list[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Test accuracy (top) and the angle to the backprop gradient (bottom) per epoch, one column per architecture,
    one line per rule. ``runs`` are ``bioplausible.runs.load_run`` dicts."""
    archs = sorted({r["config"]["arch"] for r in runs})
    fig, axes = plt.subplots(2, len(archs), figsize=(5 * len(archs), 7), squeeze=False, sharex="col")
    for col, arch in enumerate(archs):
        top, bottom = axes[0][col], axes[1][col]
        for run in (r for r in runs if r["config"]["arch"] == arch):
            epochs = [m["epoch"] for m in run["metrics"]]
            rule = run["config"]["rule"]
            top.plot(epochs, [100 * m["test/accuracy"] for m in run["metrics"]], label=rule)
            bottom.plot(epochs, [mean_probe(m, "grad_angle") for m in run["metrics"]], label=rule)
        top.set(title=arch, ylabel="test accuracy (%)")
        bottom.set(xlabel="epoch", ylabel="angle to backprop gradient (°, mean over layers)")
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
            ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
