"""The optimizers the engine and the rules build, in one place.

Adam is torch's, fused where every parameter allows it (floating point, on the CPU or a CUDA device): one kernel per
step instead of about ten passes over the parameters. On one CPU thread an Adam step on the parameters of
Bartunov's 3072-1024×3-10 net takes 4.99 ms fused against 18.41 ms with ``foreach`` (``benchmarks/adam_step.py``,
``results/bench/adam_step_cpu.txt``). The update is the same Adam (Kingma & Ba 2015, Algorithm 1); only the float
rounding of the fused kernel differs. SGD stays ``foreach``: fused SGD is no faster there.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

FUSED_DEVICES = ("cpu", "cuda")


def can_fuse(params: list[torch.Tensor]) -> bool:
    """True when torch's fused Adam takes every tensor of ``params``: floating point, on one of ``FUSED_DEVICES``."""
    return bool(params) and all(p.is_floating_point() and p.device.type in FUSED_DEVICES for p in params)


def adam(params: Iterable[torch.Tensor | dict[str, Any]], **settings: Any) -> torch.optim.Adam:
    """``torch.optim.Adam(params, **settings)`` (tensors or parameter groups), fused when :func:`can_fuse` allows
    and the caller chose no implementation itself (``fused``, ``foreach`` or ``differentiable``)."""
    params = list(params)
    tensors = [t for p in params for t in (p["params"] if isinstance(p, dict) else [p])]
    if not {"fused", "foreach", "differentiable"} & set(settings):
        settings["fused"] = can_fuse(tensors) or None
    return torch.optim.Adam(params, **settings)
