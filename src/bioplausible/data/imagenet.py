"""ImageNet (or any image-folder classification set in its layout), streamed from disk.

Unlike the in-memory datasets, the images are decoded batch by batch by ``DataLoader`` worker processes.
:class:`StreamingImageDataset` offers the interface the engine uses of :class:`~bioplausible.data.base.Dataset`
(``train_batches``, ``test_batches``, ``sample``, ``to``, ``num_train``, ``input_shape``, ...); it has no
in-memory tensors, and evaluates on its ``val/`` split.

Layout (``root`` being the data folder)::

    <root>/imagenet/train/<class>/<image>   (.JPEG, .jpg, .jpeg or .png; any case)
    <root>/imagenet/val/<class>/<image>     (val sorted into the same class folders as train)

``<root>/train`` and ``<root>/val`` are accepted too. Labels are the indices of the sorted train class folder
names (for ImageNet, the WordNet ids ``n01440764``, ...).

Reproducibility: given the state of the generator passed to :meth:`StreamingImageDataset.train_batches`, the order
of an epoch and every random crop and flip are fixed: each image's transform draws from its own
``random.Random`` seeded from the generator and its position in the epoch, so the pixels do not depend on
``num_workers``, on which worker loads which batch, or on how ``world_size`` processes split a global batch.
Worker processes also seed Python's ``random`` and numpy from torch's per-worker seed (itself drawn from the
generator), so a replacement ``augment`` that draws from those is reproducible for a given ``num_workers``.
Not reproducible: pixels across Pillow or libjpeg versions (decoders and resampling filters differ slightly), and
anything after files are added to or removed from the folders (indices follow the sorted file names).
"""

from __future__ import annotations

import copy
import math
import os
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..errors import ConfigError, DataError
from ..registry import DATASETS
from .imagefolder import decoded_rgb

if TYPE_CHECKING:
    from PIL.Image import Image

MEAN = (0.485, 0.456, 0.406)  # the usual ImageNet channel statistics of RGB values in [0, 1]
STD = (0.229, 0.224, 0.225)
EXTENSIONS = (".jpeg", ".jpg", ".png")
CROP_SCALE = (0.08, 1.0)  # share of the image's area a training crop covers
CROP_RATIO = (3 / 4, 4 / 3)  # its width / height
CROP_TRIES = 10

# A transform: (PIL RGB image, random.Random or None for evaluation) -> PIL RGB image of the output size.
Transform = Callable[[Any, Any], Any]


