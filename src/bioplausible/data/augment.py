"""On-device batch augmentations for in-memory image datasets (``Dataset.augment``).

They take and return a whole (N, C, H, W) batch on whatever device it lives on, draw their randomness from the
global torch generator of that device (so ``torch.manual_seed`` fixes them on the CPU), and loop over no samples
in Python.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class RandomCropFlip:
    """Zero-pad by ``padding``, crop back to H x W at a random offset per sample, mirror half the samples.

    The standard CIFAR augmentation. It works on normalised batches, so the zero padding is the dataset's mean
    colour rather than black. A plain class rather than a closure, so a dataset holding it can be pickled.
    """

    padding: int = 4

    def __post_init__(self) -> None:
        if self.padding < 0:
            raise ValueError(f"padding must be >= 0, got {self.padding}")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"expected a batch of images (N, C, H, W), got shape {tuple(x.shape)}")
        n, c, h, w = x.shape
        p = self.padding
        padded = F.pad(x, (p, p, p, p)) if p else x
        # Per-sample offsets in [0, 2p] and flips; the row and column index grids pick each sample's window.
        top = torch.randint(0, 2 * p + 1, (n, 1), device=x.device)
        left = torch.randint(0, 2 * p + 1, (n, 1), device=x.device)
        flip = torch.rand(n, 1, device=x.device) < 0.5
        rows = top + torch.arange(h, device=x.device)  # (n, h)
        cols = left + torch.arange(w, device=x.device)  # (n, w)
        cols = torch.where(flip, cols.flip(1), cols)  # a mirrored crop reads its columns right to left
        out = padded.gather(2, rows.view(n, 1, h, 1).expand(n, c, h, w + 2 * p))
        return out.gather(3, cols.view(n, 1, 1, w).expand(n, c, h, w))


def random_crop_flip(padding: int = 4) -> Callable[[torch.Tensor], torch.Tensor]:
    """The standard CIFAR augmentation as a batch transform: see :class:`RandomCropFlip`."""
    return RandomCropFlip(padding)
