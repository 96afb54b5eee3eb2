"""Study results from run folders: one record per configuration and seed (per early-stopping point when the run
has them), the form the sensitivity analysis reads. A report needs no database: the records come from the runs."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from ..config import NOT_SETTINGS

STEP_BUDGET = ("max_steps", "eval_steps", "epochs")  # how long the run trained: replaced by its points' iterations


def score(summary: dict[str, Any]) -> float:
    """Test accuracy at the best validation epoch if there was one, else the final one; chance when diverged."""
    if summary.get("status") == "diverged":
        return summary["test_accuracy"]
    at_best_val = summary.get("test_accuracy_at_best_val")
    value = at_best_val if at_best_val is not None else summary["test_accuracy"]
    return value if value is not None and math.isfinite(value) else 0.0


def results_from_runs(runs: Iterable[Any]) -> list[dict[str, Any]]:
    """``{"arch", "rule", "status", "seed", "run", "accuracy", "params"}`` per finished run (``Run`` objects or
    ``runs.load_run`` dicts).

    A run with early-stopping points (``eval_steps``) gives one record per point, its configuration's settings
    with ``iterations`` = the point instead of the run's ``max_steps`` / ``eval_steps`` / ``epochs``, and the test
    accuracy after that many steps (exactly what a separate run of that many steps ends with). A diverged run
    scores chance at the points it did not record, as its trial does; a point beyond an unfinished budget is left
    out.
    """
    results = []
    for run in runs:
        config, summary = run["config"], run["summary"]
        if summary.get("status") not in ("ok", "diverged"):
            continue
        params = {k: v for k, v in config.items() if k not in NOT_SETTINGS}
        record = {"arch": config.get("arch"), "rule": config.get("rule"), "status": summary["status"],
                  "seed": config.get("seed"), "run": str(run["path"])}  # fmt: skip
        points = config.get("eval_steps") or []
        if not points:
            results.append({**record, "accuracy": score(summary), "params": params})
            continue
        for point, accuracy in early_stopping_points(points, summary).items():
            settings = {k: v for k, v in params.items() if k not in STEP_BUDGET}
            results.append({**record, "accuracy": accuracy, "params": {**settings, "iterations": point}})
    return results


def early_stopping_points(points: Iterable[int], summary: dict[str, Any]) -> dict[int, float]:
    """Test accuracy at each early-stopping point of a run: recorded, or chance when the run diverged first."""
    recorded = {int(k): v for k, v in (summary.get("step_test_accuracy") or {}).items()}
    chance = summary["test_accuracy"] if summary.get("status") == "diverged" else None
    accuracies = {}
    for point in sorted(int(p) for p in points):
        value = recorded.get(point, chance)
        if value is not None:
            accuracies[point] = value if math.isfinite(value) else 0.0
    return accuracies
