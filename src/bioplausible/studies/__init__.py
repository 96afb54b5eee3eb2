"""Studies: sweeps through Optuna, the sensitivity analysis of Im et al., and presets for the four seed studies.

Optuna loads on first use of a sweep (``bioplausible --help`` stays fast)."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BUDGETS": "presets",
    "PRESETS": "presets",
    "available_spec": "presets",
    "preset_spec": "presets",
    "curve_stats": "sensitivity",
    "plot_sensitivity": "sensitivity",
    "sensitivity_stats": "sensitivity",
    "sensitivity_table": "sensitivity",
    "sorted_curves": "sensitivity",
    "load_spec": "sweep",
    "results_from_runs": "sweep",
    "run_sweep": "sweep",
    "trial_results": "sweep",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'bioplausible.studies' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


__all__ = sorted(_EXPORTS)
