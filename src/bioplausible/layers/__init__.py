"""Layers whose backward can use a separate matrix, and the swap that puts them into any model."""

from .convert import swap_layers
from .feedback import FEEDBACK_LAYERS, DirectError, FeedbackLayer, FeedbackLinear, exact_gradients, feedback_layers

__all__ = [
    "FEEDBACK_LAYERS",
    "DirectError",
    "FeedbackLayer",
    "FeedbackLinear",
    "exact_gradients",
    "feedback_layers",
    "swap_layers",
]
