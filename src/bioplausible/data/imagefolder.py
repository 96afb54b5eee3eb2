"""Image-folder classification datasets held in memory: ``<folder>/{train,test}/<class>/<image>``.

For small images (CIFAR-10, Tiny-ImageNet-sized sets) decoding on the fly costs far more than holding the pixels:
the folder is decoded once with Pillow and cached as uint8 tensors in the per-user cache
(``$XDG_CACHE_HOME/bioplausible/imagefolder/``, see :func:`~.base.cache_dir`), then every load reads that one file.
The cache key is a checksum of the sorted file list with each file's size and modification time, so adding,
removing, replacing or touching an image makes the next load decode the folder again (the new cache file replaces
the folder's old one). Not in the key: the Pillow / libjpeg version, whose decoders may differ in the last bit.

Layout rules:

- ``test/`` may be called ``val/`` (used only when there is no ``test/``).
- Class index: the position in the class list a dataset gives (CIFAR-10: the official order), else in the sorted
  class folder names; train and test must have the same class folders.
- Images are the files with an image extension (``.jpg``, ``.png``, ... see ``EXTENSIONS``, any case) anywhere
  below a class folder (so Tiny-ImageNet's ``train/<wnid>/images/`` works as is), sorted by their path inside it;
  other files (``*_boxes.txt``) and hidden files are ignored.
- All images must have one size. A folder of only greyscale images gives one channel, anything else three (RGB).

The generic ``imagefolder`` dataset normalises each channel with the mean and std of the training split.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from io import BytesIO
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..errors import DataError
from ..registry import DATASETS
from .augment import random_crop_flip
from .base import DATA_ENV, Dataset, cache_dir

logger = logging.getLogger(__name__)

EXTENSIONS = frozenset({".bmp", ".gif", ".jpeg", ".jpg", ".pbm", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp"})
TEST_SPLITS = ("test", "val")  # the first that exists is the test split
GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
CACHE_VERSION = 2  # bump when the cache payload or the decoding changes (2: 16-bit grey scaled, not clipped)
MIN_AUGMENT_SIDE = 16  # smaller images get no crop augmentation


@DATASETS.register("imagefolder")
def imagefolder(root: Path, download: bool = True) -> Dataset:
    """Any image-folder classification set, e.g. Tiny-ImageNet: ``root/train/<class>/<image>``, ``root/test/...``.

    ``root`` is the folder given with ``--data-dir`` (or ``$BIOPLAUSIBLE_DATA``); it must hold ``train/`` and
    ``test/`` (or ``val/``) directly. Classes are the sorted class folder names. Pixels are scaled to [0, 1] and
    standardised per channel with the training split's mean and std. Colour images of side >= 16 are augmented
    with a random crop (zero padding min(H, W) / 8: CIFAR's 4 pixels at 32 px, 8 at Tiny-ImageNet's 64) and a
    horizontal flip; greyscale or smaller images are not (a flip changes a digit or a letter).

    Args:
        root: The folder holding ``train/`` and ``test/``.
        download: Ignored: a user's own folder cannot be downloaded.

    Raises:
        DataError: Naming the folder or file, if the layout is wrong, a class folder is empty or missing from one
            split, an image is unreadable, or the images differ in size.
    """
    del download
    images = read_image_folder(root)
    mean, std = channel_stats(images.train_x)
    channels, height, width = images.train_x.shape[1:]
    padding = max(1, round(min(height, width) / 8))
    colour = channels == 3 and min(height, width) >= MIN_AUGMENT_SIDE
    return Dataset(
        "imagefolder",
        normalise_images(images.train_x, mean, std),
        images.train_y,
        normalise_images(images.test_x, mean, std),
        images.test_y,
        num_classes=len(images.classes),
        classes=list(images.classes),
        augment=random_crop_flip(padding) if colour else None,
        source=images.source(f"image folder {images.folder.name} ({images.format_label})"),
    )


@dataclass(frozen=True)
class FolderImages:
    """A decoded image folder: uint8 pixels and labels of both splits, and what was read.

    Attributes:
        train_x: uint8 pixels, (N, C, H, W); C is 1 for a folder of greyscale images only, else 3.
        train_y: int64 labels, (N,).
        test_x: The test (or val) split's pixels.
        test_y: Its labels.
        classes: Class names, indexed by label.
        folder: The folder holding ``train/`` and the test split.
        test_split: ``"test"`` or ``"val"``.
        formats: Pillow's names of the file formats found, sorted (e.g. ``["JPEG"]``).
        jpeg_quality: The IJG quality (1-100) whose standard quantisation tables the first training image uses,
            if it is a JPEG with standard tables; else None.
        checksum: sha256 of the listing (paths, sizes, modification times): the cache key.
        cache: The cache file read or written, or None if it could not be written.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    folder: Path
    test_split: str
    formats: list[str]
    jpeg_quality: int | None
    checksum: str
    cache: Path | None

    @property
    def format_label(self) -> str:
        """E.g. ``"JPEG q75"``, ``"PNG"`` or ``"JPEG/PNG"``."""
        if self.formats == ["JPEG"] and self.jpeg_quality is not None:
            return f"JPEG q{self.jpeg_quality}"
        return "/".join(self.formats)

    def source(self, description: str) -> dict:
        """The :attr:`~.base.Dataset.source` record of this folder."""
        return {
            "layout": "image-folder",
            "path": str(self.folder),
            "description": description,
            "num_train": len(self.train_y),
            "num_test": len(self.test_y),
            "cache": str(self.cache) if self.cache else None,
            "checksum": self.checksum,
            "test_split": self.test_split,
            "image_size": list(self.train_x.shape[1:]),
            "formats": list(self.formats),
            "jpeg_quality": self.jpeg_quality,
            "decoder": decoder_versions(),
            "pixels_sample_sha256": sample_digest(self.train_x, self.test_x),
        }


