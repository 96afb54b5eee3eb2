"""The :class:`Dataset` container, dataset lookup by name, the data folder, and download helpers.

Every dataset is loaded whole into memory as normalised float32 tensors on the CPU: the datasets this library
targets (digits, MNIST, Fashion-MNIST, CIFAR-10) fit easily, and whole-tensor batching is far faster than a
``DataLoader`` for them.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import ConfigError, DataError
from ..registry import DATASETS

logger = logging.getLogger(__name__)

DATA_ENV = "BIOPLAUSIBLE_DATA"
OFFLINE_ENV = "BIOPLAUSIBLE_OFFLINE"
DOWNLOAD_TIMEOUT_S = 15.0


@dataclass
class Dataset:
    """A classification dataset held in memory.

    Attributes:
        name: The registry name it was loaded under.
        train_x: float32 inputs, normalised; images as (N, C, H, W), vector data as (N, D).
        train_y: int64 labels, shape (N,).
        test_x: Test inputs, same layout as ``train_x``.
        test_y: Test labels.
        num_classes: Number of classes; labels lie in ``[0, num_classes)``.
        classes: Optional human-readable class names, indexed by label.
        augment: Optional on-device transform of each training batch (N, C, H, W) -> same shape.
        source: What was read, for the run's records (JSON-ready): always ``layout`` (e.g. ``"idx"``,
            ``"pickle"``, ``"image-folder"``, ``"sklearn"``, ``"generated"``), ``path`` (the folder read, or
            None), ``description`` (a label for tables, e.g. ``"CIFAR-10 (JPEG q75)"``), ``num_train`` and
            ``num_test`` (as read, before any validation split) and ``cache`` (the decoded-tensor cache file
            used, or None); a layout may add keys (``files``, ``checksum``, ...). Empty for a Dataset built by
            hand.
        loaded_as: What ``load_dataset`` loaded it as, {"dataset": name, "options": every option}; None for a
            Dataset built by hand. ``fit`` refuses a dataset its config does not name.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    classes: list[str] | None = None
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None  # on-device, per training batch
    source: dict = field(default_factory=dict)
    # set by load_dataset: {"dataset": name, "options": every option}; a field, so that copies keep it
    loaded_as: dict | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.train_x) != len(self.train_y) or len(self.test_x) != len(self.test_y):
            raise DataError(
                f"dataset {self.name!r}: inputs and labels differ in length "
                f"(train {len(self.train_x)} vs {len(self.train_y)}, test {len(self.test_x)} vs {len(self.test_y)})"
            )

    def __repr__(self) -> str:
        # The generated repr would print every tensor element.
        return (
            f"Dataset(name={self.name!r}, train={tuple(self.train_x.shape)}, test={tuple(self.test_x.shape)}, "
            f"num_classes={self.num_classes}, device={self.train_x.device})"
        )

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input, e.g. ``(1, 28, 28)`` or ``(20,)``."""
        return tuple(self.train_x.shape[1:])

    def to(self, device: torch.device | str) -> Dataset:
        """A new :class:`Dataset` with every tensor on ``device``."""
        return dataclasses.replace(
            self,
            train_x=self.train_x.to(device),
            train_y=self.train_y.to(device),
            test_x=self.test_x.to(device),
            test_y=self.test_y.to(device),
        )

    @property
    def num_train(self) -> int:
        return len(self.train_y)

    @property
    def num_test(self) -> int:
        return len(self.test_y)

    def train_batches(
        self, batch_size: int, generator: torch.Generator, rank: int = 0, world_size: int = 1, with_index: bool = False
    ) -> Iterator[tuple[torch.Tensor, ...]]:
        """One shuffled epoch of (x, y) batches, augmented if the dataset says so; (x, y, index) with
        ``with_index``, index being each example's position in the training set (for per-example state).

        ``generator`` (a CPU generator) fixes the order. With ``world_size`` > 1 every process draws the same
        permutation and takes its ``rank``-th share of each global batch of ``batch_size`` (augmented as a whole
        in every process), so N processes together see exactly the batches one process would.
        """
        order = torch.randperm(self.num_train, generator=generator).to(self.train_x.device)
        for start in range(0, self.num_train, batch_size):
            batch = order[start : start + batch_size]
            idx = batch.tensor_split(world_size)[rank]
            # augmented as a whole global batch in every process: the random draws stay identical across them
            x = self.augment(self.train_x[batch]).tensor_split(world_size)[rank] if self.augment else self.train_x[idx]
            yield (x, self.train_y[idx], idx) if with_index else (x, self.train_y[idx])

    def test_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self.test_y), batch_size):
            yield self.test_x[start : start + batch_size], self.test_y[start : start + batch_size]

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` training examples, unaugmented: a fixed batch for probes."""
        return self.train_x[:n], self.train_y[:n]

    def split_validation(self, fraction: float, seed: int) -> tuple[Dataset, tuple[torch.Tensor, torch.Tensor]]:
        """Carve a fixed-seed random part of the training set out as a validation set.

        Args:
            fraction: Share of the training examples to move to validation, strictly between 0 and 1.
            seed: Seed of the random choice; the same seed always picks the same examples.

        Returns:
            ``(dataset, (val_x, val_y))``: a new dataset whose training set lacks the validation examples
            (test set unchanged), and the validation inputs and labels.

        Raises:
            ConfigError: If ``fraction`` is outside (0, 1) or leaves an empty train or validation set.
        """
        if not 0.0 < fraction < 1.0:
            raise ConfigError(f"validation fraction must be between 0 and 1 (exclusive), got {fraction}")
        n = len(self.train_y)
        n_val = round(fraction * n)
        if not 0 < n_val < n:
            raise ConfigError(f"validation fraction {fraction} of {n} training examples leaves an empty split")
        # A CPU generator makes the choice identical whatever device the data is on.
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        # Sorting keeps the original example order inside each part.
        val_idx = perm[:n_val].sort().values.to(self.train_x.device)
        train_idx = perm[n_val:].sort().values.to(self.train_x.device)
        reduced = dataclasses.replace(self, train_x=self.train_x[train_idx], train_y=self.train_y[train_idx])
        return reduced, (self.train_x[val_idx], self.train_y[val_idx])


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder datasets are read from and downloaded into.

    Args:
        data_dir: An explicit folder (e.g. from ``--data-dir``); it must exist.

    Returns:
        ``data_dir`` if given, else ``$BIOPLAUSIBLE_DATA`` if set (it must exist too), else the per-user cache
        folder ``$XDG_CACHE_HOME/bioplausible`` or ``~/.cache/bioplausible``, created if needed.

    Raises:
        DataError: If an explicitly chosen folder does not exist.
    """
    if data_dir is not None:
        return _existing_dir(Path(data_dir).expanduser(), "pass an existing folder with --data-dir")
    env = os.environ.get(DATA_ENV)
    if env:
        return _existing_dir(Path(env).expanduser(), f"fix or unset ${DATA_ENV}")
    return cache_dir()


def cache_dir() -> Path:
    """The per-user cache folder, ``$XDG_CACHE_HOME/bioplausible`` or ``~/.cache/bioplausible``, created if needed.

    Downloads go there by default (see :func:`resolve_data_dir`), and decoded image folders are cached in its
    ``imagefolder/`` subfolder whatever the data folder is, since a data folder may be read-only or shared.
    """
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    cache = Path(cache_home).expanduser() / "bioplausible"
    cache.mkdir(parents=True, exist_ok=True)
    return cache


def _existing_dir(path: Path, fix: str) -> Path:
    if not path.is_dir():
        # An explicit but wrong folder is a typo far more often than a wish for a new empty one.
        raise DataError(f"data directory {path} does not exist; create it or {fix}")
    return path


def load_dataset(
    name: str, data_dir: str | os.PathLike | None = None, download: bool = True, **options: object
) -> Dataset:
    """Load a registered dataset by name.

    Args:
        name: A registered dataset name, e.g. ``"mnist"``; see ``DATASETS.list()``.
        data_dir: Folder to read from / download into; see :func:`resolve_data_dir`.
        download: Whether missing files may be downloaded (never when ``$BIOPLAUSIBLE_OFFLINE=1``).
        **options: Dataset-specific options, e.g. ``n_train`` for ``"synthetic"``.

    Returns:
        The dataset, on the CPU.

    Raises:
        UnknownNameError: If ``name`` is not registered.
        ConfigError: If an option is not one the dataset takes.
        DataError: If the files are missing (and cannot be downloaded) or corrupt.
    """
    builder = DATASETS.get(name)  # first, so a bad name is reported before any folder problem
    _check_options(name, builder, options)
    dataset = builder(root=resolve_data_dir(data_dir), download=download, **options)
    name, full = dataset_identity(name, options)
    # what ``fit`` checks a dataset handed to it against; the sizes tell a subset (a validation split) apart
    sizes = {"num_train": len(dataset.train_y), "num_test": len(dataset.test_y)} if hasattr(dataset, "train_y") else {}
    dataset.loaded_as = {"dataset": name, "options": full, **sizes}
    return dataset


def loaded_as(dataset) -> dict | None:
    """{"dataset": name, "options": every option} that ``load_dataset`` loaded ``dataset`` with; None for one built
    by hand."""
    return getattr(dataset, "loaded_as", None)


def dataset_identity(name: str, options: dict) -> tuple[str, dict]:
    """(name, every option with the defaults filled in): what a dataset was loaded as, comparable across calls
    that spell the same options differently (given or left at their defaults)."""
    bound = inspect.signature(DATASETS.get(name)).bind(root=None, download=True, **options)
    bound.apply_defaults()
    full = {k: v for k, v in bound.arguments.items() if k not in ("root", "download")}
    return name, {k: list(v) if isinstance(v, tuple) else v for k, v in full.items()}


def _check_options(name: str, builder: Callable, options: dict) -> None:
    # Binding first turns a misspelt option into a ConfigError instead of a TypeError from deep inside.
    try:
        inspect.signature(builder).bind(root=None, download=True, **options)
    except TypeError:
        params = inspect.signature(builder).parameters
        known = [p for p in params if p not in ("root", "download") and params[p].kind is params[p].KEYWORD_ONLY]
        raise ConfigError(
            f"dataset {name!r} does not take option(s) {', '.join(sorted(options))}; "
            f"its options are: {', '.join(known) or 'none'}"
        ) from None


def downloads_disabled() -> bool:
    """Whether ``$BIOPLAUSIBLE_OFFLINE`` forbids all downloads."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def download_file(url: str, dest: Path, timeout: float = DOWNLOAD_TIMEOUT_S) -> None:
    """Download ``url`` to ``dest`` atomically: a temporary file in the same folder, renamed when complete.

    An interrupted download therefore never leaves a truncated file under the final name.

    Raises:
        OSError: On any network or file-system failure (``urllib.error.URLError`` is an ``OSError``).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    logger.info("downloading %s to %s", url, dest)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            shutil.copyfileobj(response, out)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def missing_files_error(
    dataset: str, directory: Path, files: Sequence[str], reason: str, source: str | None = None
) -> DataError:
    """The error for absent dataset files: what to put where, and how to point the library at it."""
    where = f" (from {source})" if source else ""
    return DataError(
        f"{dataset} files not found ({reason}). Put {', '.join(files)}{where} in {directory}, "
        f"or pass --data-dir / set ${DATA_ENV} to a folder that has them in a '{directory.name}' subfolder"
    )


def fetch_or_explain(
    dataset: str, directory: Path, files: Sequence[str], download: bool, fetch: Callable[[], None], source: str
) -> None:
    """Run ``fetch`` to download missing files if allowed; otherwise, or if it fails, raise a helpful DataError.

    Args:
        dataset: Dataset name, for the message.
        directory: Where the files are expected.
        files: The expected file names.
        download: The caller's ``download`` flag.
        fetch: Downloads the files into ``directory``.
        source: Where the files come from, for the message.
    """
    if not download:
        raise missing_files_error(dataset, directory, files, "download=False", source)
    if downloads_disabled():
        raise missing_files_error(dataset, directory, files, f"downloads disabled by ${OFFLINE_ENV}", source)
    try:
        fetch()
    except OSError as exc:
        raise missing_files_error(dataset, directory, files, f"download failed: {exc}", source) from exc
