"""Weight initialisation schemes, applied to any model after it is built (``--init``).

PyTorch's default for Linear and Conv2d draws W ~ U(−1/√fan_in, 1/√fan_in): a standard deviation of
1/√(3·fan_in), so each tanh layer of an MLP shrinks its input's spread by about √3. On Bartunov et al.'s
784-256×5-10 tanh net the fifth hidden layer's units then have a standard deviation of 0.06 on MNIST, below the
σ = 0.1–0.2 noise that target propagation's inverses are trained with. The TensorFlow-era codebases the papers
come from used variance-preserving schemes, which keep it near 0.2–0.6:

    lecun:       W ~ N(0, 1/fan_in), truncated at two standard deviations; biases zero
    xavier:      W ~ U(−a, a), a = √(6 / (fan_in + fan_out)) (Glorot & Bengio 2010); biases zero
    orthogonal:  W (fan_out × fan_in) with orthonormal rows or columns (Saxe et al. 2014); biases zero

fan_in counts every input a unit reads (in_channels·k·k for a convolution or a locally connected layer); fan_out
counts the outputs an input feeds, as PyTorch's ``xavier_uniform_`` and Keras's ``glorot_uniform`` count it
(out_channels·k·k for those layers, out_features for a linear one). Before version 0.2.1 xavier took the
fan_out of a convolution or a locally connected layer as out_channels alone, so it drew W larger than the published
recipes that name Xavier (BioTorch, Bartunov et al.): 1.34× on a 3×3 16→16 convolution. Runs recorded with version
0.2.0 (config.json's ``version``) drew that; Linear layers are unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError
from ..layers.types import INIT_SCHEMES, fan_in, init_bound, layer_type

INITS = INIT_SCHEMES
TRUNCATED_STD = 0.87962566103423978  # std of a standard normal truncated to [−2, 2]


@torch.no_grad()
def initialize(model: nn.Module, scheme: str) -> nn.Module:
    """Re-draw the weights of every Linear, Conv2d and LocallyConnected2d of ``model`` with ``scheme``, in place,
    from torch's global generator (seeded by the engine); biases become zero. ``default`` leaves the model as built.
    """
    if scheme not in INITS:
        raise ConfigError(f"unknown init {scheme!r}; choose from: {', '.join(INITS)}")
    if scheme == "default":
        return model
    layers = [m for m in model.modules() if layer_type(m) is not None]
    if not layers:
        raise ConfigError(
            f"--init {scheme} re-draws Linear, Conv2d and LocallyConnected2d weights, and "
            f"{type(model).__name__} has none (energy networks set their own initialisation: see their options)"
        )
    for module in layers:
        for w2 in layer_type(module).matrices(module):  # (out_channels, fan_in): one per position if unshared
            if scheme == "lecun":
                # truncation at ±2σ leaves 0.8796σ: widen σ first so the drawn weights have std 1/√fan_in
                std = 1.0 / math.sqrt(fan_in(module)) / TRUNCATED_STD
                nn.init.trunc_normal_(w2, std=std, a=-2 * std, b=2 * std)
            elif scheme == "xavier":
                bound = init_bound(module, "xavier")  # the one definition of the scheme's scale (fans counted there)
                w2.uniform_(-bound, bound)
            else:
                nn.init.orthogonal_(w2)
        if module.bias is not None:
            module.bias.zero_()
    return model
