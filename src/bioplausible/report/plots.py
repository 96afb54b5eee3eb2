"""Figures from run folders (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .summary import describe_arch, describe_rule, run_label, topology  # noqa: E402


def save_figure(fig, path: str | Path, title: str = "", dpi: int = 110) -> Path:
    """Title, lay out, write the PNG and free the figure (figures are many in a study: they must not pile up)."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def mean_probe(record: dict[str, Any], kind: str) -> float:
    """Mean over layers of the ``probe/<kind>/<layer>`` values in one metrics record (NaN if none)."""
    values = [v for k, v in record.items() if k.startswith(f"probe/{kind}/") and v is not None]
    return sum(values) / len(values) if values else math.nan


def plot_learning_curves(runs: list[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Test accuracy (top) and the angle to the backprop gradient (bottom) per epoch, one column per architecture,
    one line per rule. ``runs`` are ``bioplausible.runs.load_run`` dicts."""
    archs = sorted({r["config"]["arch"] for r in runs})
    fig, axes = plt.subplots(2, len(archs), figsize=(5 * len(archs), 7), squeeze=False, sharex="col")
    for col, arch in enumerate(archs):
        top, bottom = axes[0][col], axes[1][col]
        for run in (r for r in runs if r["config"]["arch"] == arch):
            epochs = [m["epoch"] for m in run["metrics"]]
            label = run_label(run["config"])
            top.plot(epochs, [100 * m["test/accuracy"] for m in run["metrics"]], label=label)
            bottom.plot(epochs, [mean_probe(m, "grad_angle") for m in run["metrics"]], label=label)
        top.set(title=arch, ylabel="test accuracy (%)")
        bottom.set(xlabel="epoch", ylabel="angle to backprop gradient (°, mean over layers)")
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
            ax.legend()
    return save_figure(fig, path, title)


def is_adjacent_pair(name: str) -> bool:
    """True for an energy network's connection "i-j" between adjacent layers (j = i + 1)."""
    lower, _, upper = name.partition("-")
    return lower.isdigit() and upper.isdigit() and int(upper) == int(lower) + 1


def layer_probe_names(runs: list[dict[str, Any]], kind: str) -> list[str]:
    """The layers that have a ``probe/<kind>/<layer>`` value in any record of ``runs``, in first-seen order."""
    prefix = f"probe/{kind}/"
    names: dict[str, None] = {}
    for run in runs:
        for record in run["metrics"]:
            for key, value in record.items():
                if key.startswith(prefix) and value is not None:
                    names.setdefault(key[len(prefix) :], None)
    return list(names)


def plot_layer_probes(
    runs: list[dict[str, Any]], kind: str, path: str | Path, ylabel: str, log: bool = False, title: str = ""
) -> Path | None:
    """``probe/<kind>/<layer>`` over epochs: one panel per run, one line per layer; None when no run has the probe.

    ``kind`` is e.g. ``feedback_angle`` (angle between B and Wᵀ), ``grad_angle`` (to the backprop gradient) or
    ``grad_norm`` (the learning signal's size per layer, which shows it vanishing with depth).
    """
    runs = [r for r in runs if layer_probe_names([r], kind)]
    if not runs:
        return None
    cols = min(3, len(runs))
    rows = math.ceil(len(runs) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, run in zip(axes.flat, runs):
        epochs = [m["epoch"] for m in run["metrics"]]
        for layer in layer_probe_names([run], kind):
            if kind == "ep_update_norm" and not is_adjacent_pair(layer):
                continue  # layer-skipping connections: the vanishing signal is read on the layered chain
            values = [m.get(f"probe/{kind}/{layer}") for m in run["metrics"]]
            ax.plot(epochs, [math.nan if v is None else v for v in values], marker=".", label=layer)
        config = run["config"]
        ax.set(title=f"{describe_arch(config)} / {describe_rule(config)}", xlabel="epoch", ylabel=ylabel)
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small", title="layer", title_fontsize="x-small")
    for ax in list(axes.flat)[len(runs) :]:
        ax.axis("off")
    return save_figure(fig, path, title, dpi=100)


def plot_settling_steps(runs: list[dict[str, Any]], path: str | Path, title: str = "") -> Path | None:
    """Mean settling steps per batch over epochs (free phase solid, nudged phase dashed), one colour per run;
    None when no run settles (only energy networks log ``train/free_steps``)."""
    runs = [r for r in runs if any("train/free_steps" in m for m in r["metrics"])]
    if not runs:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, run in enumerate(runs):
        epochs = [m["epoch"] for m in run["metrics"]]
        colour = f"C{i % 10}"
        label = f"{describe_arch(run['config'])} / {describe_rule(run['config'])}"
        ax.plot(epochs, [m.get("train/free_steps", math.nan) for m in run["metrics"]], colour, marker=".", label=label)
        nudged = [m.get("train/nudged_steps", math.nan) for m in run["metrics"]]
        ax.plot(epochs, nudged, colour, linestyle="--", marker=".")
    ax.set(xlabel="epoch", ylabel="settling steps per batch (free solid, nudged dashed)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small")
    return save_figure(fig, path, title, dpi=100)


def plot_p_sweep(runs: list[dict[str, Any]], path: str | Path, title: str = "") -> Path | None:
    """Gammell et al.'s view of layer skipping: final test error against the rewiring probability p (skip energy
    nets, one marker per run), the layered nets as horizontal lines, and the published numbers where they exist.
    None unless the runs hold skip energy networks at two or more p."""
    from .papers import published_for

    energy = [r for r in runs if r["config"].get("arch") == "energy-net" and r["summary"].get("test_accuracy")]
    skip = [r for r in energy if topology(r["config"]).startswith("skip")]
    if len({r["config"]["arch_options"]["p"] for r in skip}) < 2:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    points = sorted((r["config"]["arch_options"]["p"], 100 * (1 - r["summary"]["test_accuracy"])) for r in skip)
    ax.plot(*zip(*points), "o-", color="C0", label="skip (global lr), ours")
    papers = [(r["config"]["arch_options"]["p"], published_for(r["config"])) for r in skip]
    papers = sorted((p, entry.test_error) for p, entry in papers if entry)
    if papers:
        ax.plot(*zip(*papers), "s", color="C0", fillstyle="none", markersize=9, label="skip, published")
    for i, run in enumerate(r for r in energy if topology(r["config"]) == "layered"):
        error = 100 * (1 - run["summary"]["test_accuracy"])
        ax.axhline(error, color=f"C{i + 1}", linestyle="--", label=f"layered, {describe_rule(run['config'])}, ours")
        paper = published_for(run["config"])
        if paper:
            ax.axhline(paper.test_error, color=f"C{i + 1}", linestyle=":", label="layered, published")
    ax.set_xscale("log")
    ax.set(xlabel="rewiring probability p", ylabel="final test error (%)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    return save_figure(fig, path, title, dpi=100)


def plot_update_profile(runs: list[dict[str, Any]], path: str | Path, title: str = "") -> Path | None:
    """The vanishing learning signal in one picture: the size of one SGD step's weight change, lr × ‖EP update‖
    (per-layer scales included), for each adjacent layer pair from the input up, averaged over the epochs; one line
    per run. None unless some run logged ``probe/ep_update_norm``."""
    runs = [r for r in runs if layer_probe_names([r], "ep_update_norm")]
    if not runs:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for run in runs:
        pairs = sorted((n for n in layer_probe_names([run], "ep_update_norm") if is_adjacent_pair(n)),
                       key=lambda n: int(n.partition("-")[0]))  # fmt: skip
        lr = run["config"].get("lr", 1.0)
        sizes = []
        for pair in pairs:
            values = [m[f"probe/ep_update_norm/{pair}"] for m in run["metrics"] if f"probe/ep_update_norm/{pair}" in m]
            sizes.append(lr * sum(values) / len(values))
        ax.plot(range(1, len(pairs) + 1), sizes, marker="o", label=run_label(run["config"]))
        ax.set_xticks(range(1, len(pairs) + 1), pairs)
    ax.set_yscale("log")
    ax.set(xlabel="layer pair (input at the left)", ylabel="lr × ‖EP update‖, mean over epochs")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    return save_figure(fig, path, title, dpi=100)
