"""What a folder of runs cost: wall time and CPU core-hours per (arch, rule), read from the runs' summaries, and for
a study with a grid, what its points not yet trained should take at the measured means.

A run's wall time is its summary's ``wall_time_s`` (every session it trained, resumed ones summed); its
core-seconds are that times the CPU threads torch used (``threads_used``, else the ``threads`` asked for). A run
on a GPU counts in wall time only. The projection assumes a point costs the mean of the finished runs of its
(arch, rule) on the same machine; pairs with no finished run yet are named, not guessed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from .document import Table
from .grid import points_of


def core_seconds(config: dict[str, Any], summary: dict[str, Any]) -> float | None:
    """Wall seconds × CPU threads of one run; None on a GPU or when the thread count is not recorded."""
    if not str(config.get("device_used", "cpu")).startswith("cpu"):
        return None
    threads = config.get("threads_used") or config.get("threads")
    return float(summary.get("wall_time_s") or 0.0) * threads if threads else None


def costs_by_pair(runs: Iterable[Any]) -> dict[tuple[str, str], list[tuple[float, float | None]]]:
    """(arch, rule) -> [(wall s, core s or None)] of the runs that finished (status ok or diverged)."""
    pairs: dict[tuple[str, str], list[tuple[float, float | None]]] = defaultdict(list)
    for run in runs:
        config, summary = run["config"], run["summary"]
        if summary.get("status") in ("ok", "diverged"):
            wall = float(summary.get("wall_time_s") or 0.0)
            pairs[(str(config.get("arch")), str(config.get("rule")))].append((wall, core_seconds(config, summary)))
    return dict(sorted(pairs.items()))


def cost_table(runs: Iterable[Any]) -> Table:
    """One row per (arch, rule): finished runs, mean wall seconds per run, total wall and core hours."""
    pairs = costs_by_pair(runs)
    rows = [cost_row(arch, rule, costs) for (arch, rule), costs in pairs.items()]
    if len(pairs) > 1:
        rows.append(cost_row("all", "", [c for costs in pairs.values() for c in costs]))
    return Table.of(("arch", "rule", "runs", "mean wall s / run", "wall h", "core h"), rows)


def cost_row(arch: str, rule: str, costs: list[tuple[float, float | None]]) -> tuple[object, ...]:
    walls = [w for w, _ in costs]
    cores = [c for _, c in costs]
    core_h = "–" if None in cores else f"{sum(cores) / 3600:.2f}"  # type: ignore[arg-type]
    return (arch, rule, len(costs), f"{sum(walls) / len(walls):.0f}", f"{sum(walls) / 3600:.2f}", core_h)


def remaining_cost(runs: Iterable[Any], spec: dict[str, Any]) -> str:
    """A sentence: how many of the spec's grid points are done, and the core-hours the others should take."""
    pairs = costs_by_pair(runs)
    points = points_of(spec)
    base = spec.get("base") or {}
    todo: dict[tuple[str, str], int] = defaultdict(int)
    for point in points:
        todo[(str(point.get("arch", base.get("arch"))), str(point.get("rule", base.get("rule"))))] += 1
    done = sum(len(v) for v in pairs.values())
    left, unknown = 0.0, []
    for pair, n in sorted(todo.items()):
        missing = n - len(pairs.get(pair, []))
        cores = [c for _, c in pairs.get(pair, [])]
        if missing <= 0:
            continue
        if not cores or None in cores:
            unknown.append("/".join(pair))
            continue
        left += missing * sum(cores) / len(cores)  # type: ignore[arg-type]
    text = f"{done} of the grid's {len(points)} runs are finished"
    if done >= len(points):
        return text + "."
    text += f"; at the means above the others should take about {left / 3600:.1f} core-hours"
    if unknown:
        text += f", plus those of {', '.join(unknown)}, which have no finished CPU run to measure"
    return text + "."