SAMPLE = 256  # images of each split whose decoded pixels are fingerprinted


def sample_digest(*splits: torch.Tensor) -> str:
    """sha256 of the decoded pixels of the first SAMPLE images of each split: two machines whose JPEG decoders
    differ give different pixels (and slightly different runs) from the same files, and the run records say so.
    A sample, so that a cached load stays fast (the whole set is 184 MB)."""
    digest = hashlib.sha256()
    for x in splits:
        digest.update(x[:SAMPLE].contiguous().numpy().tobytes())
    return digest.hexdigest()


def decoder_versions() -> dict[str, str | None]:
    """Pillow's version and the JPEG library it decodes with (libjpeg-turbo's version where it is that one)."""
    from PIL import __version__, features

    turbo = "libjpeg_turbo" in features.get_supported_features()
    return {
        "pillow": __version__,
        "libjpeg": features.version("jpg"),
        "libjpeg_turbo": features.version("libjpeg_turbo") if turbo else None,
    }


def read_image_folder(folder: Path, classes: Sequence[str] | None = None) -> FolderImages:
    """The folder's images as uint8 tensors, from the cache when the folder is unchanged, else decoded and cached.

    Args:
        folder: Holds ``train/<class>/<image>`` and ``test/<class>/<image>`` (or ``val/``).
        classes: The class names in label order; the class folders must be exactly these. Default: the sorted
            class folder names of ``train/``.

    Raises:
        DataError: Naming the folder or file, if the layout is wrong, a class folder is empty or missing from a
            split, an image is unreadable, or the images differ in size.
    """
    listing = _scan(Path(folder), classes)
    cache = _cache_file(listing)
    images = _read_cache(cache, listing)
    if images is None:
        logger.info("decoding %d images from %s (once; cached in %s)", len(listing.paths), listing.folder, cache)
        images = _write_cache(cache, _decode(listing))
    return images


# ---------------------------------------------------------------- listing the folder


@dataclass(frozen=True)
class _Listing:
    folder: Path
    test_split: str
    classes: list[str]
    paths: list[str]  # relative to folder, train split first
    labels: list[int]
    num_train: int
    checksum: str


