"""CIFAR-10 from the official python pickle batches (``cifar-10-batches-py/``) or from an image folder.

Where it looks, in ``root`` (the data folder), and what wins:

1. the pickle layout with all 5 training batches, in ``root/cifar-10-batches-py/``,
   ``root/cifar10/cifar-10-batches-py/`` or ``root/cifar10-subset/cifar-10-batches-py/``;
2. else an image folder ``{train,test}/<class>/<image>`` in ``root/cifar10-jpeg/``, ``root/cifar10/`` or ``root``
   itself (``--data-dir`` pointing at the folder), decoded once and cached (see :mod:`.imagefolder`): a folder,
   normally the full set, is preferred to a pickle subset;
3. else an incomplete pickle layout (a subset, e.g. one batch), with a warning;
4. else the official pickle archive is downloaded into ``root/cifar-10-batches-py/`` when allowed.

Both layouts are normalised with the same fixed channel statistics (``MEAN``, ``STD``, those of the official
training set), so a model sees the same scale whichever it was trained on. Labels follow the official class order
``CLASSES`` (airplane ... truck, that of ``batches.meta``), not the order of the folder names (the two coincide, but
the folder loader is told the order rather than relying on it). The pickles are read with an unpickler that allows
only the few globals the format needs, so a tampered file cannot run code.
"""

from __future__ import annotations

import codecs
import logging
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
from .imagefolder import TEST_SPLITS, normalise_images, read_image_folder

logger = logging.getLogger(__name__)

FOLDER = "cifar-10-batches-py"
PICKLE_PARENTS = (".", "cifar10", "cifar10-subset")  # where FOLDER is looked for, relative to root
IMAGE_FOLDERS = ("cifar10-jpeg", "cifar10", ".")  # where train/ and test/ are looked for, relative to root
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
COUNTS = (50000, 10000)  # train, test


@DATASETS.register("cifar10")
def cifar10(root: Path, download: bool = True) -> Dataset:
    """CIFAR-10 colour images, (3, 32, 32), 10 classes: 50,000 train / 10,000 test when complete.

    Read from the official pickle batches or from an image folder (e.g. the JPEG release), in the order of
    preference of the module docstring; downloaded (pickle) when neither is found and ``download`` allows.
    ``Dataset.source`` records the layout, folder and description read (``"CIFAR-10"`` for the pickles,
    ``"CIFAR-10 (JPEG q75)"`` for a folder of quality-75 JPEGs). Training batches are augmented with
    :func:`~bioplausible.data.augment.random_crop_flip` (padding 4) unless ``augment`` is set to None.

    Raises:
        DataError: If nothing is found and it cannot be downloaded, or the files are corrupt (naming the file).
    """
    complete = _find_folder(root, complete=True)
    if complete is not None:
        return _from_pickles(complete)
    image_folder = _find_image_folder(root)
    partial = _find_folder(root)
    if image_folder is not None:
        if partial is not None:
            logger.info("CIFAR-10: reading the image folder %s, not the pickle subset in %s", image_folder, partial)
        return _from_image_folder(image_folder)
    if partial is None:
        expected = [*TRAIN_FILES, TEST_FILE, META_FILE]
        try:
            fetch_or_explain("cifar10", root / FOLDER, expected, download, lambda: _download(root), URL)
        except DataError as err:
            raise DataError(
                f"{err}; or put an image folder train/<class>/<image> and test/<class>/<image> (classes "
                f"{CLASSES[0]} ... {CLASSES[-1]}) in {root / IMAGE_FOLDERS[0]} or {root / IMAGE_FOLDERS[1]}"
            ) from err
        partial = _find_folder(root)
        if partial is None:
            raise DataError(f"the CIFAR-10 archive from {URL} did not contain {FOLDER}/{TEST_FILE} and data batches")
    return _from_pickles(partial)


def _from_pickles(folder: Path) -> Dataset:
    train_files = [folder / f for f in TRAIN_FILES if (folder / f).is_file()]
    if len(train_files) < len(TRAIN_FILES):
        warnings.warn(
            f"found {len(train_files)} of {len(TRAIN_FILES)} CIFAR-10 training batches in {folder}; "
            "results are on a subset of the training set",
            stacklevel=4,  # the caller of load_dataset
        )
    train_x, train_y = _merge([_read_batch(f) for f in train_files])
    test_x, test_y = _merge([_read_batch(folder / TEST_FILE)])  # normalised tensors, like the training set
    source = {
        "layout": "pickle",
        "path": str(folder),
        "description": "CIFAR-10",
        "num_train": len(train_y),
        "num_test": len(test_y),
        "cache": None,
        "files": [f.name for f in train_files] + [TEST_FILE],
    }
    return Dataset(
        "cifar10",
        train_x,
        train_y,
        test_x,
        test_y,
        num_classes=10,
        classes=_class_names(folder),
        augment=random_crop_flip(4),  # the standard one; the engine drops it when augmentation is off
        source=source,
    )


def _from_image_folder(folder: Path) -> Dataset:
    images = read_image_folder(folder, classes=CLASSES)
    if images.train_x.shape[1:] != (3, 32, 32):
        raise DataError(
            f"{folder} holds images of shape {tuple(images.train_x.shape[1:])} (channels, height, width); "
            "CIFAR-10 images are 32x32 colour"
        )
    found = (len(images.train_y), len(images.test_y))
    if found != COUNTS:
        warnings.warn(
            f"found {found[0]:,} training and {found[1]:,} test images of CIFAR-10's {COUNTS[0]:,} and {COUNTS[1]:,} "
            f"in {folder}; results are on a subset",
            stacklevel=4,  # the caller of load_dataset
        )
    description = "CIFAR-10" if images.formats == ["PNG"] else f"CIFAR-10 ({images.format_label})"
    return Dataset(
        "cifar10",
        normalise_images(images.train_x, MEAN, STD),
        images.train_y,
        normalise_images(images.test_x, MEAN, STD),
        images.test_y,
        num_classes=10,
        classes=list(CLASSES),
        augment=random_crop_flip(4),
        source=images.source(description),
    )


def _find_folder(root: Path, complete: bool = False) -> Path | None:
    """The first pickle folder with the test batch and all (``complete``) or at least one of the training batches."""
    need = all if complete else any
    for parent in PICKLE_PARENTS:
        folder = root / parent / FOLDER  # pathlib drops a "." part
        if (folder / TEST_FILE).is_file() and need((folder / f).is_file() for f in TRAIN_FILES):
            return folder
    return None


def _find_image_folder(root: Path) -> Path | None:
    """The first candidate folder with ``train/`` and a test split (``test/`` or ``val/``)."""
    for name in IMAGE_FOLDERS:
        folder = root / name
        if (folder / "train").is_dir() and any((folder / s).is_dir() for s in TEST_SPLITS):
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
    images = torch.from_numpy(np.concatenate([b[0] for b in batches]))
    labels = torch.from_numpy(np.concatenate([b[1] for b in batches]))
    return normalise_images(images, MEAN, STD), labels


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
