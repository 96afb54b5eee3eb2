"""Hyperparameter sensitivity with its uncertainty (Im, Patil & Branson's sorted-accuracy curves).

Terms. For one (arch, rule), a *configuration* c is one grid point: depth, activation, learning rate and the
early-stopping point (iterations). A *cell* is a configuration without its early-stopping point: what one training
run covers, since one run per (cell, seed) records the test accuracy at every early-stopping point. A_{c,s} is the
test accuracy (a fraction) of configuration c with seed s, and m_c = mean_s A_{c,s}.

Statistics of one curve (the m_c sorted best to worst):

    area   = mean_c m_c                                  the area under the sorted curve, rank scaled to [0, 1]
    within = #{c : m_c >= max_c' m_c' − 0.01} / #c       the fraction of the grid within 1 point of the best

Bootstrap (two-level, clustered): a replicate draws the cells with replacement (as many as there are), and within
each drawn cell its seeds with replacement (as many as it has). A drawn (cell, seed) brings all the early-stopping
points of that seed's run together: they come from one training run and are not independent draws. The statistic
is recomputed on every replicate; the 95 % interval is the 2.5th to 97.5th percentile of the replicates (percentile
bootstrap). So the interval covers both the seed-to-seed noise and which grid points happen to be in the grid.

Comparisons (dense − plain, or one rule's difference against another's) draw the SAME cells for every net compared,
paired by their cell key (depth, activation, lr: the nets share the grid), and each net's seeds independently (seed
k of two different nets are unrelated draws). Only configurations that every compared net has are used. The
generator is seeded: the same numbers give the same interval, bit for bit.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

WITHIN = 0.01  # "within 1 point of the best": one percentage point of accuracy
N_BOOT = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class SeedGrid:
    """The accuracies of one (arch, rule) over its grid.

    Attributes:
        cells: one key per cell, e.g. (depth, activation, lr).
        points: the early-stopping points (the union over cells); a cell without a point holds NaN there.
        seeds: the seeds, in column order.
        acc: test accuracy, shape (n_cells, n_points, n_seeds); NaN where there is no value.
    """

    cells: tuple[Hashable, ...]
    points: tuple[Hashable, ...]
    seeds: tuple[Hashable, ...]
    acc: np.ndarray

    @classmethod
    def from_records(cls, records: Iterable[tuple[Hashable, Hashable, Hashable, float]]) -> SeedGrid:
        """From (cell, point, seed, accuracy) tuples; a repeated (cell, point, seed) keeps the last value."""
        records = list(records)
        if not records:
            raise ValueError("no records: a sensitivity grid needs at least one accuracy")
        cells = tuple(dict.fromkeys(r[0] for r in records))
        points = tuple(sorted(dict.fromkeys(r[1] for r in records), key=_order))
        seeds = tuple(sorted(dict.fromkeys(r[2] for r in records), key=_order))
        index = [{k: i for i, k in enumerate(keys)} for keys in (cells, points, seeds)]
        acc = np.full((len(cells), len(points), len(seeds)), np.nan)
        for cell, point, seed, accuracy in records:
            acc[index[0][cell], index[1][point], index[2][seed]] = accuracy
        return cls(cells, points, seeds, acc)

    def aligned(self, cells: Sequence[Hashable], points: Sequence[Hashable]) -> SeedGrid:
        """This grid on the given cells and points, in that order (NaN where it has no value)."""
        acc = np.full((len(cells), len(points), len(self.seeds)), np.nan)
        row = {k: i for i, k in enumerate(self.cells)}
        col = {k: i for i, k in enumerate(self.points)}
        for i, cell in enumerate(cells):
            for j, point in enumerate(points):
                if cell in row and point in col:
                    acc[i, j] = self.acc[row[cell], col[point]]
        return SeedGrid(tuple(cells), tuple(points), self.seeds, acc)

    def means(self) -> np.ndarray:
        """m_c for every (cell, point): shape (n_cells, n_points), NaN where no seed has a value."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices are missing configurations
            return np.nanmean(self.acc, axis=2)


