"""Figures of runs (matplotlib, Agg backend: no display needed), drawn the same way for every rule.

* One colour per rule, the same in every figure and every report of an installation: the rule's place among the
  registered names, on a fixed palette (:func:`rule_colour`). Variants of one rule share its colour and differ by
  line style.
* PNGs are written deterministically: no timestamp, no software version in the file, fixed DPI and size, so a
  report regenerated from the same runs is byte-identical. Each file is written to a temporary name and renamed.
* A declared probe (:class:`~bioplausible.probes.spec.ProbeSpec`) is drawn generically: one panel per run, one line
  per layer over epochs (a probe without layers: one line per run), with its title, label, unit and scale.
"""

from __future__ import annotations

import io
import math
import re
import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from ..probes.spec import ALIGNMENT_PROBES, GRAD_ANGLE, ProbeSpec  # noqa: E402
from ..registry import RULES  # noqa: E402
from ..runs import atomic_write  # noqa: E402
from .runs import Run  # noqa: E402

# tab10, then its light companions: 20 distinguishable colours, the strong ones first
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
)  # fmt: skip
STYLES = ("-", "--", ":", "-.")
TITLE_CHARS_PER_INCH = 9  # the suptitle's default 12-point font: about 9 characters an inch
MAX_PNG_BYTES = 900_000  # above this a figure is saved with a palette (see palette_png)
EXACT = 1e-3  # degrees: an angle below this in every epoch is the gradient itself (float32 rounding)
MAX_LEGEND = 10  # a per-layer panel with more layers names only the first and the last in its legend
GENERIC = [spec.kind for spec in ALIGNMENT_PROBES]
PNG_METADATA = {"Software": None}  # matplotlib otherwise stamps its version into every PNG


def rule_colour(rule: str) -> str:
    """The rule's colour: its index among the registered rules (sorted names) on ``PALETTE``; a name this
    installation does not know takes the colour after them."""
    names = RULES.list()
    index = names.index(rule) if rule in names else len(names) + sum(map(ord, rule))
    return PALETTE[index % len(PALETTE)]


def save_figure(fig, path: str | Path, title: str = "", dpi: int = 100) -> Path:
    """Title, lay out, write the PNG deterministically and atomically, and free the figure. An x axis labelled
    "epoch" gets whole-number ticks (a run of one or two epochs otherwise reads 0.96, 0.98, … 1.04)."""
    for ax in fig.get_axes():
        if ax.get_xlabel() == "epoch":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    lines = textwrap.wrap(title, width=int(TITLE_CHARS_PER_INCH * fig.get_figwidth())) if title else []
    if lines:  # wrapped: a one-panel figure is narrower than a long title
        fig.suptitle("\n".join(lines))
    fig.set_layout_engine("constrained")  # unlike tight_layout, it makes room for the suptitle at any height
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata=PNG_METADATA)
    plt.close(fig)
    data = buffer.getvalue()
    if len(data) > MAX_PNG_BYTES:
        data = palette_png(data)
    atomic_write(path, lambda f: f.write(data))
    return path


def palette_png(data: bytes) -> bytes:
    """The PNG re-encoded with a 256-colour palette (deterministic, no metadata): a figure of many runs and layers
    drawn in full colour passes 1 MB, too big to commit beside its runs; lines and text survive the palette."""
    from PIL import Image  # Pillow: already a dependency (image folders); only big figures need it

    image = Image.open(io.BytesIO(data)).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def values(run: Run, key: str) -> list[float]:
    """``key`` in each epoch record of ``run`` (NaN where absent or null)."""
    out = []
    for record in run.metrics:
        value = record.get(key)
        out.append(math.nan if value is None else float(value))
    return out


def epochs(run: Run) -> list[int]:
    return [int(r["epoch"]) for r in run.metrics]


def layer_names(run: Run, kind: str) -> list[str]:
    """The layers with a ``probe/<kind>/<layer>`` value in ``run``, in the order the records list them (a layer
    whose first values are null, as EP's are before its first nudged phase, keeps its place)."""
    prefix = f"probe/{kind}/"
    names: dict[str, bool] = {}  # name -> has a value
    for record in run.metrics:
        for key, value in record.items():
            if key.startswith(prefix):
                name = key[len(prefix) :]
                names[name] = names.get(name, False) or value is not None
    return [name for name, valued in names.items() if valued]


