"""Pure probe functions; the engine logs them to metrics.jsonl and the report plots them."""

from .alignment import (
    alignment_probes,
    angle_deg,
    backprop_grads,
    feedback_angles,
    gradient_angles,
    gradient_norms,
    weight_grads,
    weight_layers,
)

__all__ = [
    "alignment_probes",
    "angle_deg",
    "backprop_grads",
    "feedback_angles",
    "gradient_angles",
    "gradient_norms",
    "weight_grads",
    "weight_layers",
]