def _order(key: Hashable) -> tuple:
    """Numbers in numeric order, everything else after them as text."""
    return (0, key, "") if isinstance(key, (int, float)) else (1, 0, str(key))


@dataclass(frozen=True)
class Estimate:
    """A statistic with its percentile-bootstrap interval."""

    value: float
    low: float
    high: float
    n_boot: int

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


@dataclass(frozen=True)
class Comparison:
    """Dense against plain on the configurations both have: each net's area and within-1-point fraction, and the
    dense − plain differences, all with intervals."""

    area_plain: Estimate
    area_dense: Estimate
    area_difference: Estimate
    within_plain: Estimate
    within_dense: Estimate
    within_difference: Estimate
    n_cells: int
    n_configs: int
    n_seeds: tuple[int, int]


# ------------------------------------------------------------------------------------------- statistics


def area(m: np.ndarray) -> np.ndarray:
    """The area under the sorted curve (the mean over configurations), per row of ``m`` (B, n) with NaN = absent."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(m, axis=-1)


def within_best(m: np.ndarray, within: float = WITHIN) -> np.ndarray:
    """The fraction of configurations within ``within`` of the best, per row of ``m`` (B, n) with NaN = absent."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        best = np.nanmax(m, axis=-1, keepdims=True)
    present = ~np.isnan(m)
    near = present & (m >= best - within - 1e-12)
    return near.sum(axis=-1) / np.maximum(present.sum(axis=-1), 1)


def sorted_means(grid: SeedGrid) -> np.ndarray:
    """The sorted curve: m_c of every configuration present, best to worst."""
    m = grid.means().ravel()
    return np.sort(m[~np.isnan(m)])[::-1]


def seed_band(grid: SeedGrid) -> tuple[np.ndarray, np.ndarray]:
    """The seed spread of the sorted curve: each seed's own sorted curve, and at every rank the lowest and the
    highest of them (the range of the curves a one-seed study would have drawn). Ranks beyond the shortest seed's
    curve (a seed with missing runs) are left out."""
    curves = []
    for s in range(len(grid.seeds)):
        values = grid.acc[:, :, s].ravel()
        values = values[~np.isnan(values)]
        if values.size:
            curves.append(np.sort(values)[::-1])
    if not curves:
        return np.array([]), np.array([])
    n = min(len(c) for c in curves)
    stacked = np.stack([c[:n] for c in curves])
    return stacked.min(axis=0), stacked.max(axis=0)


# ------------------------------------------------------------------------------------------- bootstrap