@DATASETS.register("imagenet")
def imagenet(
    root: Path, download: bool = True, *, image_size: int = 224, resize_size: int = 256, num_workers: int = 4
) -> StreamingImageDataset:
    """ImageNet-1k from image folders, streamed: (3, image_size, image_size), one class per train folder.

    ImageNet cannot be downloaded automatically (its licence asks every user to obtain it from image-net.org),
    so ``download`` has no effect; missing folders raise an error that says where to put them.

    Args:
        root: The data folder: holds ``imagenet/train`` and ``imagenet/val``, or ``train`` and ``val`` itself.
        download: Ignored (see above).
        image_size: Side of the square crops fed to the model.
        resize_size: Evaluation images are resized so their shorter side is this long, then centre-cropped.
        num_workers: ``DataLoader`` worker processes decoding images (at most the number of CPUs; 0 decodes in
            the main process).
    """
    del download  # cannot be honoured; the missing-files error explains why
    for option, value in (("image_size", image_size), ("resize_size", resize_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"imagenet option {option} must be a positive integer, got {value!r}")
    if resize_size < image_size:
        raise ConfigError(f"imagenet resize_size ({resize_size}) must be at least image_size ({image_size})")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ConfigError(f"imagenet option num_workers must be an integer >= 0, got {num_workers!r}")
    base = _find_base(Path(root))
    classes = _class_folders(base / "train")
    if not classes:
        raise _layout_error(Path(root), f"{base / 'train'} has no class folders")
    index = {name: i for i, name in enumerate(classes)}
    return StreamingImageDataset(
        "imagenet",
        classes,
        _scan(base / "train", index, Path(root)),
        _scan(base / "val", index, Path(root)),
        image_size=image_size,
        resize_size=resize_size,
        num_workers=num_workers,
    )


class StreamingImageDataset:
    """An image-folder classification dataset decoded on the fly; duck-types :class:`~.base.Dataset`.

    Attributes:
        name: The registry name.
        classes: Class (folder) names, indexed by label.
        num_classes: ``len(classes)``.
        augment: The per-image training transform (random-resized crop to ``image_size`` and a random
            horizontal flip). Set it to None to train on the evaluation transform (resize, centre crop); a
            replacement must be a picklable callable ``(PIL RGB image, random.Random) -> PIL RGB image`` of the
            output size.
        eval_transform: The evaluation transform: shorter side to ``resize_size``, centre crop ``image_size``.
        num_workers: Requested ``DataLoader`` workers; at most ``os.cpu_count()`` are started.
        device: Where yielded batches are put (see :meth:`to`).
    """

    def __init__(
        self,
        name: str,
        classes: Sequence[str],
        train: _FileTable,
        val: _FileTable,
        *,
        image_size: int = 224,
        resize_size: int = 256,
        num_workers: int = 4,
    ) -> None:
        self.name = name
        self.classes = list(classes)
        self.num_classes = len(self.classes)
        self.image_size = image_size
        self.resize_size = resize_size
        self.num_workers = num_workers
        self.augment: Transform | None = RandomResizedCropFlip(image_size)
        self.eval_transform: Transform = ResizeCenterCrop(image_size, resize_size)
        self.device = torch.device("cpu")
        self._train = train
        self._val = val

    def __repr__(self) -> str:
        return (
            f"StreamingImageDataset(name={self.name!r}, train={self.num_train}, test={self.num_test}, "
            f"num_classes={self.num_classes}, input_shape={self.input_shape}, device={self.device})"
        )

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, self.image_size, self.image_size)

    @property
    def num_train(self) -> int:
        return len(self._train)

    @property
    def num_test(self) -> int:
        """Number of ``val/`` images, the ones :meth:`test_batches` yields."""
        return len(self._val)

    def to(self, device: torch.device | str) -> StreamingImageDataset:
        """A copy that puts every batch it yields on ``device`` (through pinned memory on CUDA, non-blocking)."""
        moved = copy.copy(self)
        moved.device = torch.device(device)
        return moved

    def train_batches(
        self, batch_size: int, generator: torch.Generator, rank: int = 0, world_size: int = 1, with_index: bool = False
    ) -> Iterator[tuple[torch.Tensor, ...]]:
        """One shuffled epoch of normalised (x, y) batches, with the training transform unless ``augment`` is None;
        (x, y, index) with ``with_index``, index being each image's position in ``train/``.

        ``generator`` (a CPU generator) fixes the order and the random crops. With ``world_size`` > 1 every
        process draws the same permutation and takes its ``rank``-th share of each global batch of ``batch_size``,
        so N processes together see exactly the batches (and pixels) one process would.

        Raises:
            DataError: If an image cannot be read; the message names the file.
        """
        n = self.num_train
        order = torch.randperm(n, generator=generator).tolist()
        epoch_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        batches = []
        for start in range(0, n, batch_size):
            positions = torch.arange(start, min(start + batch_size, n)).tensor_split(world_size)[rank].tolist()
            batches.append([(order[p], epoch_seed + p) for p in positions])
        transform = self.augment if self.augment is not None else self.eval_transform
        loader_seed = epoch_seed + 1 + rank  # worker seeds; different per rank, as the ranks load different images
        loaded = self._load(_ImageFiles(self._train, transform), batches, self.num_workers, loader_seed)
        if not with_index:
            yield from loaded
            return
        for (x, y), batch in zip(loaded, batches):
            yield x, y, torch.tensor([i for i, _ in batch], device=x.device)

    def test_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The ``val/`` split in order (class folder, then file name), with the evaluation transform."""
        n = self.num_test
        batches = [list(range(start, min(start + batch_size, n))) for start in range(0, n, batch_size)]
        yield from self._load(_ImageFiles(self._val, self.eval_transform), batches, self.num_workers, 0)

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` (at most all) ``val/`` images with the evaluation transform: a fixed batch for probes."""
        indices = list(range(min(n, self.num_test)))
        # One batch is loaded by one worker anyway, so the main process does it without starting any.
        batches = self._load(_ImageFiles(self._val, self.eval_transform), [indices], 0, 0)
        try:
            return next(batches)
        finally:
            batches.close()

    def split_validation(self, fraction: float, seed: int) -> tuple[Any, tuple[torch.Tensor, torch.Tensor]]:
        """Not supported: raises :class:`ConfigError`."""
        raise ConfigError(
            f"dataset {self.name!r} is streamed from disk and evaluates on its val/ split; it cannot carve a "
            "validation set out of train/. Set val_fraction to 0 (and patience to 0, which also needs one)"
        )

    def _load(
        self, files: _ImageFiles, batches: list[list], num_workers: int, seed: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Decode ``batches`` (lists of keys into ``files``) and yield them normalised on ``self.device``."""
        workers = min(num_workers, os.cpu_count() or 1)
        loader = DataLoader(
            files,
            batch_sampler=batches,
            num_workers=workers,
            collate_fn=partial(_collate, image_size=self.image_size),
            pin_memory=self.device.type == "cuda",
            worker_init_fn=_seed_worker if workers else None,
            generator=torch.Generator().manual_seed(seed),  # worker seeds; leaves the global torch RNG alone
            persistent_workers=False,
        )
        mean = torch.tensor(MEAN, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(STD, device=self.device).view(1, 3, 1, 1)
        batch_iter = iter(loader)
        try:
            for pixels, labels in batch_iter:
                # uint8 crosses to the device (a quarter of the bytes of float32) and is normalised there.
                x = pixels.to(self.device, non_blocking=True).float().div_(255).sub_(mean).div_(std)
                yield x, labels.to(self.device, non_blocking=True)
        except DataError as err:
            if not workers:
                raise
            # DataLoader re-raises a worker's error with the worker's traceback as its message; keep the original.
            raise DataError(_worker_error_message(str(err))) from None
        finally:
            # Stop the workers now (a no-op after a complete pass). Left to the garbage collector, as an error's
            # traceback would leave it, the iterator's queues may be finalised first, and each worker then takes a
            # 5 s join timeout to end. DataLoader has no public method for this.
            shutdown = getattr(batch_iter, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()


class _FileTable:
    """Image paths (relative to a folder) and labels, packed in numpy arrays.

    No Python object per file: forked ``DataLoader`` workers then share the table instead of copying the pages
    that reference-count updates would touch (for ImageNet, 1.28 M paths).
    """

    def __init__(self, folder: Path, relative_paths: Sequence[str], labels: Sequence[int]) -> None:
        encoded = [os.fsencode(p) for p in relative_paths]
        self.folder = str(folder)
        self.offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=self.offsets[1:])
        self.buffer = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def path(self, i: int) -> str:
        relative = self.buffer[self.offsets[i] : self.offsets[i + 1]].tobytes()
        return os.path.join(self.folder, os.fsdecode(relative))


class _ImageFiles(torch.utils.data.Dataset):
    """The ``DataLoader``'s dataset: key -> (uint8 CHW image tensor, label).

    A key is an index (evaluation) or an ``(index, seed)`` pair (training: the seed drives the random transform).
    """

    def __init__(self, table: _FileTable, transform: Transform) -> None:
        self.table = table
        self.transform = transform

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        image = _open_rgb(self.table.path(index))
        image = self.transform(image, None if seed is None else random.Random(seed))
        pixels = torch.from_numpy(np.array(image, dtype=np.uint8))  # (H, W, 3)
        return pixels.permute(2, 0, 1), int(self.table.labels[index])


def _open_rgb(path: str) -> Image:
    """The decoded image as RGB; a file Pillow cannot read raises a DataError naming it."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return decoded_rgb(image, path)  # decodes the whole file now, so truncation is caught here
    except DataError:
        raise
    except Exception as exc:  # Pillow signals damaged files with many exception types
        raise DataError(f"{path} is not a readable image ({type(exc).__name__}: {exc}); delete or replace it") from exc


def _collate(items: list[tuple[torch.Tensor, int]], image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    if not items:  # a rank's share of a final global batch smaller than world_size
        return torch.empty((0, 3, image_size, image_size), dtype=torch.uint8), torch.empty(0, dtype=torch.int64)
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items], dtype=torch.int64)


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed()  # DataLoader's base seed + worker_id
    random.seed(seed)
    np.random.seed(seed % 2**32)


