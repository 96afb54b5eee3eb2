"""Tests for bioplausible.data: parsing, normalisation, error messages, splits. Never touches the network."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from bioplausible.data import Dataset, load_dataset, resolve_data_dir
from bioplausible.data import base as data_base
from bioplausible.data import cifar10 as cifar_module
from bioplausible.data import idx as idx_module
from bioplausible.errors import ConfigError, DataError, UnknownNameError

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
IDX_NAMES = idx_module.FILES


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """No downloads, no user data folder, and a throwaway cache folder."""
    monkeypatch.setenv("BIOPLAUSIBLE_OFFLINE", "1")
    monkeypatch.delenv("BIOPLAUSIBLE_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


# ---------------------------------------------------------------- helpers that write small dataset files


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes: magic 0x0000 08 <ndim>, big-endian dims, then the data."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_set(folder: Path, n_train: int = 12, n_test: int = 5, gz: bool = True, seed: int = 0) -> dict:
    """The four MNIST-style files with random pixels; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in arrays.items():
        raw = idx_bytes(array)
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / stem).write_bytes(raw)
    return arrays


def cifar_batch(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": b"test",
        b"labels": [int(v) for v in np.arange(n) % 10],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img{i}.png".encode() for i in range(n)],
    }


def write_cifar(folder: Path, n_batches: int = 1, n: int = 10, meta: bool = True) -> dict:
    """A cifar-10-batches-py folder with ``n_batches`` training batches of ``n`` images and a test batch."""
    folder.mkdir(parents=True, exist_ok=True)
    batches = {f"data_batch_{i}": cifar_batch(n, seed=i) for i in range(1, n_batches + 1)}
    batches["test_batch"] = cifar_batch(n // 2, seed=99)
    for name, batch in batches.items():
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    if meta:
        names = [f"c{i}".encode() for i in range(10)]
        (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))
    return batches


def load_quiet(*args, **kwargs) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_dataset(*args, **kwargs)


# ---------------------------------------------------------------- MNIST / Fashion-MNIST


def test_mnist_parses_and_normalises(tmp_path):
    arrays = write_idx_set(tmp_path / "mnist")
    data = load_dataset("mnist", tmp_path, expected_counts=None)
    assert data.train_x.shape == (12, 1, 28, 28) and data.test_x.shape == (5, 1, 28, 28)
    assert data.train_x.dtype == torch.float32 and data.train_y.dtype == torch.int64
    expected = (arrays["train-images-idx3-ubyte"].astype(np.float32) / 255 - 0.1307) / 0.3081
    np.testing.assert_allclose(data.train_x[:, 0].numpy(), expected, rtol=1e-5, atol=1e-5)
    assert data.train_y.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert data.num_classes == 10 and data.input_shape == (1, 28, 28)
    assert data.source == {
        "layout": "idx",
        "path": str(tmp_path / "mnist"),
        "description": "MNIST",
        "num_train": 12,
        "num_test": 5,
        "cache": None,
        "files": list(IDX_NAMES),
    }


def test_fashion_mnist_uses_its_own_statistics(tmp_path):
    arrays = write_idx_set(tmp_path / "fashion-mnist")
    data = load_dataset("fashion-mnist", tmp_path, expected_counts=None)
    expected = (arrays["t10k-images-idx3-ubyte"].astype(np.float32) / 255 - 0.2860) / 0.3530
    np.testing.assert_allclose(data.test_x[:, 0].numpy(), expected, rtol=1e-5, atol=1e-5)
    assert data.classes[0] == "T-shirt/top"


@pytest.mark.parametrize("subdir", ["mnist", "MNIST/raw", "."])
@pytest.mark.parametrize("gz", [True, False])
def test_mnist_accepts_alternative_layouts(tmp_path, subdir, gz):
    write_idx_set(tmp_path / subdir, gz=gz)
    assert len(load_dataset("mnist", tmp_path, expected_counts=None).train_y) == 12


def test_full_counts_are_checked_by_default(tmp_path):
    write_idx_set(tmp_path / "mnist")
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz.*expected 60000"):
        load_dataset("mnist", tmp_path)


def test_wrong_magic_names_the_file(tmp_path):
    write_idx_set(tmp_path / "mnist")
    bad = tmp_path / "mnist" / "train-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(bad.read_bytes()))
    raw[3] = 3  # 2049 -> 2051
    bad.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz.*magic number 2051") as err:
        load_dataset("mnist", tmp_path, expected_counts=None)
    assert "Delete it" in str(err.value)


