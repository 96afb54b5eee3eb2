"""Datasets: normalised tensors, loaded by name; in memory (image folders decoded once and cached), except
``imagenet``, which is streamed from disk.

    >>> from bioplausible.data import load_dataset
    >>> data = load_dataset("digits")
    >>> data.input_shape
    (1, 8, 8)

Importing this package imports every dataset module, which registers its names in ``DATASETS``.
"""

from . import cifar10, digits, idx, imagefolder, imagenet, synthetic  # noqa: F401  (imported to register the datasets)
from .base import Dataset, load_dataset, resolve_data_dir

__all__ = ["Dataset", "load_dataset", "resolve_data_dir"]
