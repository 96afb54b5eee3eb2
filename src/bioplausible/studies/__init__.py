"""Studies: sweeps through Optuna, the sensitivity analysis of Im et al., and presets for the four seed studies."""

from .presets import BUDGETS, PRESETS, available_spec, preset_spec
from .sensitivity import curve_stats, plot_sensitivity, sensitivity_stats, sensitivity_table, sorted_curves
from .sweep import load_spec, results_from_runs, run_sweep, trial_results

__all__ = [
    "BUDGETS",
    "PRESETS",
    "available_spec",
    "curve_stats",
    "load_spec",
    "plot_sensitivity",
    "preset_spec",
    "results_from_runs",
    "run_sweep",
    "sensitivity_stats",
    "sensitivity_table",
    "sorted_curves",
    "trial_results",
]