def _scan(folder: Path, classes: Sequence[str] | None = None) -> _Listing:
    """Every image of both splits, sorted by class index then path, and the listing's checksum (no decoding)."""
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist; pass --data-dir DIR with DIR/train and DIR/test")
    test_split = next((s for s in TEST_SPLITS if (folder / s).is_dir()), None)
    if not (folder / "train").is_dir() or test_split is None:
        raise DataError(
            f"{folder} is not an image folder: expected {folder}/train/<class>/<image> and "
            f"{folder}/test/<class>/<image> (or val/ for test/); pass the folder holding them with --data-dir "
            f"or ${DATA_ENV}"
        )
    train_dir, test_dir = folder / "train", folder / test_split
    train_classes, test_classes = _class_folders(train_dir), _class_folders(test_dir)
    if classes is not None and set(train_classes) != set(classes):
        raise DataError(
            f"{train_dir} has the class folders {', '.join(train_classes) or '(none)'}; this dataset needs exactly "
            f"{', '.join(classes)}"
        )
    for a, b, names in (
        (train_dir, test_dir, set(train_classes) - set(test_classes)),
        (test_dir, train_dir, set(test_classes) - set(train_classes)),
    ):
        if names:
            name = sorted(names)[0]
            raise DataError(
                f"class folder {a / name} has no counterpart {b / name}; train and test need the same class folders"
            )
    order = list(classes) if classes is not None else train_classes
    digest = hashlib.sha256(f"bioplausible image folder v{CACHE_VERSION}\n{order!r}\n".encode())
    paths: list[str] = []
    labels: list[int] = []
    num_train = 0
    for split, split_dir in (("train", train_dir), (test_split, test_dir)):
        for label, name in enumerate(order):
            files = _image_files(split_dir / name)
            if not files:
                raise DataError(
                    f"class folder {split_dir / name} has no images ({', '.join(sorted(EXTENSIONS))}); "
                    "add some or remove the folder from both splits"
                )
            prefix = f"{split}/{name}/"
            paths.extend(prefix + relative for relative, _, _ in files)
            labels.extend([label] * len(files))
            # One update per class folder: per-file Python work is most of a cached load's scan.
            digest.update(os.fsencode("".join(f"{prefix}{r}\t{size}\t{mtime}\n" for r, size, mtime in files)))
        num_train = num_train or len(paths)  # set once, after the train split
    return _Listing(folder, test_split, order, paths, labels, num_train, digest.hexdigest())


def _class_folders(split_dir: Path) -> list[str]:
    """The sorted class folder names; a split without any is an error that says whether images lie loose in it."""
    with os.scandir(split_dir) as entries:
        entries = [e for e in entries if not e.name.startswith(".")]
    names = sorted(e.name for e in entries if e.is_dir())
    if not names:
        loose = any(e.is_file() and _is_image(e.name) for e in entries)
        hint = " (its images must be sorted into one subfolder per class)" if loose else ""
        raise DataError(f"{split_dir} has no class folders{hint}; expected {split_dir}/<class>/<image>")
    return names


def _image_files(class_dir: Path, prefix: str = "") -> list[tuple[str, int, int]]:
    """(path inside ``class_dir``, size, mtime_ns) of every image below it, sorted by path."""
    found = []
    with os.scandir(class_dir) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                found.extend(_image_files(Path(entry.path), f"{prefix}{entry.name}/"))
            elif entry.is_file() and _is_image(entry.name):
                stat = entry.stat()
                found.append((prefix + entry.name, stat.st_size, stat.st_mtime_ns))
    return sorted(found)


def _is_image(name: str) -> bool:
    dot = name.rfind(".")
    return dot > 0 and name[dot:].lower() in EXTENSIONS  # os.path.splitext, minus its cost on 60,000 names


# ---------------------------------------------------------------- decoding


