"""Image-folder datasets held in memory (``imagefolder``, ``cifar10`` from an image folder) and their cache."""

from __future__ import annotations

import json
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bioplausible.data import cifar10 as cifar_module
from bioplausible.data import imagefolder as folder_module
from bioplausible.data import load_dataset
from bioplausible.data.imagefolder import channel_stats, jpeg_quality, read_image_folder
from bioplausible.errors import DataError

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SOURCE_KEYS = {"layout", "path", "description", "num_train", "num_test", "cache"}


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """No downloads, no user data folder, and a cache folder of this test's own."""
    monkeypatch.setenv("BIOPLAUSIBLE_OFFLINE", "1")
    monkeypatch.delenv("BIOPLAUSIBLE_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def cache_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache" / "bioplausible" / "imagefolder").glob("*.pt"))


# ---------------------------------------------------------------- helpers that write small image folders


def write_image(path: Path, pixels: np.ndarray, **save_options) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, **save_options)


def write_folder(
    root: Path,
    classes=("dog", "cat"),
    counts=(3, 2),
    size: int = 8,
    mode: str = "RGB",
    suffix: str = ".png",
    test_name: str = "test",
    seed: int = 0,
    **save_options,
) -> dict[tuple[str, str], list[np.ndarray]]:
    """``root/{train,test}/<class>/<k>.png`` with random pixels; returns each (split, class)'s images in file order."""
    rng = np.random.default_rng(seed)
    shape = (size, size) if mode == "L" else (size, size, 3)
    written = {}
    for split, n in zip(("train", test_name), counts):
        for name in classes:
            images = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]
            for k, pixels in enumerate(images):
                write_image(root / split / name / f"{k:02d}{suffix}", pixels, **save_options)
            written[(split, name)] = images
    return written


def as_chw(images: list[np.ndarray]) -> torch.Tensor:
    x = torch.from_numpy(np.stack(images))
    return x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)


# ---------------------------------------------------------------- reading a folder


def test_pixels_labels_and_order(tmp_path):
    written = write_folder(tmp_path, classes=("dog", "cat"), counts=(3, 2))
    (tmp_path / "train" / "dog" / "notes.txt").write_text("not an image")  # ignored: not an image extension
    (tmp_path / "train" / "cat" / ".hidden.png").write_bytes(b"junk")  # ignored: hidden
    images = read_image_folder(tmp_path)
    assert images.classes == ["cat", "dog"]  # sorted folder names
    assert images.train_x.dtype == torch.uint8 and images.train_x.shape == (6, 3, 8, 8)
    assert images.test_x.shape == (4, 3, 8, 8)
    assert images.train_y.tolist() == [0, 0, 0, 1, 1, 1] and images.test_y.tolist() == [0, 0, 1, 1]
    expected = as_chw(written[("train", "cat")] + written[("train", "dog")])
    assert torch.equal(images.train_x, expected)  # PNG is lossless: the exact pixels, in file-name order
    assert torch.equal(images.test_x, as_chw(written[("test", "cat")] + written[("test", "dog")]))
    assert images.formats == ["PNG"] and images.jpeg_quality is None and images.test_split == "test"


def test_given_class_order_sets_the_labels(tmp_path):
    write_folder(tmp_path, classes=("a", "b", "c"), counts=(1, 1))
    images = read_image_folder(tmp_path, classes=["c", "a", "b"])
    assert images.classes == ["c", "a", "b"]
    # Files follow the given order, c (label 0), a (1), b (2): a's image comes second, not first as when sorted.
    direct = read_image_folder(tmp_path)
    assert torch.equal(images.train_x[1], direct.train_x[0]) and images.train_y.tolist() == [0, 1, 2]


def test_file_order_is_by_name_and_nested_folders_count(tmp_path):
    """Files sort by their path inside the class folder (plain string order); Tiny-ImageNet's images/ works."""
    rng = np.random.default_rng(1)
    pixels = {name: rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for name in ("10.png", "2.png", "images/1.png")}
    for name, image in pixels.items():
        write_image(tmp_path / "train" / "n01" / name, image)
    write_image(tmp_path / "val" / "n01" / "x.png", pixels["2.png"])
    images = read_image_folder(tmp_path)
    assert images.test_split == "val"  # val/ serves as the test split when there is no test/
    assert torch.equal(images.train_x, as_chw([pixels["10.png"], pixels["2.png"], pixels["images/1.png"]]))


