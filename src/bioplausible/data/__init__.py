"""Datasets: normalised tensors, loaded by name; in memory (image folders decoded once and cached), except
``imagenet``, which is streamed from disk.

    >>> from bioplausible.data import load_dataset
    >>> data = load_dataset("digits")
    >>> data.input_shape
    (1, 8, 8)

Each dataset module registers its names in ``DATASETS``; a module is imported when its dataset is first used.
"""

from .base import Dataset, dataset_identity, load_dataset, loaded_as, resolve_data_dir

__all__ = ["Dataset", "dataset_identity", "load_dataset", "loaded_as", "resolve_data_dir"]
