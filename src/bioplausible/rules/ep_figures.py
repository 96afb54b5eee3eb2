"""Equilibrium propagation's own report figures, declared by the rule (``EquilibriumPropagation.figures``).

Each is ``figure(runs, folder) -> [(title, png path)]``: it receives the report's runs of the rule (loaded
:class:`~bioplausible.analysis.runs.Run` objects), draws what they logged and returns nothing when they logged none
of it. Matplotlib loads on the first call, not with the rule.

* settling steps per batch over epochs (``train/free_steps``, ``train/nudged_steps``): does settling stop when
  converged, and how long does it take as training proceeds?
* the update profile: lr × ‖EP update‖ per adjacent layer pair, input to output (``probe/ep_update_norm``), the
  vanishing learning signal of deep EP nets in one picture (Gammell et al. 2020).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

FREE, NUDGED = "train/free_steps", "train/nudged_steps"
UPDATE_NORM = "ep_update_norm"


def settling_steps(runs: list[Any], folder: Path) -> list[tuple[str, Path]]:
    """Mean settling steps per batch over epochs: free phase solid, nudged phase dashed, one colour per run."""
    from ..analysis.figures import epochs, plt, run_title, save_figure, values

    runs = [r for r in runs if any(FREE in m for m in r.metrics)]
    if not runs:
        return []
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, run in enumerate(runs):
        colour = f"C{i % 10}"  # runs of one rule: a colour each
        ax.plot(epochs(run), values(run, FREE), color=colour, marker=".", label=run_title(run))
        ax.plot(epochs(run), values(run, NUDGED), color=colour, linestyle="--", marker=".")
    ax.set(xlabel="epoch", ylabel="settling steps per batch (free solid, nudged dashed)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="x-small")
    title = "Equilibrium propagation: settling steps per batch"
    return [(title, save_figure(fig, folder / "settling_steps.png"))]


def is_adjacent_pair(name: str) -> bool:
    """True for an energy network's connection "i-j" between adjacent layers (j = i + 1)."""
    lower, _, upper = name.partition("-")
    return lower.isdigit() and upper.isdigit() and int(upper) == int(lower) + 1


def update_profile(runs: list[Any], folder: Path) -> list[tuple[str, Path]]:
    """The size of one SGD step's weight change, lr × ‖EP update‖ (per-layer scales included), for each adjacent
    layer pair from the input up, averaged over the epochs; one line per run."""
    from ..analysis.figures import plt, run_title, save_figure

    profiles = [(run, _profile(run)) for run in runs]
    profiles = [(run, sizes) for run, sizes in profiles if sizes]
    if not profiles:
        return []
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for i, (run, sizes) in enumerate(profiles):
        pairs = list(sizes)
        ax.plot(range(1, len(pairs) + 1), list(sizes.values()), marker="o", color=f"C{i % 10}", label=run_title(run))
        ax.set_xticks(range(1, len(pairs) + 1), pairs)
    ax.set_yscale("log")
    ax.set(xlabel="layer pair (input at the left)", ylabel="lr × ‖EP update‖, mean over epochs")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    title = "Equilibrium propagation: weight change per layer pair (vanishing signal?)"
    return [(title, save_figure(fig, folder / "ep_update_profile.png"))]


def _profile(run: Any) -> dict[str, float]:
    """Adjacent pair -> lr × its mean ``probe/ep_update_norm`` over the epochs that logged it."""
    from ..analysis.figures import layer_names

    pairs = sorted((n for n in layer_names(run, UPDATE_NORM) if is_adjacent_pair(n)),
                   key=lambda n: int(n.partition("-")[0]))  # fmt: skip
    lr = run.config.get("lr", 1.0)
    sizes = {}
    for pair in pairs:
        logged = [m[f"probe/{UPDATE_NORM}/{pair}"] for m in run.metrics if m.get(f"probe/{UPDATE_NORM}/{pair}")]
        if logged:
            sizes[pair] = lr * sum(logged) / len(logged)
    return {k: v for k, v in sizes.items() if math.isfinite(v)}


FIGURES = (settling_steps, update_profile)