def test_greyscale_folder_has_one_channel_mixed_has_three(tmp_path):
    write_folder(tmp_path / "grey", mode="L")
    assert read_image_folder(tmp_path / "grey").train_x.shape[1] == 1
    written = write_folder(tmp_path / "mixed", mode="L")
    write_image(tmp_path / "mixed" / "train" / "dog" / "99.png", np.full((8, 8, 3), 7, dtype=np.uint8))
    mixed = read_image_folder(tmp_path / "mixed")
    assert mixed.train_x.shape == (7, 3, 8, 8)
    grey = torch.from_numpy(written[("train", "cat")][0])
    assert all(torch.equal(mixed.train_x[0, c], grey) for c in range(3))  # a grey image is copied to R, G and B


def test_16_bit_greyscale_is_scaled_to_8_bits_not_clipped_to_white(tmp_path):
    """Pillow's convert("RGB") clips 16-bit values above 255: a 16-bit PNG (microscopy, medical) came out nearly
    all 255, and every rule sat at chance on blank images without a word."""
    write_folder(tmp_path, mode="L")
    deep = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)  # 0 … 63,000
    write_image(tmp_path / "train" / "cat" / "09.png", deep)
    images = read_image_folder(tmp_path)
    assert Image.open(tmp_path / "train" / "cat" / "09.png").mode.startswith("I;16")
    assert images.train_x.shape[1] == 1  # still a greyscale folder
    last_cat = images.train_x[images.train_y == images.classes.index("cat")][-1, 0]
    assert torch.equal(last_cat, torch.from_numpy(np.round(deep / 257).astype(np.uint8)))


