"""Studies: sweeps through Optuna and presets for the four seed studies; the sensitivity analysis they report
lives in :mod:`bioplausible.analysis`, re-exported here.

Optuna loads on first use of a sweep (``bioplausible --help`` stays fast)."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BUDGETS": ".presets",
    "PRESETS": ".presets",
    "available_spec": ".presets",
    "preset_spec": ".presets",
    "curve_stats": "..analysis.curves",
    "plot_sensitivity": "..analysis.curves",
    "sensitivity_stats": "..analysis.curves",
    "sensitivity_table": "..analysis.curves",
    "sorted_curves": "..analysis.curves",
    "results_from_runs": "..analysis.results",
    "load_spec": ".sweep",
    "run_sweep": ".sweep",
    "trial_results": ".sweep",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'bioplausible.studies' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)


__all__ = sorted(_EXPORTS)