def _replicate_means(grid: SeedGrid, cell_draws: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """m_c of every configuration of every replicate: cells ``cell_draws`` (B, n_cells), seeds drawn here.

    Returns (B, n_cells · n_points); absent configurations are NaN.
    """
    n_boot, n_cells = cell_draws.shape
    n_seeds = len(grid.seeds)
    seed_draws = rng.integers(n_seeds, size=(n_boot, n_cells, 1, n_seeds))
    acc = grid.acc[cell_draws]  # (B, n_cells, n_points, n_seeds)
    drawn = np.take_along_axis(acc, np.broadcast_to(seed_draws, acc.shape), axis=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(drawn, axis=3).reshape(n_boot, -1)


def bootstrap(
    grids: Sequence[SeedGrid],
    statistic: Callable[[list[np.ndarray]], np.ndarray],
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = LEVEL,
) -> Estimate:
    """A statistic of one or more grids on the same cells, with its percentile-bootstrap interval.

    Args:
        grids: grids with identical ``cells`` and ``points`` (see ``SeedGrid.aligned``).
        statistic: maps one (B, n_configs) array of m_c per grid to a (B,) array.
        n_boot: bootstrap replicates B.
        seed: seeds the generator (the interval is a deterministic function of the numbers and the seed).
        level: the interval's coverage.

    Raises:
        ValueError: the grids do not share their cells and points.
    """
    if any(g.cells != grids[0].cells or g.points != grids[0].points for g in grids):
        raise ValueError("bootstrap: the grids must share cells and points (align them with SeedGrid.aligned)")
    value = float(statistic([g.means().reshape(1, -1) for g in grids])[0])
    rng = np.random.default_rng(seed)
    cell_draws = rng.integers(len(grids[0].cells), size=(n_boot, len(grids[0].cells)))
    replicates = statistic([_replicate_means(g, cell_draws, rng) for g in grids])
    replicates = replicates[~np.isnan(replicates)]
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(replicates, [tail, 100 - tail]) if replicates.size else (np.nan, np.nan)
    return Estimate(value, float(low), float(high), n_boot)


def common(grids: Sequence[SeedGrid]) -> list[SeedGrid]:
    """The grids on the cells and points they all have, with a configuration that any of them lacks (no seed has
    a value) blanked in all, so that every statistic compares the same configurations."""
    cells = [c for c in grids[0].cells if all(c in g.cells for g in grids[1:])]
    points = [p for p in grids[0].points if all(p in g.points for g in grids[1:])]
    aligned = [g.aligned(cells, points) for g in grids]
    absent = np.zeros((len(cells), len(points)), dtype=bool)
    for g in aligned:
        absent |= np.isnan(g.means())
    for g in aligned:
        g.acc[absent] = np.nan
    return aligned


def curve_estimates(grid: SeedGrid, n_boot: int = N_BOOT, seed: int = 0) -> dict[str, Estimate]:
    """The area and the within-1-point fraction of one grid, with intervals."""
    return {
        "area": bootstrap([grid], lambda m: area(m[0]), n_boot, seed),
        "within": bootstrap([grid], lambda m: within_best(m[0]), n_boot, seed),
    }


def compare_areas(plain: SeedGrid, dense: SeedGrid, n_boot: int = N_BOOT, seed: int = 0) -> Comparison:
    """Dense − plain: the claim's direct test (a positive area difference whose interval excludes 0 supports it)."""
    plain, dense = common([plain, dense])
    if not np.any(~np.isnan(plain.means())):
        raise ValueError("the two nets have no configuration in common: nothing to compare")

    def run(statistic: Callable[[list[np.ndarray]], np.ndarray]) -> Estimate:
        return bootstrap([plain, dense], statistic, n_boot, seed)

    return Comparison(
        area_plain=run(lambda m: area(m[0])),
        area_dense=run(lambda m: area(m[1])),
        area_difference=run(lambda m: area(m[1]) - area(m[0])),
        within_plain=run(lambda m: within_best(m[0])),
        within_dense=run(lambda m: within_best(m[1])),
        within_difference=run(lambda m: within_best(m[1]) - within_best(m[0])),
        n_cells=len(plain.cells),
        n_configs=int(np.sum(~np.isnan(plain.means()))),
        n_seeds=(len(plain.seeds), len(dense.seeds)),
    )


def difference_of_differences(
    plain: SeedGrid, dense: SeedGrid, plain_control: SeedGrid, dense_control: SeedGrid, n_boot: int = N_BOOT,
    seed: int = 0,
) -> Estimate:  # fmt: skip
    """(area dense − area plain) of a rule minus the same of a control rule (bp), with its interval: whether dense
    connections help the rule more than they help the control."""
    grids = common([plain, dense, plain_control, dense_control])
    return bootstrap(grids, lambda m: (area(m[1]) - area(m[0])) - (area(m[3]) - area(m[2])), n_boot, seed)


def verdict(estimate: Estimate) -> str:
    """The verdict: "higher" when the interval lies above 0, "lower" when below, else "inconclusive"."""
    if estimate.low > 0:
        return "higher"
    if estimate.high < 0:
        return "lower"
    return "inconclusive"
