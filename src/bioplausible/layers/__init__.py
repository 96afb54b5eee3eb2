"""Layers whose backward can use a separate matrix, and the swap that puts them into any model."""

from .conv import FeedbackConv2d
from .convert import swap_layers, swappable_layers
from .feedback import (
    FEEDBACK_LAYERS,
    DirectError,
    FeedbackLayer,
    FeedbackLinear,
    exact_gradients,
    fan_in,
    feedback_layers,
)
from .local import FeedbackLocallyConnected2d, LocallyConnected2d

__all__ = [
    "FEEDBACK_LAYERS",
    "DirectError",
    "FeedbackConv2d",
    "FeedbackLayer",
    "FeedbackLinear",
    "FeedbackLocallyConnected2d",
    "LocallyConnected2d",
    "exact_gradients",
    "fan_in",
    "feedback_layers",
    "swap_layers",
    "swappable_layers",
]