def _worker_error_message(text: str) -> str:
    """The original message inside DataLoader's 'Caught DataError in DataLoader worker process N ...' text."""
    marker = f"{DataError.__module__}.{DataError.__qualname__}: "
    at = text.rfind(marker)
    return text[at + len(marker) :].strip() if at >= 0 else text


# ---------------------------------------------------------------- transforms (Pillow, no torchvision)


@dataclass(frozen=True)
class RandomResizedCropFlip:
    """Training transform: a random crop of random area and aspect ratio, resized to ``size``, mirrored half the time.

    The crop covers ``scale`` of the image's area with width/height in ``ratio`` (log-uniform); after
    ``CROP_TRIES`` draws that do not fit in the image it falls back to the largest centred crop whose aspect
    ratio is in ``ratio``.
    """

    size: int
    scale: tuple[float, float] = CROP_SCALE
    ratio: tuple[float, float] = CROP_RATIO

    def __call__(self, image: Image, rng: random.Random | None) -> Image:
        from PIL import Image

        if rng is None:
            rng = random.Random()
        box = random_resized_box(image.width, image.height, rng, self.scale, self.ratio)
        out = image.resize((self.size, self.size), Image.Resampling.BILINEAR, box=box)
        if rng.random() < 0.5:
            out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return out


