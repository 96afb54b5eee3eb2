"""scikit-learn's bundled 8x8 handwritten digits (1,797 images): needs no files and no network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..registry import DATASETS
from .base import Dataset

TEST_FRACTION = 0.2
SPLIT_SEED = 0


@DATASETS.register("digits")
def digits(root: Path, download: bool = True) -> Dataset:
    """The 8x8 digits as (N, 1, 8, 8) images, split 80/20 stratified with a fixed seed.

    Pixels (0-16) are scaled to [0, 1], then standardised with the training set's scalar mean and std.
    ``root`` and ``download`` are ignored: the data ships with scikit-learn.
    """
    # Imported here so that importing bioplausible does not pay for scikit-learn.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None]
    labels = bunch.target.astype(np.int64)
    train_x, test_x, train_y, test_y = train_test_split(
        images, labels, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=labels
    )
    mean, std = float(train_x.mean()), float(train_x.std())
    return Dataset(
        "digits",
        torch.from_numpy((train_x - mean) / std),
        torch.from_numpy(train_y),
        torch.from_numpy((test_x - mean) / std),
        torch.from_numpy(test_y),
        num_classes=10,
        classes=[str(i) for i in range(10)],
        source={
            "layout": "sklearn",
            "path": None,
            "description": "scikit-learn digits (8x8)",
            "num_train": len(train_y),
            "num_test": len(test_y),
            "cache": None,
            "split": f"stratified {1 - TEST_FRACTION:.0%}/{TEST_FRACTION:.0%}, seed {SPLIT_SEED}",
        },
    )