def test_truncated_file_names_the_file(tmp_path):
    write_idx_set(tmp_path / "mnist", gz=False)
    bad = tmp_path / "mnist" / "t10k-images-idx3-ubyte"
    bad.write_bytes(bad.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.*data bytes"):
        load_dataset("mnist", tmp_path, expected_counts=None)


def test_truncated_gzip_names_the_file(tmp_path):
    write_idx_set(tmp_path / "mnist")
    bad = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz.*decompress"):
        load_dataset("mnist", tmp_path, expected_counts=None)


def test_label_count_must_match_images(tmp_path):
    write_idx_set(tmp_path / "mnist")
    labels = tmp_path / "mnist" / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(idx_bytes(np.zeros(11, dtype=np.uint8))))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz.*11 items, expected 12"):
        load_dataset("mnist", tmp_path, expected_counts=None)


@pytest.mark.parametrize("offline", [True, False])
def test_missing_files_list_names_and_folder(tmp_path, monkeypatch, offline):
    if not offline:
        monkeypatch.delenv("BIOPLAUSIBLE_OFFLINE")
    with pytest.raises(DataError) as err:
        load_dataset("mnist", tmp_path, download=offline)  # offline: download=True but forbidden by the env
    message = str(err.value)
    for name in IDX_NAMES:
        assert name in message
    assert str(tmp_path / "mnist") in message and "--data-dir" in message and "$BIOPLAUSIBLE_DATA" in message
    assert ("BIOPLAUSIBLE_OFFLINE" in message) == offline


def test_download_writes_files_then_loads(tmp_path, monkeypatch):
    source = tmp_path / "source"
    write_idx_set(source)
    fetched = []

    def fake_download(url: str, dest: Path, timeout: float = 15.0) -> None:
        fetched.append(url)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes((source / url.rsplit("/", 1)[1]).read_bytes())

    monkeypatch.delenv("BIOPLAUSIBLE_OFFLINE")
    monkeypatch.setattr(idx_module, "download_file", fake_download)
    root = tmp_path / "root"
    root.mkdir()
    data = load_dataset("mnist", root, expected_counts=None)
    assert len(data.train_y) == 12 and sorted(p.name for p in (root / "mnist").iterdir()) == sorted(IDX_NAMES)
    assert fetched == [idx_module.MNIST_URL + name for name in IDX_NAMES]


def test_failed_download_reports_reason(tmp_path, monkeypatch):
    def failing_download(url: str, dest: Path, timeout: float = 15.0) -> None:
        raise OSError("no route to host")

    monkeypatch.delenv("BIOPLAUSIBLE_OFFLINE")
    monkeypatch.setattr(idx_module, "download_file", failing_download)
    with pytest.raises(DataError, match=r"download failed: no route to host.*train-images-idx3-ubyte.gz"):
        load_dataset("fashion-mnist", tmp_path)


def test_download_file_is_atomic(tmp_path):
    source = tmp_path / "payload.bin"
    source.write_bytes(b"x" * 1000)
    dest = tmp_path / "out" / "payload.bin"
    data_base.download_file(source.as_uri(), dest)  # a file:// URL: urllib without the network
    assert dest.read_bytes() == b"x" * 1000
    with pytest.raises(OSError):
        data_base.download_file((tmp_path / "absent").as_uri(), tmp_path / "out" / "absent")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["payload.bin"]  # no partial file left


# ---------------------------------------------------------------- CIFAR-10


