"""Hyperparameter sensitivity (Im, Patil, Branson): every configuration's accuracy, sorted best to worst.

A rule that is robust to its hyperparameters keeps a flat sorted curve; a fragile one falls off after its few good
configurations. Pure functions of result records ``{"arch", "rule", "accuracy"}`` (accuracy as a fraction); records
that differ only in their seed are averaged into one configuration first when they carry ``params`` and ``seed``.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..report.tables import markdown_table

WITHIN = 0.01  # "within 1 point of the best": one percentage point of accuracy


def config_key(result: dict[str, Any]) -> str:
    """The configuration a result belongs to: its params without the seed (or the result itself when none)."""
    params = result.get("params")
    if params is None:
        return json.dumps(result.get("run", id(result)))
    return json.dumps({k: v for k, v in params.items() if k != "seed"}, sort_keys=True, default=str)


def sorted_curves(results: list[dict[str, Any]]) -> dict[tuple[str, str], list[float]]:
    """(arch, rule) -> accuracy of each configuration (mean over its seeds), sorted best to worst."""
    by_config: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        by_config[(str(r["arch"]), str(r["rule"]))][config_key(r)].append(float(r["accuracy"]))
    return {
        pair: sorted((sum(v) / len(v) for v in configs.values()), reverse=True)
        for pair, configs in sorted(by_config.items())
    }


def curve_stats(accuracies: list[float]) -> dict[str, float]:
    """Best, median, fraction of configurations within 1 point of the best, and the area under the sorted curve.

    The area is the mean accuracy: the sorted curve drawn over ranks normalised to [0, 1] (each configuration a
    step of width 1/n), so it lies in [0, 1] and is comparable between studies of different sizes.
    """
    if not accuracies:
        raise ValueError("no accuracies: a sensitivity curve needs at least one configuration")
    best = max(accuracies)
    return {
        "n": len(accuracies),
        "best": best,
        "median": statistics.median(accuracies),
        "within_1pt": sum(a >= best - WITHIN - 1e-12 for a in accuracies) / len(accuracies),
        "auc": sum(accuracies) / len(accuracies),
    }


def sensitivity_stats(results: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, float]]:
    """(arch, rule) -> ``curve_stats`` of its sorted curve."""
    return {pair: curve_stats(curve) for pair, curve in sorted_curves(results).items()}


def sensitivity_table(results: list[dict[str, Any]]) -> str:
    """Markdown: one row per (arch, rule) with the curve's summary statistics (accuracies in %)."""
    rows = [
        [
            arch,
            rule,
            s["n"],
            f"{100 * s['best']:.2f}",
            f"{100 * s['median']:.2f}",
            f"{s['within_1pt']:.2f}",
            f"{s['auc']:.3f}",
        ]  # fmt: skip
        for (arch, rule), s in sensitivity_stats(results).items()
    ]
    headers = ["arch", "rule", "configs", "best acc %", "median acc %", "within 1 pt of best", "area under curve"]
    return markdown_table(headers, rows)


def plot_sensitivity(results: list[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """One line per (arch, rule): test accuracy (%) of every configuration against its rank, normalised to 0..1."""
    from ..report.plots import plt, save_figure

    fig, ax = plt.subplots(figsize=(8, 5))
    curves = sorted_curves(results)
    # Colour says the rule, line style and marker the architecture: a dozen lines stay tellable apart.
    rules = sorted({rule for _, rule in curves})
    archs = sorted({arch for arch, _ in curves})
    colours = {rule: f"C{i % 10}" for i, rule in enumerate(rules)}
    styles = {arch: (["-", "--", ":", "-."][i % 4], "osd^v<>"[i % 7]) for i, arch in enumerate(archs)}
    for (arch, rule), curve in curves.items():
        n = len(curve)
        ranks = [i / (n - 1) if n > 1 else 0.0 for i in range(n)]
        style, marker = styles[arch]
        ax.plot(
            ranks,
            [100 * a for a in curve],
            style,
            color=colours[rule],
            marker=marker if n <= 20 else None,
            ms=3,
            label=f"{arch} / {rule}",
        )
    ax.set(
        xlabel="configuration rank, best to worst (normalised 0..1)",
        ylabel="test accuracy (%)",
        title=title or "hyperparameter sensitivity",
    )
    ax.set_xlim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", ncol=2)
    return save_figure(fig, path)
