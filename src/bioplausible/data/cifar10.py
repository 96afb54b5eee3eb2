"""CIFAR-10 from the official python pickle batches (``cifar-10-batches-py/``).

Whatever ``data_batch_N`` files are present are used, so a subset (e.g. one batch) loads with a warning.
The pickles are read with an unpickler that allows only the few globals the format needs, so a tampered
file cannot run code.
"""

from __future__ import annotations

import codecs
import os
import pickle
import tarfile
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ..registry import DATASETS
from .augment import random_crop_flip
from .base import Dataset, download_file, fetch_or_explain

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@DATASETS.register("cifar10")
def cifar10(root: Path, download: bool = True) -> Dataset:
    """CIFAR-10 colour images, (3, 32, 32), 10 classes: 50,000 train / 10,000 test when complete.

    Looked for in ``root/cifar-10-batches-py/``, ``root/cifar10/cifar-10-batches-py/`` and
    ``root/cifar10-subset/cifar-10-batches-py/``; downloaded into the first when missing and allowed.
    Training batches are augmented with :func:`~bioplausible.data.augment.random_crop_flip` (padding 4) unless
    ``augment`` is set to None.
    """
    folder = _find_folder(root)
    if folder is None:
        expected = [*TRAIN_FILES, TEST_FILE, META_FILE]
        fetch_or_explain("cifar10", root / FOLDER, expected, download, lambda: _download(root), URL)
        folder = _find_folder(root)
        if folder is None:
            raise DataError(f"the CIFAR-10 archive from {URL} did not contain {FOLDER}/{TEST_FILE} and data batches")
    train_files = [folder / f for f in TRAIN_FILES if (folder / f).is_file()]
    if len(train_files) < len(TRAIN_FILES):
        warnings.warn(
            f"found {len(train_files)} of {len(TRAIN_FILES)} CIFAR-10 training batches in {folder}; "
            "results are on a subset of the training set",
            stacklevel=3,  # the caller of load_dataset
        )
    train_x, train_y = _merge([_read_batch(f) for f in train_files])
    test_x, test_y = _merge([_read_batch(folder / TEST_FILE)])  # normalised tensors, like the training set
    return Dataset(
        "cifar10",
        train_x,
        train_y,
        test_x,
        test_y,
        num_classes=10,
        classes=_class_names(folder),
        augment=random_crop_flip(4),  # the standard one; the engine drops it when augmentation is off
    )


def _find_folder(root: Path) -> Path | None:
    """The first candidate folder with the test batch and at least one training batch."""
    for folder in (root / FOLDER, root / "cifar10" / FOLDER, root / "cifar10-subset" / FOLDER):
        if (folder / TEST_FILE).is_file() and any((folder / f).is_file() for f in TRAIN_FILES):
            return folder
    return None


# Every global a CIFAR-10 batch pickle uses. The array rebuilder is taken from a live array rather than imported by
# its private path, which moved (numpy.core -> numpy._core) in numpy 2; files name either path.
_PICKLE_GLOBALS = {
    ("_codecs", "encode"): codecs.encode,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): np.empty(0).__reduce__()[0],
    ("numpy._core.multiarray", "_reconstruct"): np.empty(0).__reduce__()[0],
}


class _SafeUnpickler(pickle.Unpickler):
    """Allows only what CIFAR pickles use: byte-string decoding and plain numpy arrays."""

    def find_class(self, module: str, name: str) -> object:
        try:
            return _PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR-10 batch") from None


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _SafeUnpickler(f, encoding="bytes").load()
    # A damaged pickle can fail in many ways (UnpicklingError, EOFError, ValueError, ...); all mean "corrupt".
    except Exception as exc:
        raise _corrupt(path, f"cannot unpickle it ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict):
        raise _corrupt(path, f"it holds a {type(obj).__name__}, not a dict")
    return obj


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch as uint8 images (N, 3, 32, 32) and int64 labels (N,)."""
    batch = _unpickle(path)
    data, labels = batch.get(b"data"), batch.get(b"labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise _corrupt(path, "its b'data' entry is not a uint8 array of shape (N, 3072)")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise _corrupt(path, "its b'labels' entry is not a list of integers") from exc
    if labels.shape != (len(data),) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise _corrupt(path, f"it has {labels.size} labels in 0-9 expected for {len(data)} images")
    return data.reshape(-1, 3, 32, 32), labels


def _merge(batches: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    return _normalise(images), torch.from_numpy(labels)


def _normalise(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(images.astype(np.float32) / 255.0)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


def _class_names(folder: Path) -> list[str]:
    """Names from ``batches.meta`` when present and sane, else the standard ones."""
    if not (folder / META_FILE).is_file():
        return list(CLASSES)
    names = _unpickle(folder / META_FILE).get(b"label_names")
    if not isinstance(names, list) or len(names) != 10:
        raise _corrupt(folder / META_FILE, "its b'label_names' entry is not a list of 10 names")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _corrupt(path: Path, why: str) -> DataError:
    return DataError(f"{path} is corrupt or incomplete: {why}. Delete it and download or copy it again")


def _download(root: Path) -> None:
    """Download the official archive and unpack ``cifar-10-batches-py/`` into ``root`` atomically."""
    fd, archive = tempfile.mkstemp(prefix=".cifar-10-python.", suffix=".tar.gz", dir=root)
    os.close(fd)
    try:
        download_file(URL, Path(archive))
        with tempfile.TemporaryDirectory(prefix=".cifar10-extract.", dir=root) as tmp:
            _safe_extract(Path(archive), Path(tmp))
            if not (Path(tmp) / FOLDER).is_dir():
                raise DataError(f"the archive from {URL} has no {FOLDER}/ folder")
            os.replace(Path(tmp) / FOLDER, root / FOLDER)  # same file system, so the folder appears whole
    finally:
        Path(archive).unlink(missing_ok=True)


def _safe_extract(archive: Path, dest: Path) -> None:
    """Extract only regular files and folders that stay inside ``dest`` (no links, devices or ``..``)."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for m in members:
                target = (dest / m.name).resolve()
                if not (m.isfile() or m.isdir()) or not target.is_relative_to(dest.resolve()):
                    raise DataError(f"refusing to extract unsafe archive member {m.name!r} from {archive}")
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 checks again itself
                tar.extractall(dest, members=members, filter="data")
            else:
                tar.extractall(dest, members=members)  # members checked above
    except (tarfile.TarError, EOFError) as exc:
        raise DataError(f"the downloaded CIFAR-10 archive is corrupt ({exc})") from exc