def _decode(listing: _Listing) -> FolderImages:
    """Decode every image, in one process: a 32x32 JPEG takes ~0.25 ms of CPU, CIFAR-10's 60,000 ~16 s, once.

    Two worker processes were slower on a busy two-core machine (30 s against 20 s for the 60,000, measured), and a
    single process keeps errors and the progress bar simple.
    """
    from PIL import Image  # imported here so that importing bioplausible does not pay for Pillow

    first = listing.folder / listing.paths[0]
    with _open(first, Image) as image:
        size = image.size  # (W, H)
    pixels = np.empty((len(listing.paths), size[1], size[0], 3), dtype=np.uint8)  # (N, H, W, 3)
    formats: set[str] = set()
    grey = True
    progress = tqdm(listing.paths, desc=f"decoding {listing.folder.name}", unit="img", disable=None, leave=False)
    for i, relative in enumerate(progress):
        path = listing.folder / relative
        with _open(path, Image) as image:
            if image.size != size:
                raise DataError(
                    f"{path} is {image.size[0]}x{image.size[1]} pixels but {first} is {size[0]}x{size[1]}; "
                    "the images of a folder held in memory must all have one size: resize them first"
                )
            formats.add(image.format or "unknown")
            grey = grey and image.mode in GREY_MODES
            pixels[i] = np.asarray(_decoded_rgb(image, path))
    pixels = pixels[..., :1] if grey else pixels
    y = torch.tensor(listing.labels, dtype=torch.int64)
    n = listing.num_train
    return FolderImages(
        _channels_first(pixels[:n]),
        y[:n].clone(),  # clones, so the splits do not share (and pin) one storage
        _channels_first(pixels[n:]),
        y[n:].clone(),
        list(listing.classes),
        listing.folder,
        listing.test_split,
        sorted(formats),
        jpeg_quality(first),
        listing.checksum,
        None,
    )


def _channels_first(pixels: np.ndarray) -> torch.Tensor:
    """(N, H, W, C) -> a new contiguous (N, C, H, W) tensor."""
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()


def _open(path: Path, image_module):
    try:
        return image_module.open(path)
    except Exception as exc:  # Pillow signals unknown or damaged files with many exception types
        raise _unreadable(path, exc) from exc


def _decoded_rgb(image, path: Path):
    try:
        return decoded_rgb(image, path)
    except DataError:
        raise
    except Exception as exc:
        raise _unreadable(path, exc) from exc


def decoded_rgb(image, path: Path | str):
    """The decoded Pillow ``image`` as 8-bit RGB (alpha dropped, as torchvision's loader does).

    16-bit greyscale (Pillow's I;16 modes: microscopy, medical scans) is scaled to 8 bits, v / 257; Pillow's own
    conversion clips every value above 255, turning such an image all white. 32-bit integer and float images
    (modes I and F) are refused: their range is not in the file.

    Raises:
        DataError: a mode I or F image, naming the file; whatever Pillow raises for a damaged file.
    """
    from PIL import Image

    if image.mode.startswith("I;16"):
        grey = (np.asarray(image, dtype=np.float64) / 257).round().astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if image.mode in ("I", "F"):
        kind = "32-bit integer" if image.mode == "I" else "floating-point"
        raise DataError(
            f"{path} is a {kind} image (Pillow mode {image.mode}), whose range of values the file does not say: "
            "save it as an 8- or 16-bit image"
        )
    return image.convert("RGB")  # decodes the whole file now, so truncation is caught here


def _unreadable(path: Path, exc: Exception) -> DataError:
    return DataError(f"{path} is not a readable image ({type(exc).__name__}: {exc}); delete or replace it")


