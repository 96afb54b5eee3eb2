"""Layers whose backward can use a separate feedback path, the table of layer types, and the swap into any model."""

from . import conv, linear, local  # noqa: F401  (each registers its layer type)
from .conv import FeedbackConv2d
from .feedback import FeedbackFunction, FeedbackLayer, FeedbackMode, exact_gradients, feedback_layers
from .linear import FeedbackLinear
from .local import FeedbackLocallyConnected2d, LocallyConnected2d, LocalTranspose
from .modes import DirectError, DirectFeedback, FixedFeedback, LearnedFeedback, MirrorFeedback, SignFeedback
from .swap import KeptOnBackpropWarning, Swap, Trace, swap_layers, swappable_layers, trace
from .types import (
    FUNCTIONAL_USERS,
    INIT_SCHEMES,
    LAYER_TYPES,
    LayerType,
    fan_in,
    fan_out,
    init_bound,
    layer_type,
    register_layer_type,
)

__all__ = [
    "FUNCTIONAL_USERS",
    "LAYER_TYPES",
    "DirectError",
    "DirectFeedback",
    "FeedbackConv2d",
    "FeedbackFunction",
    "FeedbackLayer",
    "FeedbackLinear",
    "FeedbackLocallyConnected2d",
    "FeedbackMode",
    "FixedFeedback",
    "KeptOnBackpropWarning",
    "LayerType",
    "LearnedFeedback",
    "LocalTranspose",
    "LocallyConnected2d",
    "MirrorFeedback",
    "SignFeedback",
    "Swap",
    "Trace",
    "exact_gradients",
    "fan_in",
    "fan_out",
    "init_bound",
    "INIT_SCHEMES",
    "feedback_layers",
    "layer_type",
    "register_layer_type",
    "swap_layers",
    "swappable_layers",
    "trace",
]