def ordered_layers(run: Run, kind: str) -> tuple[list[str], bool]:
    """The layers of a per-layer probe from input to output, and True, where the run logged them in the model's
    order; else sorted by name (digits as numbers, so layers.10 follows layers.9), and False: the figure says so
    rather than shading a name order as if it were depth (a ResNet's "fc" sorts before its "stem")."""
    names = layer_names(run, kind)
    if any(p.kind == kind and p.layer_order == "model" for p in run.probes):
        return names, True
    return sorted(names, key=lambda n: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", n)]), False


def has_probe(run: Run, spec: ProbeSpec) -> bool:
    if spec.per_layer:
        return bool(layer_names(run, spec.kind))
    return any(record.get(f"probe/{spec.kind}") is not None for record in run.metrics)


def axis_label(spec: ProbeSpec) -> str:
    return f"{spec.label} ({spec.unit})" if spec.unit else spec.label


def run_title(run: Run) -> str:
    return f"{run.arch_label} / {run.rule_label}"


def legend_labels(runs: Sequence[Run]) -> dict[int, str]:
    """The label of each run in a legend (by index): its rule's label, and its architecture's where the runs have
    several."""
    several = len({r.arch_label for r in runs}) > 1
    return {i: f"{r.rule_label}, {r.arch_label}" if several else r.rule_label for i, r in enumerate(runs)}


def first_seen_order(specs: Sequence[ProbeSpec]) -> list[ProbeSpec]:
    """The generic probes every rule logs first, then the others in the order given."""
    generic = [s for s in specs if s.kind in GENERIC]
    return generic + [s for s in specs if s.kind not in GENERIC]


def line_styles(runs: Sequence[Run]) -> dict[int, tuple[str, str]]:
    """(colour, line style) per run index: the rule's colour; runs of one rule with different labels take the
    next line style."""
    seen: dict[str, list[str]] = {}
    styles = {}
    for i, run in enumerate(runs):
        labels = seen.setdefault(run.rule, [])
        key = f"{run.rule_label}|{run.arch_label}"
        if key not in labels:
            labels.append(key)
        styles[i] = (rule_colour(run.rule), STYLES[labels.index(key) % len(STYLES)])
    return styles


def plot_learning_curves(runs: Sequence[Run], path: str | Path, title: str = "") -> Path:
    """Test accuracy (top) and the angle to the backprop gradient, mean over layers (bottom), per epoch: one column
    per architecture, one line per run in its rule's colour (labelled by the rule, and by the architecture's label
    where a column holds several)."""
    archs = sorted({r.arch for r in runs})
    fig, axes = plt.subplots(2, len(archs), figsize=(5 * len(archs), 7), squeeze=False, sharex="col")
    for col, arch in enumerate(archs):
        top, bottom = axes[0][col], axes[1][col]
        column = [r for r in runs if r.arch == arch]
        styles, labels = line_styles(column), legend_labels(column)
        for i, run in enumerate(column):
            colour, style = styles[i]
            x = epochs(run)
            # markers: a run of one epoch is a single point, which a line alone does not draw
            top.plot(x, [100 * v for v in values(run, "test/accuracy")], style, color=colour, marker=".",
                     label=labels[i])  # fmt: skip
            bottom.plot(x, mean_over_layers(run, GRAD_ANGLE.kind), style, color=colour, marker=".", label=labels[i])
        shared = {r.arch_label for r in column}
        top.set(title=shared.pop() if len(shared) == 1 else arch, ylabel="test accuracy (%)")
        bottom.set(xlabel="epoch", ylabel=f"{axis_label(GRAD_ANGLE)},\nmean over layers not on the gradient")
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
            ax.legend(fontsize="small")
    return save_figure(fig, path, title)


def mean_over_layers(run: Run, kind: str) -> list[float]:
    """The mean over layers of ``probe/<kind>/<layer>`` in each epoch record (NaN where none), leaving out the
    layers at 0 in every epoch (an angle: those trained by the gradient itself, such as FA's output layer, which
    would pull FA's hidden layers at 74° and 85° down to a mean of 53°), unless every layer is."""
    prefix = f"probe/{kind}/"
    layers = layer_names(run, kind)
    off = [n for n in layers if any(abs(v) > EXACT for v in values(run, prefix + n) if not math.isnan(v))]
    keys = {prefix + n for n in (off or layers)}
    out = []
    for record in run.metrics:
        layer_values = [v for k, v in record.items() if k in keys and v is not None]
        out.append(sum(layer_values) / len(layer_values) if layer_values else math.nan)
    return out


def plot_probe(runs: Sequence[Run], spec: ProbeSpec, path: str | Path) -> Path | None:
    """One declared probe over epochs; None when no run logged it. Per layer: one panel per run, one line per
    layer (input to output: light to dark, where the run logged the model's order; else by name, and the legend
    says which). Otherwise one panel, one line per run in its rule's colour."""
    runs = [r for r in runs if has_probe(r, spec)]
    if not runs:
        return None
    if not spec.per_layer:
        return _plot_scalar_probe(runs, spec, path)
    cols = min(3, len(runs))
    rows = math.ceil(len(runs) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, run in zip(axes.flat, runs):
        layers, by_depth = ordered_layers(run, spec.kind)
        order = "light to dark: input to output" if by_depth else "light to dark: by name"
        shades = plt.get_cmap("viridis")
        for j, layer in enumerate(layers):
            colour = shades(0.9 * (1 - j / max(1, len(layers) - 1)))
            ax.plot(epochs(run), values(run, f"probe/{spec.kind}/{layer}"), marker=".", color=colour, label=layer)
        ax.set(title=run_title(run), xlabel="epoch", ylabel=axis_label(spec))
        ax.title.set_color(rule_colour(run.rule))
        _finish(ax, spec, legend_title=f"layer ({order})")
        if len(layers) > MAX_LEGEND:  # many layers: name the first and the last, the shades order the rest
            lines = ax.get_lines()
            ax.legend([lines[0], lines[-1]], [layers[0], layers[-1]], fontsize="x-small", title_fontsize="x-small",
                      title=f"{len(layers)} layers, {order}")  # fmt: skip
    for ax in list(axes.flat)[len(runs) :]:
        ax.axis("off")
    return save_figure(fig, path, spec.title)


def _plot_scalar_probe(runs: Sequence[Run], spec: ProbeSpec, path: str | Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    styles, labels = line_styles(runs), legend_labels(runs)
    for i, run in enumerate(runs):
        colour, style = styles[i]
        ax.plot(epochs(run), values(run, f"probe/{spec.kind}"), style, marker=".", color=colour, label=labels[i])
    ax.set(xlabel="epoch", ylabel=axis_label(spec))
    _finish(ax, spec)
    return save_figure(fig, path, spec.title)


def _finish(ax, spec: ProbeSpec, legend_title: str | None = None) -> None:
    if spec.scale == "log":
        _log_scale(ax)
    ax.grid(alpha=0.3, which="both" if spec.scale == "log" else "major")
    ax.legend(fontsize="x-small", title=legend_title, title_fontsize="x-small")


def _log_scale(ax) -> None:
    """A log axis where the values allow: with zeros among them (a dead EP net's nudged shift, a settled residual)
    a symmetric-log axis, linear below the smallest positive value, so the zeros stay on the plot instead of
    vanishing; all zero (or none finite), linear."""
    data = [float(v) for line in ax.get_lines() for v in line.get_ydata()]
    finite = [v for v in data if math.isfinite(v)]
    positive = [v for v in finite if v > 0]
    if positive and len(positive) == len(finite):
        ax.set_yscale("log")
    elif positive:
        ax.set_yscale("symlog", linthresh=min(positive))


def probe_file(spec: ProbeSpec) -> str:
    """The PNG's file name for a probe kind (kinds are identifiers: safe as file names)."""
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in spec.kind) + ".png"


def first_seen(specs: Sequence[Sequence[ProbeSpec]]) -> list[ProbeSpec]:
    """The distinct probe kinds of several runs: the generic ones first, then in first-seen order (the first spec of
    a kind wins)."""
    found: dict[str, ProbeSpec] = {}
    for run_specs in specs:
        for spec in run_specs:
            found.setdefault(spec.kind, spec)
    return first_seen_order(list(found.values()))


__all__ = [
    "PALETTE",
    "axis_label",
    "epochs",
    "first_seen",
    "has_probe",
    "layer_names",
    "line_styles",
    "plot_learning_curves",
    "plot_probe",
    "plt",
    "probe_file",
    "rule_colour",
    "save_figure",
    "values",
]
