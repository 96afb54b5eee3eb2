"""What a probe is, for the report: its metric key, label, unit and scale (declared by rules and the engine)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ProbeSpec:
    """A probe logged as ``probe/<kind>/<layer>`` (``per_layer``) or ``probe/<kind>`` in metrics.jsonl.

    The report draws every declared probe the same way: one panel per run, one line per layer, over epochs.
    """

    kind: str
    label: str  # axis label, e.g. "angle between B and Wᵀ"
    unit: str = ""  # e.g. "°"
    scale: str = "linear"  # or "log"
    per_layer: bool = True
    title: str = ""  # the figure's title
    # "model": the run logged its layers in the model's module order (input to output); "name": it did not say
    # (runs before 0.2.1 wrote metrics.jsonl with sorted keys), so a figure can only order them by name
    layer_order: str = "name"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProbeSpec:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


GRAD_ANGLE = ProbeSpec(
    "grad_angle", "angle to the backprop gradient", "°", title="Angle between the rule's update and backprop's"
)
GRAD_NORM = ProbeSpec(
    "grad_norm", "‖update‖ per layer", scale="log", title="Learning-signal magnitude per layer (vanishing with depth?)"
)
ALIGNMENT_PROBES = (GRAD_ANGLE, GRAD_NORM)  # logged for every rule whose model has weight layers
