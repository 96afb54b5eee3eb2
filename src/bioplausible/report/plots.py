"""The report's generic figures (drawn in :mod:`bioplausible.analysis.figures`), for runs given as
:class:`~bioplausible.analysis.runs.Run` objects or ``runs.load_run`` dicts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..analysis.figures import plot_learning_curves as _plot_learning_curves
from ..analysis.figures import plt, save_figure
from ..analysis.runs import Run, as_run

__all__ = ["plot_learning_curves", "plt", "save_figure"]


def plot_learning_curves(runs: list[Run] | list[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Test accuracy and the angle to the backprop gradient per epoch, one column per architecture."""
    return _plot_learning_curves([as_run(r) for r in runs], path, title)