def test_cifar_one_batch_warns_and_normalises_per_channel(tmp_path):
    batches = write_cifar(tmp_path / "cifar-10-batches-py", n_batches=1)
    with pytest.warns(UserWarning, match=r"found 1 of 5"):
        data = load_dataset("cifar10", tmp_path)
    assert data.train_x.shape == (10, 3, 32, 32) and data.test_x.shape == (5, 3, 32, 32)
    raw = batches["data_batch_1"][b"data"].reshape(-1, 3, 32, 32).astype(np.float32) / 255
    mean = np.array(cifar_module.MEAN, dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.array(cifar_module.STD, dtype=np.float32).reshape(1, 3, 1, 1)
    np.testing.assert_allclose(data.train_x.numpy(), (raw - mean) / std, rtol=1e-5, atol=1e-5)
    assert data.train_y.tolist() == batches["data_batch_1"][b"labels"]
    assert data.classes == [f"c{i}" for i in range(10)]


def test_cifar_all_batches_no_warning_alternative_folder(tmp_path):
    write_cifar(tmp_path / "cifar10" / "cifar-10-batches-py", n_batches=5, meta=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_dataset("cifar10", tmp_path)
    assert len(data.train_y) == 50 and data.classes[0] == "airplane"


def test_cifar_accepts_numpy1_pickles(tmp_path):
    """The official files name numpy 1's ``numpy.core.multiarray``, which numpy 2 calls ``numpy._core``."""
    batches = write_cifar(tmp_path / "cifar-10-batches-py")
    path = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    pickled = pickle.dumps(batches["data_batch_1"], protocol=2)
    old_style = pickled.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in old_style
    path.write_bytes(old_style)
    data = load_quiet("cifar10", tmp_path)
    assert data.train_y.tolist() == batches["data_batch_1"][b"labels"]


def test_cifar_missing_test_batch_lists_expected_files(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-py")
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(DataError, match=r"test_batch") as err:
        load_dataset("cifar10", tmp_path, download=False)
    assert "data_batch_1" in str(err.value) and "--data-dir" in str(err.value)


def test_cifar_corrupt_pickle_names_the_file(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-py")
    bad = tmp_path / "cifar-10-batches-py" / "test_batch"
    bad.write_bytes(bad.read_bytes()[:500])
    with pytest.raises(DataError, match=r"test_batch is corrupt"):
        load_quiet("cifar10", tmp_path)


def test_cifar_pickle_cannot_run_code(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-py")
    evil = pickle.dumps(os.getcwd)  # any global outside the allow-list
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(evil)
    with pytest.raises(DataError, match=r"data_batch_1.*not allowed"):
        load_quiet("cifar10", tmp_path)


def cifar_tar(tmp_path: Path, extra_member: str | None = None) -> bytes:
    write_cifar(tmp_path / "tarsrc" / "cifar-10-batches-py", n_batches=2)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(tmp_path / "tarsrc" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
        if extra_member:
            info = tarfile.TarInfo(extra_member)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    return buffer.getvalue()


@pytest.mark.parametrize("unsafe", [False, True])
def test_cifar_download_extracts_safely(tmp_path, monkeypatch, unsafe):
    archive = cifar_tar(tmp_path, "../escape.txt" if unsafe else None)
    root = tmp_path / "root"
    root.mkdir()
    monkeypatch.delenv("BIOPLAUSIBLE_OFFLINE")
    monkeypatch.setattr(cifar_module, "download_file", lambda url, dest, timeout=15.0: dest.write_bytes(archive))
    if unsafe:
        with pytest.raises(DataError, match=r"unsafe archive member"):
            load_quiet("cifar10", root)
        assert not (tmp_path / "escape.txt").exists()
    else:
        assert len(load_quiet("cifar10", root).train_y) == 20
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []  # temporary files cleaned up


# ---------------------------------------------------------------- names, folders, options


def test_unknown_name_lists_known_datasets(tmp_path):
    with pytest.raises(UnknownNameError, match=r"digits"):
        load_dataset("mnsit", tmp_path)


def test_unknown_option_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"n_train"):
        load_dataset("synthetic", tmp_path, n_trian=10)


def test_missing_data_dir(tmp_path, monkeypatch):
    with pytest.raises(DataError, match=r"does not exist"):
        resolve_data_dir(tmp_path / "nope")
    with pytest.raises(DataError, match=r"does not exist"):
        load_dataset("mnist", tmp_path / "nope")
    monkeypatch.setenv("BIOPLAUSIBLE_DATA", str(tmp_path / "nope"))
    with pytest.raises(DataError, match=r"BIOPLAUSIBLE_DATA"):
        resolve_data_dir()


def test_data_dir_precedence(tmp_path, monkeypatch):
    assert resolve_data_dir() == tmp_path / "cache" / "bioplausible"
    assert resolve_data_dir().is_dir()
    monkeypatch.setenv("BIOPLAUSIBLE_DATA", str(tmp_path))
    assert resolve_data_dir() == tmp_path
    assert resolve_data_dir(tmp_path / "cache") == tmp_path / "cache"


# ---------------------------------------------------------------- digits and synthetic


def test_digits_shapes_split_and_determinism():
    data = load_dataset("digits")
    assert data.train_x.shape == (1437, 1, 8, 8) and data.test_x.shape == (360, 1, 8, 8)
    assert data.train_x.dtype == torch.float32 and data.train_y.dtype == torch.int64
    assert abs(data.train_x.mean().item()) < 1e-4 and abs(data.train_x.std().item() - 1) < 1e-3
    assert torch.bincount(data.test_y).min() >= 35  # stratified: every class ~36 times
    again = load_dataset("digits")
    assert torch.equal(data.train_x, again.train_x) and torch.equal(data.test_y, again.test_y)


def test_synthetic_is_deterministic_and_configurable():
    a, b = load_dataset("synthetic"), load_dataset("synthetic")
    assert a.train_x.shape == (256, 20) and a.test_x.shape == (128, 20) and a.num_classes == 4
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert not torch.equal(a.train_x, load_dataset("synthetic", seed=1).train_x)
    small = load_dataset("synthetic", n_train=30, n_test=9, num_features=5, num_classes=3)
    assert small.input_shape == (5,) and set(small.train_y.tolist()) == {0, 1, 2}
    with pytest.raises(ConfigError, match=r"num_classes"):
        load_dataset("synthetic", num_classes=1)


# ---------------------------------------------------------------- Dataset methods


def test_split_validation_sizes_determinism_and_disjointness():
    data = load_dataset("synthetic")
    reduced, (val_x, val_y) = data.split_validation(0.25, seed=3)
    assert len(val_y) == 64 and len(reduced.train_y) == 192 and len(reduced.test_y) == 128
    assert len(data.train_y) == 256  # the original is untouched
    again, (val_x2, _) = data.split_validation(0.25, seed=3)
    assert torch.equal(val_x, val_x2) and torch.equal(reduced.train_x, again.train_x)
    _, (val_other, _) = data.split_validation(0.25, seed=4)
    assert not torch.equal(val_x, val_other)
    rows = {tuple(r.tolist()) for r in torch.cat([reduced.train_x, val_x])}
    assert len(rows) == 256  # disjoint, and together the whole training set


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5, 0.0001])
def test_split_validation_rejects_bad_fraction(fraction):
    with pytest.raises(ConfigError):
        load_dataset("synthetic").split_validation(fraction, seed=0)


def test_to_returns_moved_copy_and_short_repr():
    data = load_dataset("synthetic")
    moved = data.to("cpu")
    assert moved is not data and torch.equal(moved.train_x, data.train_x) and moved.name == "synthetic"
    assert "train=(256, 20)" in repr(data) and len(repr(data)) < 200


# ---------------------------------------------------------------- the real files, when this machine has them


@pytest.mark.skipif(not (REAL_DATA / "mnist").is_dir(), reason="real MNIST not in ../shared/data")
def test_real_mnist():
    data = load_dataset("mnist", REAL_DATA, download=False)
    assert data.train_x.shape == (60000, 1, 28, 28) and data.test_x.shape == (10000, 1, 28, 28)
    assert torch.bincount(data.train_y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert abs(data.train_x.mean().item()) < 1e-3 and abs(data.train_x.std().item() - 1) < 1e-3


@pytest.mark.skipif(not (REAL_DATA / "cifar10-subset").is_dir(), reason="real CIFAR-10 subset not in ../shared/data")
def test_real_cifar10_subset():
    # Not REAL_DATA itself: there the full JPEG folder wins over the subset (and takes ~15 s to decode the first time).
    with pytest.warns(UserWarning, match=r"found 1 of 5"):
        data = load_dataset("cifar10", REAL_DATA / "cifar10-subset", download=False)
    assert data.train_x.shape == (4000, 3, 32, 32) and data.test_x.shape == (1000, 3, 32, 32)
    assert data.classes[0] == "airplane"
    assert data.train_x.mean(dim=(0, 2, 3)).abs().max() < 0.05


def test_train_batches_can_name_each_examples_index():
    """Rules with per-example state (EP's persistent states) get each batch's dataset indices."""
    data = load_dataset("digits")
    plain = list(data.train_batches(100, torch.Generator().manual_seed(3)))
    indexed = list(data.train_batches(100, torch.Generator().manual_seed(3), with_index=True))
    assert len(plain) == len(indexed)
    seen = []
    for (x, y), (xi, yi, index) in zip(plain, indexed):
        torch.testing.assert_close(xi, x)  # the same order either way
        torch.testing.assert_close(data.train_x[index], x)
        assert torch.equal(yi, y)
        assert torch.equal(data.train_y[index], y)
        seen.append(index)
    assert torch.equal(torch.cat(seen).sort().values, torch.arange(data.num_train))


# Each registered dataset and the test file that loads it from data in the format it reads: a dataset added
# without a loading test fails here (the next test), so none ships untested.
DATASET_TESTS = {
    "cifar10": ("test_data.py", "test_cifar_all_batches_no_warning_alternative_folder"),
    "digits": ("test_data.py", "test_digits_shapes_split_and_determinism"),
    "fashion-mnist": ("test_data.py", "test_fashion_mnist_uses_its_own_statistics"),
    "imagefolder": ("test_data_imagefolder.py", "test_imagefolder_normalises_with_the_training_split"),
    "imagenet": ("test_data_streaming.py", "test_imagenet_classes_counts_and_shapes"),
    "mnist": ("test_data.py", "test_mnist_parses_and_normalises"),
    "synthetic": ("test_data.py", "test_synthetic_is_deterministic_and_configurable"),
}


def test_every_registered_dataset_has_a_loading_test():
    from bioplausible.registry import DATASETS

    assert set(DATASETS.list()) == set(DATASET_TESTS), "add the new dataset's loading test to DATASET_TESTS"
    here = Path(__file__).parent
    for name, (file, test) in DATASET_TESTS.items():
        text = (here / file).read_text()
        assert f"def {test}(" in text, (name, file, test)
