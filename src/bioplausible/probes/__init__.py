"""Pure probe functions; the engine logs them to metrics.jsonl and the report plots them."""

from .alignment import (
    alignment_probes,
    angle_deg,
    backprop_grads,
    feedback_angles,
    gradient_angles,
    gradient_norms,
    leaves_no_trace,
    same_random_streams,
    weight_grads,
    weight_layers,
)
from .spec import ALIGNMENT_PROBES, GRAD_ANGLE, GRAD_NORM, ProbeSpec

__all__ = [
    "ALIGNMENT_PROBES",
    "GRAD_ANGLE",
    "GRAD_NORM",
    "ProbeSpec",
    "alignment_probes",
    "angle_deg",
    "backprop_grads",
    "feedback_angles",
    "gradient_angles",
    "gradient_norms",
    "leaves_no_trace",
    "same_random_streams",
    "weight_grads",
    "weight_layers",
]