def jpeg_quality(path: Path) -> int | None:
    """The IJG quality (1-100) whose standard quantisation tables the JPEG file ``path`` uses, else None.

    libjpeg (hence Pillow, OpenCV, ImageMagick by default) scales two standard tables by the quality setting; the
    file's tables are compared with the ones Pillow writes at each quality.
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.format != "JPEG":
                return None
            tables = {k: list(v) for k, v in image.quantization.items()}
    except Exception:  # a damaged file is reported by the decoder; here it just has no known quality
        return None
    for quality in range(100, 0, -1):
        reference = _standard_tables(quality)
        if tables and all(reference.get(k) == v for k, v in tables.items()):
            return quality
    return None


@functools.cache
def _standard_tables(quality: int) -> dict[int, list[int]]:
    """The quantisation tables Pillow writes at ``quality`` (callers must not modify them)."""
    from PIL import Image

    buffer = BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "JPEG", quality=quality)
    with Image.open(buffer) as image:
        return {k: list(v) for k, v in image.quantization.items()}


# ---------------------------------------------------------------- the cache


def _cache_file(listing: _Listing) -> Path:
    """``<cache>/imagefolder/<folder name>-<hash of its absolute path>-<listing checksum>.pt``."""
    folder = listing.folder.resolve()
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", folder.name) or "root"
    where = hashlib.sha256(os.fsencode(str(folder))).hexdigest()[:12]
    return cache_dir() / "imagefolder" / f"{slug}-{where}-{listing.checksum[:16]}.pt"


def _read_cache(cache: Path, listing: _Listing) -> FolderImages | None:
    """The cached images if ``cache`` holds this listing's; None (decode again) if absent, stale or damaged."""
    if not cache.is_file():
        return None
    try:
        # mmap: the pixels are paged in as they are normalised, with no second copy in memory.
        payload = torch.load(cache, map_location="cpu", weights_only=True, mmap=True)
        images = FolderImages(
            payload["train_x"],
            payload["train_y"],
            payload["test_x"],
            payload["test_y"],
            list(payload["classes"]),
            listing.folder,
            listing.test_split,
            list(payload["formats"]),
            payload["jpeg_quality"],
            payload["checksum"],
            cache,
        )
        valid = (
            payload["version"] == CACHE_VERSION
            and images.checksum == listing.checksum
            and images.classes == listing.classes
            and len(images.train_y) == listing.num_train
            and len(images.train_y) + len(images.test_y) == len(listing.paths)
        )
    except Exception as exc:  # a damaged cache file is only a reason to decode again
        warnings.warn(f"ignoring the unreadable image cache {cache} ({type(exc).__name__}: {exc})", stacklevel=2)
        return None
    return images if valid else None


def _write_cache(cache: Path, images: FolderImages) -> FolderImages:
    """Save ``images`` to ``cache`` atomically and delete the folder's older cache files; returns them with ``cache``
    set (None if it could not be written: the data is still usable)."""
    payload = {
        "version": CACHE_VERSION,
        "checksum": images.checksum,
        "classes": images.classes,
        "formats": images.formats,
        "jpeg_quality": images.jpeg_quality,
        "train_x": images.train_x,
        "train_y": images.train_y,
        "test_x": images.test_x,
        "test_y": images.test_y,
    }
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{cache.name}.", suffix=".part", dir=cache.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                torch.save(payload, out)
            os.replace(tmp, cache)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        warnings.warn(f"could not write the image cache {cache} ({exc}); the next load decodes again", stacklevel=2)
        return images
    stem = cache.name.rsplit("-", 1)[0]  # <folder name>-<path hash>: this folder's earlier listings
    for old in cache.parent.glob(f"{stem}-*.pt"):
        if old != cache:
            with contextlib.suppress(OSError):  # e.g. still mapped by another process on Windows; it goes next time
                old.unlink(missing_ok=True)
    return replace(images, cache=cache)


# ---------------------------------------------------------------- normalisation


def channel_stats(pixels: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (population) of uint8 images (N, C, H, W), on the [0, 1] scale.

    Exact: computed in float64 from each channel's histogram of the 256 values, so no sum loses precision. A
    constant channel gets std 1 (nothing to scale).
    """
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for c in range(pixels.shape[1]):
        counts = torch.bincount(pixels[:, c].reshape(-1), minlength=256).to(torch.float64)
        n = counts.sum()
        mean = (counts * values).sum() / n
        std = ((counts * (values - mean) ** 2).sum() / n).sqrt()
        means.append(float(mean))
        stds.append(float(std) if std > 0 else 1.0)
    return tuple(means), tuple(stds)


def normalise_images(pixels: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 ((x / 255) - mean) / std per channel, as one new tensor.

    Fusing the arithmetic would not pay: allocating the float32 output (614 MB for CIFAR-10) costs most of the time.
    """
    shape = (1, len(mean), 1, 1)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(shape)
    std_t = torch.tensor(std, dtype=torch.float32).view(shape)
    return pixels.to(torch.float32).div_(255.0).sub_(mean_t).div_(std_t)