@dataclass(frozen=True)
class ResizeCenterCrop:
    """Evaluation transform: shorter side to ``resize`` (bilinear, aspect kept), then the centred ``size`` square."""

    size: int
    resize: int

    def __call__(self, image: Image, rng: random.Random | None = None) -> Image:
        from PIL import Image

        w, h = image.size
        if w <= h:
            new_w, new_h = self.resize, max(self.resize, int(self.resize * h / w))
        else:
            new_w, new_h = max(self.resize, int(self.resize * w / h)), self.resize
        resized = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
        left, top = round((new_w - self.size) / 2), round((new_h - self.size) / 2)
        return resized.crop((left, top, left + self.size, top + self.size))


def random_resized_box(
    width: int,
    height: int,
    rng: random.Random,
    scale: tuple[float, float] = CROP_SCALE,
    ratio: tuple[float, float] = CROP_RATIO,
) -> tuple[int, int, int, int]:
    """A (left, top, right, bottom) crop box for :class:`RandomResizedCropFlip`."""
    area = width * height
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(CROP_TRIES):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left = rng.randint(0, width - w)
            top = rng.randint(0, height - h)
            return left, top, left + w, top + h
    # Fallback: the whole image, trimmed to the nearest allowed aspect ratio, centred.
    if width / height < ratio[0]:
        w, h = width, max(1, round(width / ratio[0]))
    elif width / height > ratio[1]:
        w, h = max(1, round(height * ratio[1])), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


# ---------------------------------------------------------------- finding the files


def _find_base(root: Path) -> Path:
    """The folder holding ``train/`` and ``val/``: ``root/imagenet`` or ``root``."""
    for base in (root / "imagenet", root):
        if (base / "train").is_dir() and (base / "val").is_dir():
            return base
    for base in (root / "imagenet", root):
        for split, other in (("train", "val"), ("val", "train")):
            if (base / split).is_dir():
                raise _layout_error(root, f"found {base / split} but no {base / other}")
    raise _layout_error(root, f"neither {root / 'imagenet'} nor {root} has train/ and val/ folders")


def _layout_error(root: Path, problem: str) -> DataError:
    return DataError(
        f"ImageNet not found ({problem}). Expected {root}/imagenet/train/<class>/<image> and "
        f"{root}/imagenet/val/<class>/<image> (or {root}/train/... and {root}/val/...), images as .JPEG/.jpg/.png, "
        "with val/ sorted into the same class folders as train/. ImageNet cannot be downloaded automatically "
        "(download is ignored): obtain it yourself from https://image-net.org, unpack it there, or pass "
        "--data-dir / set $BIOPLAUSIBLE_DATA to the folder that has it"
    )


def _class_folders(folder: Path) -> list[str]:
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def _scan(folder: Path, class_index: dict[str, int], root: Path) -> _FileTable:
    """Every image in ``folder/<class>/``, sorted by class then file name; labels from ``class_index``."""
    paths: list[str] = []
    labels: list[int] = []
    for name in _class_folders(folder):
        if name not in class_index:
            raise DataError(
                f"{folder / name} is a class folder that {folder.parent / 'train'} does not have; "
                "val/ must be sorted into the class folders of train/"
            )
        files = _image_files(folder / name)
        paths.extend(os.path.join(name, f) for f in files)
        labels.extend([class_index[name]] * len(files))
    if not paths:
        raise _layout_error(root, f"no images in the class folders of {folder}")
    return _FileTable(folder, paths, labels)


def _image_files(folder: Path) -> list[str]:
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.is_file() and os.path.splitext(e.name)[1].lower() in EXTENSIONS)
