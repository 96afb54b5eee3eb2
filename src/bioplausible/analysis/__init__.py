"""Statistics of study results, as pure functions of numbers (numpy in, numbers out).

Imports neither ``bioplausible.report`` nor ``bioplausible.studies``: both import this package.
"""

from .sensitivity import (
    WITHIN,
    Comparison,
    Estimate,
    SeedGrid,
    area,
    bootstrap,
    common,
    compare_areas,
    curve_estimates,
    difference_of_differences,
    seed_band,
    sorted_means,
    verdict,
    within_best,
)

__all__ = [
    "WITHIN",
    "Comparison",
    "Estimate",
    "SeedGrid",
    "area",
    "bootstrap",
    "common",
    "compare_areas",
    "curve_estimates",
    "difference_of_differences",
    "seed_band",
    "sorted_means",
    "verdict",
    "within_best",
]