def test_jpeg_quality_is_read_from_the_tables(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    for quality in (75, 90):
        write_image(tmp_path / f"q{quality}.jpg", pixels, quality=quality)
        assert jpeg_quality(tmp_path / f"q{quality}.jpg") == quality
    write_image(tmp_path / "x.png", pixels)
    assert jpeg_quality(tmp_path / "x.png") is None


# ---------------------------------------------------------------- the generic dataset


def test_imagefolder_normalises_with_the_training_split(tmp_path):
    write_folder(tmp_path, counts=(4, 3), size=32, seed=3)
    data = load_dataset("imagefolder", tmp_path)
    raw = read_image_folder(tmp_path)
    train = raw.train_x.double() / 255
    mean, std = train.mean(dim=(0, 2, 3)), train.std(dim=(0, 2, 3), unbiased=False)
    torch.testing.assert_close(torch.tensor(channel_stats(raw.train_x)[0], dtype=torch.float64), mean)
    torch.testing.assert_close(torch.tensor(channel_stats(raw.train_x)[1], dtype=torch.float64), std)
    assert data.train_x.dtype == torch.float32 and data.input_shape == (3, 32, 32)
    torch.testing.assert_close(data.train_x.double().mean(dim=(0, 2, 3)), torch.zeros(3, dtype=torch.float64))
    expected_test = (raw.test_x.double() / 255 - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    torch.testing.assert_close(data.test_x.double(), expected_test, atol=1e-5, rtol=1e-5)  # the train statistics
    assert data.classes == ["cat", "dog"] and data.num_classes == 2
    assert data.augment is not None and data.augment.padding == 4  # CIFAR's crop at 32 px


@pytest.mark.parametrize(("size", "mode", "padding"), [(64, "RGB", 8), (8, "RGB", None), (32, "L", None)])
def test_imagefolder_augmentation_by_size_and_colour(tmp_path, size, mode, padding):
    write_folder(tmp_path, counts=(1, 1), size=size, mode=mode)
    augment = load_dataset("imagefolder", tmp_path).augment
    assert (augment.padding if augment else None) == padding


def test_imagefolder_records_its_source(tmp_path):
    write_folder(tmp_path, suffix=".jpg", quality=75)
    data = load_dataset("imagefolder", tmp_path)
    source = data.source
    assert set(source) >= SOURCE_KEYS
    assert source["layout"] == "image-folder" and source["path"] == str(tmp_path)
    assert source["description"] == f"image folder {tmp_path.name} (JPEG q75)"
    assert (source["num_train"], source["num_test"]) == (6, 4)
    assert Path(source["cache"]) == cache_files(tmp_path)[0]


@pytest.mark.parametrize(("dataset", "augment", "recorded"), [
    ("imagefolder", True, "RandomCropFlip(padding=4)"),
    ("imagefolder", False, "none"),  # --no-augment
    ("digits", True, "none"),  # on by default, but the digits have no standard augmentation: said, not implied
])  # fmt: skip
def test_a_run_records_the_augmentation_in_effect(tmp_path, dataset, augment, recorded):
    from bioplausible.config import TrainConfig
    from bioplausible.engine import fit

    write_folder(tmp_path / "images", counts=(2, 2), size=32)
    config = TrainConfig(
        dataset=dataset, data_dir=str(tmp_path / "images"), arch="mlp", arch_options={"depth": 1, "width": 8},
        epochs=1, max_batches=1, augment=augment, probe_every=0, progress=False, out=str(tmp_path / "run"),
    )  # fmt: skip
    out = fit(config, quiet=True)
    assert json.loads((out / "config.json").read_text())["augmentation"] == recorded


class Shift:
    def __call__(self, x):
        return x


@pytest.mark.parametrize(("augment", "recorded"), [
    (Shift(), f"{__name__}.Shift"),  # no repr of its own: its class, not an address that differs between runs
    (lambda x: x, f"{__name__}.<lambda>"),
])  # fmt: skip
def test_a_users_augmentation_is_recorded_by_name(augment, recorded):
    from types import SimpleNamespace

    from bioplausible.engine import describe_augmentation

    assert describe_augmentation(SimpleNamespace(augment=augment)) == recorded


def test_the_record_fingerprints_the_decoded_pixels_and_names_the_decoder(tmp_path):
    """Same files, same decoder: the same fingerprint, read fresh or from the cache; other pixels: another."""
    write_folder(tmp_path, suffix=".jpg", quality=75)
    fresh = load_dataset("imagefolder", tmp_path).source
    cached = load_dataset("imagefolder", tmp_path).source
    assert fresh["pixels_sample_sha256"] == cached["pixels_sample_sha256"]
    assert fresh["decoder"]["pillow"] and fresh["decoder"]["libjpeg"]
    images = read_image_folder(tmp_path)
    changed = images.train_x.clone()
    changed[0, 0, 0, 0] ^= 1
    assert folder_module.sample_digest(changed, images.test_x) != fresh["pixels_sample_sha256"]
    assert folder_module.sample_digest(images.train_x, images.test_x) == fresh["pixels_sample_sha256"]


def test_imagefolder_without_a_folder_says_to_pass_data_dir(tmp_path):
    with pytest.raises(DataError, match=r"is not an image folder.*train/<class>/<image>"):
        load_dataset("imagefolder")  # the cache folder, which has no train/


# ---------------------------------------------------------------- the cache


def test_cache_is_written_then_read_without_decoding(tmp_path, monkeypatch):
    write_folder(tmp_path / "data")
    first = load_dataset("imagefolder", tmp_path / "data")
    assert len(cache_files(tmp_path)) == 1

    def fail(listing):
        raise AssertionError("decoded although the cache is valid")

    monkeypatch.setattr(folder_module, "_decode", fail)
    second = load_dataset("imagefolder", tmp_path / "data")
    assert torch.equal(second.train_x, first.train_x) and torch.equal(second.test_y, first.test_y)
    assert second.source == first.source


@pytest.mark.parametrize("change", ["add", "remove", "rewrite"])
def test_changed_folder_is_read_again_and_replaces_its_cache(tmp_path, change):
    root = tmp_path / "data"
    write_folder(root, suffix=".bmp")  # uncompressed: a rewritten image keeps its file size
    before = read_image_folder(root)
    old_cache = cache_files(tmp_path)
    target = root / "train" / "dog" / "00.bmp"
    if change == "add":
        write_image(root / "train" / "dog" / "zz.bmp", np.zeros((8, 8, 3), dtype=np.uint8))
    elif change == "remove":
        target.unlink()
    else:  # same name and size, other pixels: caught by the modification time
        stat = target.stat()
        write_image(target, np.zeros((8, 8, 3), dtype=np.uint8))
        os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        assert target.stat().st_size == stat.st_size
    after = read_image_folder(root)
    assert after.checksum != before.checksum
    assert len(after.train_y) == {"add": 7, "remove": 5, "rewrite": 6}[change]
    if change == "rewrite":
        assert int(after.train_x[3].sum()) == 0  # the new pixels, not the cached ones
    assert cache_files(tmp_path) == [after.cache] and after.cache not in old_cache  # the stale file is gone


def test_damaged_cache_is_decoded_again(tmp_path):
    write_folder(tmp_path / "data")
    first = read_image_folder(tmp_path / "data")
    first.cache.write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="ignoring the unreadable image cache"):
        again = read_image_folder(tmp_path / "data")
    assert torch.equal(again.train_x, first.train_x)
    assert torch.load(again.cache, weights_only=True)["checksum"] == first.checksum  # rewritten


# ---------------------------------------------------------------- bad input: one DataError naming the culprit


def _no_split(root: Path) -> str:
    write_folder(root)
    for path in sorted((root / "test").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (root / "test").rmdir()
    return str(root)


def _loose_images(root: Path) -> str:
    write_folder(root)
    for path in list((root / "test").rglob("*.png")):
        path.rename(root / "test" / f"{path.parent.name}-{path.name}")
    for folder in (root / "test").iterdir():
        if folder.is_dir():
            folder.rmdir()
    return f"{root / 'test'} has no class folders (its images must be sorted"


def _empty_class(root: Path) -> str:
    write_folder(root)
    (root / "train" / "bird").mkdir()
    (root / "test" / "bird").mkdir()
    (root / "test" / "bird" / "readme.txt").write_text("no images here")
    return f"class folder {root / 'train' / 'bird'} has no images"


def _corrupt(root: Path) -> str:
    write_folder(root)
    (root / "train" / "dog" / "01.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return f"{root / 'train' / 'dog' / '01.png'} is not a readable image"


def _truncated_jpeg(root: Path) -> str:
    write_folder(root, suffix=".jpg")
    path = root / "test" / "cat" / "01.jpg"
    path.write_bytes(path.read_bytes()[:-40])
    return f"{path} is not a readable image"


def _float_image(root: Path) -> str:
    write_folder(root, mode="L")
    write_image(root / "train" / "cat" / "09.tif", np.full((8, 8), 0.5, dtype=np.float32))
    return f"{root / 'train' / 'cat' / '09.tif'} is a floating-point image (Pillow mode F)"


def _mixed_sizes(root: Path) -> str:
    write_folder(root)
    write_image(root / "test" / "dog" / "05.png", np.zeros((8, 9, 3), dtype=np.uint8))
    return f"{root / 'test' / 'dog' / '05.png'} is 9x8 pixels but"


def _class_only_in_train(root: Path) -> str:
    write_folder(root)
    write_image(root / "train" / "emu" / "0.png", np.zeros((8, 8, 3), dtype=np.uint8))
    return f"class folder {root / 'train' / 'emu'} has no counterpart {root / 'test' / 'emu'}"


def _class_only_in_test(root: Path) -> str:
    write_folder(root)
    write_image(root / "test" / "emu" / "0.png", np.zeros((8, 8, 3), dtype=np.uint8))
    return f"class folder {root / 'test' / 'emu'} has no counterpart {root / 'train' / 'emu'}"


@pytest.mark.parametrize(
    "make_bad",
    [_no_split, _loose_images, _empty_class, _corrupt, _truncated_jpeg, _float_image, _mixed_sizes,
     _class_only_in_train, _class_only_in_test],
)  # fmt: skip
def test_bad_folder_is_one_data_error_naming_the_culprit(tmp_path, make_bad):
    root = tmp_path / "data"
    culprit = make_bad(root)
    with pytest.raises(DataError) as err:
        load_dataset("imagefolder", root)
    assert culprit in str(err.value)
    assert cache_files(tmp_path) == []  # nothing half-decoded was cached


# ---------------------------------------------------------------- cifar10 from an image folder


def write_cifar_folder(root: Path, counts=(2, 1), quality: int = 75) -> dict:
    return write_folder(root, classes=cifar_module.CLASSES, counts=counts, size=32, suffix=".jpg", quality=quality)


def write_cifar_pickles(folder: Path, n_batches: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, n_batches + 1)] + ["test_batch"]:
        batch = {b"labels": list(range(10)), b"data": rng.integers(0, 256, (10, 3072), dtype=np.uint8)}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))


