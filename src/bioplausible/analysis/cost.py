"""What a folder of runs cost: wall time and CPU core-hours per (arch, rule), read from the runs' summaries, and for
a study with a grid, what its points not yet trained should take at the measured means.

A run's wall time is its summary's ``wall_time_s`` (every session it trained, resumed ones summed); its
core-seconds are that times the CPU threads torch used (``threads_used``, else the ``threads`` asked for) times the
processes that trained it (``world_size``). A run on a GPU, or one whose thread count was not recorded, counts in
wall time only; one without a recorded wall time counts in neither, and the table says how many such runs there
are. The projection assumes a point costs the mean of the finished CPU runs of its (arch, rule) on the same
machine; pairs with no such run yet are named, not guessed.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .document import Table
from .grid import chosen, points_of

FINISHED = ("ok", "diverged")


@dataclass(frozen=True)
class RunCost:
    """One finished run's cost: wall seconds (None: not recorded) and core-seconds (None: not a known CPU run)."""

    wall: float | None
    cores: float | None


def run_cost(config: dict[str, Any], summary: dict[str, Any]) -> RunCost:
    wall = summary.get("wall_time_s")
    if wall is None:
        return RunCost(None, None)
    on_cpu = str(config.get("device_used", "cpu")).startswith("cpu")
    threads = (config.get("threads_used") or config.get("threads")) if on_cpu else None
    processes = config.get("world_size") or 1
    return RunCost(float(wall), float(wall) * threads * processes if threads else None)


def pair_of(config: dict[str, Any], base: dict[str, Any] | None = None) -> tuple[str, str]:
    """(arch, rule) of a run's config or a grid point: its own, else the spec base's, else TrainConfig's default."""
    return str(chosen("arch", config, base or {})), str(chosen("rule", config, base or {}))


def costs_by_pair(runs: Iterable[Any]) -> dict[tuple[str, str], list[RunCost]]:
    """(arch, rule) -> the costs of its finished runs (status ok or diverged), pairs sorted."""
    pairs: dict[tuple[str, str], list[RunCost]] = defaultdict(list)
    for run in runs:
        if run["summary"].get("status") in FINISHED:
            pairs[pair_of(run["config"])].append(run_cost(run["config"], run["summary"]))
    return dict(sorted(pairs.items()))


def cost_table(runs: Iterable[Any]) -> Table:
    """One row per (arch, rule), and one for all when there are several: finished runs, mean wall seconds per run,
    total wall and core hours, and how many runs each total leaves out."""
    pairs = costs_by_pair(runs)
    rows = [cost_row(arch, rule, costs) for (arch, rule), costs in pairs.items()]
    if len(pairs) > 1:
        rows.append(cost_row("all", "", [c for costs in pairs.values() for c in costs]))
    headers = (
        "arch",
        "rule",
        "runs",
        "mean wall s / run",
        "wall h",
        "core h",
        "left out (no wall time / no CPU threads)",
    )
    return Table.of(headers, rows)


def cost_row(arch: str, rule: str, costs: list[RunCost]) -> tuple[object, ...]:
    walls = [c.wall for c in costs if c.wall is not None]
    cores = [c.cores for c in costs if c.cores is not None]
    mean = f"{sum(walls) / len(walls):.0f}" if walls else "–"
    wall_h = f"{sum(walls) / 3600:.2f}" if walls else "–"
    core_h = f"{sum(cores) / 3600:.2f}" if cores else "–"
    return (arch, rule, len(costs), mean, wall_h, core_h, f"{len(costs) - len(walls)} / {len(walls) - len(cores)}")


def matches(point: dict[str, Any], config: dict[str, Any], skip: Iterable[str] = ()) -> bool:
    """Whether a run's (resolved) config has every setting of a grid point (``group.option`` keys looked up in
    the option group); keys in ``skip`` (settings the command line overrode) are not compared."""
    for key, value in point.items():
        if key in skip:
            continue
        group, _, option = key.partition(".")
        have = (config.get(group) or {}).get(option) if option else config.get(key)
        if canonical(have) != canonical(value):
            return False
    return True


def canonical(value: Any) -> Any:
    """A setting in a form that compares equal whatever way it was written: numbers as floats (lr 1 = 1.0),
    sequences as lists, mappings with their values so."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    return json.dumps(value, sort_keys=True, default=str)


def remaining_cost(runs: Iterable[Any], spec: dict[str, Any]) -> str:
    """A sentence: how many of the spec's grid points have a finished run, how many failed, and the core-hours the
    others should take at the means of the finished CPU runs of their (arch, rule)."""
    runs = list(runs)
    points, base = points_of(spec), spec.get("base") or {}
    skip = set(spec.get("overrides") or {})
    by_pair: dict[tuple[tuple[str, str], bool], list[dict[str, Any]]] = defaultdict(list)
    for run in runs:  # a point is looked for among the runs of its own (arch, rule) only
        status = run["summary"].get("status")
        if status in FINISHED or status == "failed":
            by_pair[(pair_of(run["config"]), status in FINISHED)].append(run["config"])

    def has_run(point: dict[str, Any], finished: bool) -> bool:
        return any(matches(point, config, skip) for config in by_pair[(pair_of(point, base), finished)])

    left_points = [p for p in points if not has_run(p, True)]
    n_failed = sum(1 for p in left_points if has_run(p, False))
    text = f"{len(points) - len(left_points)} of the grid's {len(points)} runs are finished"
    text += f" and {n_failed} failed (the study's command retries them)" if n_failed else ""
    if not left_points:
        return text + "."
    means = {pair: [c.cores for c in costs if c.cores is not None] for pair, costs in costs_by_pair(runs).items()}
    left, unknown = 0.0, set()
    for point in left_points:
        pair = pair_of(point, base)
        if means.get(pair):
            left += sum(means[pair]) / len(means[pair])
        else:
            unknown.add("/".join(pair))
    if len(unknown) == len({pair_of(p, base) for p in left_points}):
        return text + "; no (arch, rule) left to run has a finished CPU run yet to estimate the rest from."
    text += f"; at the means above the others should take about {left / 3600:.1f} core-hours"
    if unknown:
        text += f", plus those of {', '.join(sorted(unknown))}, which have no finished CPU run to measure"
    return text + "."
