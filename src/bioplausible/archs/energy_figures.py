"""The energy network's own report figure, declared by the architecture (``EnergyNet.figures``).

``p_sweep(runs, folder) -> [(title, png path)]``: Gammell et al.'s (2020) view of layer skipping, the final test
error against the rewiring probability p (skip nets, one marker per run), the layered nets as horizontal lines, and
the published numbers where a run matches one. Nothing unless the runs hold skip nets at two p or more.

Gammell et al.'s open questions (``bioplausible reproduce ep-open-questions``), each drawn only where the runs hold
it:

* ``depth_sweep``: final test error against the number of hidden layers, one line per topology; and the ratio of
  the input-side to the output-side weight change (lr × ‖EP update‖ of the first adjacent layer pair over the
  last's), the vanishing learning signal per depth;
* ``skip_removal``: test error per epoch of a skip net whose skip connections were removed during training, beside
  the same net kept whole and the layered net of its depth;
* ``a_sweep``: final test error against the skip weights' scale a at one p and depth.

Matplotlib loads on the first call, not with the architecture.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

UPDATE_NORM = "probe/ep_update_norm/"  # lr × this per adjacent layer pair: the size of a weight change


def topology(run: Any) -> str:
    """layered, skip or dense; a skip net with p = 0 has no skip connections: layered."""
    options = run.config.get("arch_options") or {}
    kind = options.get("topology", "layered")
    return "layered" if kind == "skip" and not (options.get("p") or 0) > 0 else kind


def p_sweep(runs: list[Any], folder: Path) -> list[tuple[str, Path]]:
    from ..analysis.figures import plt, rule_colour, save_figure
    from ..papers import published_for

    finished = [r for r in runs if r.summary.get("test_accuracy") is not None]
    skip = [r for r in finished if topology(r) == "skip"]
    if len({r.config["arch_options"]["p"] for r in skip}) < 2:
        return []
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    points = sorted((r.config["arch_options"]["p"], r.test_error()) for r in skip)
    colour = rule_colour(skip[0].rule)
    ax.plot(*zip(*points), "o-", color=colour, label=f"skip, {skip[0].rule_label}, ours")
    matched = [(r.config["arch_options"]["p"], published_for(r.config, r.summary)) for r in skip]
    papers = sorted((p, entry.test_error) for p, entry in matched if entry)
    if papers:
        ax.plot(*zip(*papers), "s", color=colour, fillstyle="none", markersize=9, label="skip, published")
    for i, run in enumerate(r for r in finished if topology(r) == "layered"):
        ax.axhline(run.test_error(), color=f"C{i + 1}", linestyle="--", label=f"layered, {run.rule_label}, ours")
        paper = published_for(run.config, run.summary)
        if paper:
            ax.axhline(paper.test_error, color=f"C{i + 1}", linestyle=":", label="layered, published")
    ax.set_xscale("log")
    ax.set(xlabel="rewiring probability p", ylabel="final test error (%)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    title = "Layer skipping: test error against the rewiring probability p"
    return [(title, save_figure(fig, folder / "p_sweep.png"))]


def depth(run: Any) -> int:
    return len(run.config["arch_options"].get("hidden_sizes") or [])


def removed_after(run: Any) -> int:
    return int((run.config.get("rule_options") or {}).get("remove_skip_after") or 0)


def _series(runs: list[Any]) -> dict[tuple, list[Any]]:
    """Finished runs kept whole (no skip removal), grouped by what is not depth: topology, p and a."""
    groups: dict[tuple, list[Any]] = {}
    for run in runs:
        if run.summary.get("test_accuracy") is None or removed_after(run):
            continue
        options = run.config["arch_options"]
        key = (topology(run), options.get("p") if topology(run) == "skip" else None, options.get("a"))
        groups.setdefault(key, []).append(run)
    return groups


def input_output_ratio(run: Any) -> float:
    """Mean over epochs of ‖update‖ of the first adjacent layer pair (0-1) over the last's (L-1 to L); NaN when
    the run logged no update norms. The lr cancels: one global rate."""
    last = f"{depth(run)}-{depth(run) + 1}"
    means = []
    for pair in ("0-1", last):
        logged = [m[UPDATE_NORM + pair] for m in run.metrics if m.get(UPDATE_NORM + pair)]
        means.append(sum(logged) / len(logged) if logged else math.nan)
    return means[0] / means[1] if means[1] else math.nan


def depth_sweep(runs: list[Any], folder: Path) -> list[tuple[str, Path]]:
    from ..analysis.figures import plt, save_figure

    series = {key: group for key, group in _series(runs).items() if len({depth(r) for r in group}) >= 2}
    if not series:
        return []
    fig, (error_ax, ratio_ax) = plt.subplots(1, 2, figsize=(10, 4.2))
    for i, ((kind, p, a), group) in enumerate(sorted(series.items(), key=str)):
        group = sorted(group, key=depth)
        label = kind if kind != "skip" else f"skip p={p:g}, a={a:g}"
        depths = [depth(r) for r in group]
        error_ax.plot(depths, [r.test_error() for r in group], "o-", color=f"C{i}", label=f"{label}, final")
        error_ax.plot(depths, [r.test_error("best_test_accuracy") for r in group], "o", color=f"C{i}",
                      fillstyle="none", markersize=9, label=f"{label}, best")  # fmt: skip
        ratio_ax.plot(depths, [input_output_ratio(r) for r in group], "o-", color=f"C{i}", label=label)
    every_depth = sorted({depth(r) for group in series.values() for r in group})
    for ax in (error_ax, ratio_ax):
        ax.set_xticks(every_depth)  # whole numbers of layers
    error_ax.set(xlabel="hidden layers", ylabel="test error (%)")
    ratio_ax.set(xlabel="hidden layers", ylabel="‖update‖ first layer pair / last pair")
    ratio_ax.set_yscale("log")
    for ax in (error_ax, ratio_ax):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize="small")
    title = "Depth: test error and input-side / output-side weight change, layered against layer skipping"
    return [(title, save_figure(fig, folder / "depth_sweep.png"))]


def skip_removal(runs: list[Any], folder: Path) -> list[tuple[str, Path]]:
    from ..analysis.figures import epochs, plt, save_figure, values

    removed = [r for r in runs if removed_after(r)]
    if not removed:
        return []
    fig, ax = plt.subplots(figsize=(7, 4.2))
    kept = _series(runs)
    for i, run in enumerate(removed):
        options = run.config["arch_options"]
        twins = [r for r in kept.get(("skip", options.get("p"), options.get("a")), []) if depth(r) == depth(run)]
        layered = [r for key, g in kept.items() if key[0] == "layered" for r in g if depth(r) == depth(run)]
        lines = [(run, f"skip removed after epoch {removed_after(run)}", "-")]
        lines += [(twins[0], "skip kept", "--")] if twins else []
        lines += [(layered[0], "layered", ":")] if layered else []
        for other, label, style in lines:
            error = [100 * (1 - a) for a in values(other, "test/accuracy")]
            ax.plot(epochs(other), error, style, marker=".", color=f"C{i}",
                    label=f"{depth(run)} hidden layers, {label}")  # fmt: skip
        ax.axvline(removed_after(run) + 0.5, color=f"C{i}", alpha=0.4)
    ax.set(xlabel="epoch", ylabel="test error (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    title = "Removing the skip connections during training: does the net keep its accuracy?"
    return [(title, save_figure(fig, folder / "skip_removal.png"))]


def a_sweep(runs: list[Any], folder: Path) -> list[tuple[str, Path]]:
    from ..analysis.figures import plt, save_figure

    by_net: dict[tuple, list[Any]] = {}
    for (kind, p, _), group in _series(runs).items():
        for run in group:
            if kind == "skip":
                by_net.setdefault((p, depth(run)), []).append(run)
    by_net = {key: g for key, g in by_net.items() if len({r.config["arch_options"]["a"] for r in g}) >= 2}
    if not by_net:
        return []
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for i, ((p, layers), group) in enumerate(sorted(by_net.items())):
        group = sorted(group, key=lambda r: r.config["arch_options"]["a"])
        scales = [r.config["arch_options"]["a"] for r in group]
        ax.plot(scales, [r.test_error() for r in group], "o-", color=f"C{i}", label=f"p={p:g}, {layers} layers, final")
        ax.plot(scales, [r.test_error("best_test_accuracy") for r in group], "o", color=f"C{i}", fillstyle="none",
                markersize=9, label=f"p={p:g}, {layers} layers, best")  # fmt: skip
    ax.set_xscale("log")
    scales = sorted({r.config["arch_options"]["a"] for g in by_net.values() for r in g})
    ax.set_xticks(scales, [f"{a:g}" for a in scales])  # the scales run, not log-axis minor ticks over each other
    ax.minorticks_off()
    ax.set(xlabel="skip weights' scale a", ylabel="test error (%)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    title = "Layer skipping: test error against the skip weights' scale a"
    return [(title, save_figure(fig, folder / "a_sweep.png"))]


FIGURES = (p_sweep, depth_sweep, skip_removal, a_sweep)