def load_cifar(root: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # subset warnings
        return load_dataset("cifar10", root, download=False)


@pytest.mark.parametrize("where", ["cifar10-jpeg", "cifar10", "."])
def test_cifar10_reads_an_image_folder(tmp_path, where):
    write_cifar_folder(tmp_path / where)
    with pytest.warns(UserWarning, match=r"found 20 training and 10 test images of CIFAR-10's 50,000 and 10,000"):
        data = load_dataset("cifar10", tmp_path, download=False)
    assert data.train_x.shape == (20, 3, 32, 32) and data.test_x.shape == (10, 3, 32, 32)
    assert data.classes == cifar_module.CLASSES  # the official order
    assert data.train_y.tolist() == [c for c in range(10) for _ in range(2)]  # airplane 0 ... truck 9
    raw = read_image_folder(tmp_path / where, classes=cifar_module.CLASSES)
    mean = torch.tensor(cifar_module.MEAN).view(1, 3, 1, 1)
    std = torch.tensor(cifar_module.STD).view(1, 3, 1, 1)
    torch.testing.assert_close(data.train_x, (raw.train_x.float() / 255 - mean) / std)  # the fixed statistics
    assert data.augment is not None and data.augment.padding == 4
    source = data.source
    assert set(source) >= SOURCE_KEYS
    assert source["layout"] == "image-folder" and source["description"] == "CIFAR-10 (JPEG q75)"
    assert source["path"] == str(tmp_path / where) and (source["num_train"], source["num_test"]) == (20, 10)
    assert Path(source["cache"]).is_file()


def test_cifar10_png_folder_is_plain_cifar10(tmp_path):
    write_folder(tmp_path / "cifar10", classes=cifar_module.CLASSES, counts=(1, 1), size=32)
    assert load_cifar(tmp_path).source["description"] == "CIFAR-10"  # lossless: the official pixels


def test_cifar10_prefers_a_folder_to_a_pickle_subset_but_not_to_complete_pickles(tmp_path):
    write_cifar_folder(tmp_path / "cifar10-jpeg")
    write_cifar_pickles(tmp_path / "cifar10-subset" / "cifar-10-batches-py", n_batches=1)
    assert load_cifar(tmp_path).source["layout"] == "image-folder"
    write_cifar_pickles(tmp_path / "cifar-10-batches-py", n_batches=5)
    data = load_cifar(tmp_path)
    assert data.source["layout"] == "pickle" and data.source["description"] == "CIFAR-10"
    assert data.source["path"] == str(tmp_path / "cifar-10-batches-py") and data.source["num_train"] == 50
    assert data.source["files"] == [*cifar_module.TRAIN_FILES, cifar_module.TEST_FILE]


def test_cifar10_pickle_subset_records_its_source(tmp_path):
    write_cifar_pickles(tmp_path / "cifar-10-batches-py", n_batches=1)
    with pytest.warns(UserWarning, match="found 1 of 5"):
        source = load_dataset("cifar10", tmp_path).source
    assert source["layout"] == "pickle" and (source["num_train"], source["num_test"]) == (10, 10)
    assert source["cache"] is None and source["files"] == ["data_batch_1", "test_batch"]


def test_cifar10_folder_with_other_classes_or_sizes(tmp_path):
    write_folder(tmp_path / "a" / "cifar10", classes=("cat", "dog"), size=32)
    with pytest.raises(DataError, match=r"has the class folders cat, dog; this dataset needs exactly airplane"):
        load_cifar(tmp_path / "a")
    write_folder(tmp_path / "b" / "cifar10", classes=cifar_module.CLASSES, counts=(1, 1), size=8)
    with pytest.raises(DataError, match=r"shape \(3, 8, 8\).*CIFAR-10 images are 32x32 colour"):
        load_cifar(tmp_path / "b")


def test_every_in_memory_dataset_records_its_source(tmp_path):
    for name in ("digits", "synthetic"):
        source = load_dataset(name).source
        assert set(source) >= SOURCE_KEYS and source["num_train"] == len(load_dataset(name).train_y)


# ---------------------------------------------------------------- the real JPEG release, when this machine has it


@pytest.mark.skipif(
    not (REAL_DATA / "cifar10-jpeg").is_dir() or not (REAL_DATA / "cifar10-subset").is_dir(),
    reason="real CIFAR-10 JPEG folder and subset not in ../shared/data",
)
def test_real_jpegs_match_the_pickle_subset(tmp_path):
    """The first JPEGs of each class are the first pickle test images of that class, ~5.8/255 apart (q75 loss)."""
    per_class = 3
    for name in cifar_module.CLASSES:
        for split in ("train", "test"):
            folder = tmp_path / "jpeg" / split / name
            folder.mkdir(parents=True)
            for k in range(per_class):
                (folder / f"{k:04d}.jpg").symlink_to(REAL_DATA / "cifar10-jpeg" / split / name / f"{k:04d}.jpg")
    jpeg = read_image_folder(tmp_path / "jpeg", classes=cifar_module.CLASSES)
    assert jpeg.jpeg_quality == 75
    batch = cifar_module._unpickle(REAL_DATA / "cifar10-subset" / "cifar-10-batches-py" / "test_batch")
    pixels = np.asarray(batch[b"data"]).reshape(-1, 3, 32, 32)
    labels = np.asarray(batch[b"labels"])
    first = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(10)])
    diff = (torch.from_numpy(pixels[first]).float() - jpeg.test_x.float()).abs().mean().item()
    assert 3.0 < diff < 9.0, diff  # same images through JPEG; another image would differ by ~60
    assert jpeg.test_y.tolist() == labels[first].tolist()
