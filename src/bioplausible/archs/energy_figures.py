"""The energy network's own report figure, declared by the architecture (``EnergyNet.figures``).

``p_sweep(runs, folder) -> [(title, png path)]``: Gammell et al.'s (2020) view of layer skipping, the final test
error against the rewiring probability p (skip nets, one marker per run), the layered nets as horizontal lines, and
the published numbers where a run matches one. Nothing unless the runs hold skip nets at two p or more.
Matplotlib loads on the first call, not with the architecture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def topology(run: Any) -> str:
    options = run.config.get("arch_options") or {}
    kind = options.get("topology", "layered")
    return "skip" if kind == "skip" and (options.get("p") or 0) > 0 else kind


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


FIGURES = (p_sweep,)
