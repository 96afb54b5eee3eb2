"""MNIST and Fashion-MNIST from the four standard IDX files, parsed with numpy.

The files are looked for, in order, in ``root/<name>/``, torchvision's ``root/MNIST/raw/`` (or
``root/FashionMNIST/raw/``) and ``root/`` itself, gzipped (as published) or uncompressed.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ..registry import DATASETS
from .base import Dataset, download_file, fetch_or_explain

FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
IMAGE_MAGIC = 2051  # unsigned bytes, 3 dimensions
LABEL_MAGIC = 2049  # unsigned bytes, 1 dimension
IMAGE_SIZE = 28
COUNTS = (60000, 10000)  # train, test
DESCRIPTIONS = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}  # labels for tables (Dataset.source)

MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


@DATASETS.register("mnist")
def mnist(root: Path, download: bool = True, *, expected_counts: tuple[int, int] | None = COUNTS) -> Dataset:
    """MNIST handwritten digits: 60,000 train / 10,000 test images of shape (1, 28, 28).

    Args:
        root: The data folder.
        download: Download the files from the official mirror when missing.
        expected_counts: ``(train, test)`` image counts to verify; ``None`` skips the check (for test
            fixtures and custom IDX files).
    """
    return _load_idx("mnist", root, download, MNIST_URL, "MNIST", (0.1307, 0.3081), None, expected_counts)


@DATASETS.register("fashion-mnist")
def fashion_mnist(root: Path, download: bool = True, *, expected_counts: tuple[int, int] | None = COUNTS) -> Dataset:
    """Fashion-MNIST clothing images: 60,000 train / 10,000 test images of shape (1, 28, 28).

    Args:
        root: The data folder.
        download: Download the files from the official site when missing.
        expected_counts: ``(train, test)`` image counts to verify; ``None`` skips the check.
    """
    return _load_idx(
        "fashion-mnist", root, download, FASHION_URL, "FashionMNIST", (0.2860, 0.3530), FASHION_CLASSES, expected_counts
    )


def _load_idx(
    name: str,
    root: Path,
    download: bool,
    url: str,
    torchvision_name: str,
    mean_std: tuple[float, float],
    classes: list[str] | None,
    expected_counts: tuple[int, int] | None,
) -> Dataset:
    candidates = [root / name, root / torchvision_name / "raw", root]
    paths = _find_files(candidates)
    if paths is None:
        target = root / name

        def fetch() -> None:
            for file in FILES:
                if not (target / file).exists():  # keep files that a previous partial attempt completed
                    download_file(url + file, target / file)

        fetch_or_explain(name, target, FILES, download, fetch, url)
        paths = _find_files([target])
        assert paths is not None  # fetch() either created all four files or raised
    train_n, test_n = expected_counts or (None, None)
    train_x = _normalise(read_idx(paths[0], IMAGE_MAGIC, train_n), *mean_std)
    train_y = _labels(read_idx(paths[1], LABEL_MAGIC, len(train_x)), paths[1])
    test_x = _normalise(read_idx(paths[2], IMAGE_MAGIC, test_n), *mean_std)
    test_y = _labels(read_idx(paths[3], LABEL_MAGIC, len(test_x)), paths[3])
    source = {
        "layout": "idx",
        "path": str(paths[0].parent),
        "description": DESCRIPTIONS[name],
        "num_train": len(train_y),
        "num_test": len(test_y),
        "cache": None,
        "files": [p.name for p in paths],
    }
    return Dataset(
        name,
        train_x,
        train_y,
        test_x,
        test_y,
        num_classes=10,
        classes=classes or [str(i) for i in range(10)],
        source=source,
    )


def _find_files(candidates: list[Path]) -> list[Path] | None:
    """The four files from the first folder that has all of them (each gzipped or not), or None."""
    for folder in candidates:
        found = []
        for file in FILES:
            plain = folder / file.removesuffix(".gz")
            gz = folder / file
            found.append(gz if gz.is_file() else plain if plain.is_file() else None)
        if all(found):
            return found
    return None


def read_idx(path: Path, magic: int, count: int | None = None) -> np.ndarray:
    """Read an IDX file of unsigned bytes (gzipped if its name ends in ``.gz``) into a uint8 array.

    Args:
        path: The file.
        magic: The expected magic number: 2051 for images (N, 28, 28), 2049 for labels (N,).
        count: The expected number of items N, or None to accept any.

    Raises:
        DataError: Naming the file, if it is unreadable, corrupt, truncated or of the wrong shape.
    """
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise _corrupt(path, f"cannot read or decompress it ({exc})") from exc
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise _corrupt(path, f"it has only {len(raw)} bytes, shorter than the IDX header")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise _corrupt(path, f"magic number {found}, expected {magic}")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    if len(raw) - header != int(np.prod(dims)):
        raise _corrupt(path, f"dimensions {dims} need {int(np.prod(dims))} data bytes but it has {len(raw) - header}")
    if ndim == 3 and dims[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise _corrupt(path, f"images are {dims[1]}x{dims[2]}, expected {IMAGE_SIZE}x{IMAGE_SIZE}")
    if count is not None and dims[0] != count:
        raise _corrupt(path, f"it holds {dims[0]} items, expected {count}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _corrupt(path: Path, why: str) -> DataError:
    return DataError(f"{path} is corrupt or incomplete: {why}. Delete it and download or copy it again")


def _normalise(images: np.ndarray, mean: float, std: float) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28), scaled to [0, 1] then standardised."""
    x = images.astype(np.float32)  # a writable copy, so the in-place ops below are safe
    x *= 1.0 / 255.0
    x -= mean
    x /= std
    return torch.from_numpy(x).unsqueeze(1)


def _labels(labels: np.ndarray, path: Path) -> torch.Tensor:
    if labels.size and labels.max() > 9:
        raise _corrupt(path, f"label {int(labels.max())} is out of range 0-9")
    return torch.from_numpy(labels.astype(np.int64))
