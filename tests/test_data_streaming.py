"""Tests for the batch augmentation, CIFAR-10's use of it, and the streamed image-folder dataset (``imagenet``).

The image folders are tiny fakes written with Pillow; nothing touches the network or real data.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_data import load_quiet, write_cifar  # tests/ is on sys.path under pytest's default import mode

from bioplausible.data import cifar10 as cifar_module
from bioplausible.data import imagenet as imagenet_module
from bioplausible.data import load_dataset
from bioplausible.data.augment import random_crop_flip
from bioplausible.errors import ConfigError, DataError

CLASSES = ("ant", "bee", "cat")
SIZES = ((40, 30), (50, 70), (33, 33), (64, 20))  # (width, height)
EXTENSIONS = (".JPEG", ".png", ".jpg", ".PNG")
SMALL = {"image_size": 32, "resize_size": 36}
MEAN = torch.tensor(imagenet_module.MEAN).view(1, 3, 1, 1)
STD = torch.tensor(imagenet_module.STD).view(1, 3, 1, 1)


# ---------------------------------------------------------------- helpers


def write_image_folders(base: Path, n_train: int = 4, n_val: int = 2, seed: int = 0) -> None:
    """``base/{train,val}/<class>/img<i><ext>``: random pixels of mixed sizes and formats, plus files to ignore."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for name in CLASSES:
            folder = base / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                w, h = SIZES[i % len(SIZES)]
                image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
                if i == 3:
                    image = image.convert("L")  # a grayscale file must come out as RGB
                image.save(folder / f"img{i}{EXTENSIONS[i % len(EXTENSIONS)]}")
            (folder / "notes.txt").write_text("not an image")
        (base / split / ".hidden").mkdir()


def load_small(root: Path, **options) -> imagenet_module.StreamingImageDataset:
    return load_dataset("imagenet", root, **{**SMALL, "num_workers": 0, **options})


@pytest.fixture
def image_root(tmp_path) -> Path:
    write_image_folders(tmp_path / "imagenet")
    return tmp_path


def epoch(data, seed: int, batch_size: int = 5, rank: int = 0, world_size: int = 1) -> list:
    return list(data.train_batches(batch_size, torch.Generator().manual_seed(seed), rank, world_size))


def stacked(batches: list) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


# ---------------------------------------------------------------- random_crop_flip


def crop_candidates(image: torch.Tensor, padding: int) -> list[torch.Tensor]:
    """Every crop and mirrored crop random_crop_flip may return for one (C, H, W) image."""
    _, h, w = image.shape
    padded = torch.nn.functional.pad(image, (padding,) * 4)
    crops = [padded[:, i : i + h, j : j + w] for i in range(2 * padding + 1) for j in range(2 * padding + 1)]
    return crops + [c.flip(-1) for c in crops]


def test_crop_flip_returns_one_of_the_allowed_crops():
    torch.manual_seed(0)
    x = torch.randn(16, 3, 8, 6)
    out = random_crop_flip(2)(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    for original, augmented in zip(x, out, strict=True):
        assert any(torch.equal(augmented, c) for c in crop_candidates(original, 2))


def test_crop_flip_without_padding_only_flips():
    torch.manual_seed(1)
    x = torch.randn(32, 2, 5, 7)
    out = random_crop_flip(0)(x)
    for original, augmented in zip(x, out, strict=True):
        assert torch.equal(augmented, original) or torch.equal(augmented, original.flip(-1))


def test_crop_flip_keeps_a_constant_image_constant_inside_its_crop():
    torch.manual_seed(2)
    pad = 3
    out = random_crop_flip(pad)(torch.full((64, 3, 10, 10), 2.5))
    assert set(out.unique().tolist()) <= {0.0, 2.5}
    inside = out == 2.5
    for mask in inside[:, 0]:
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        # The image part is one solid rectangle of at least (10 - pad) x (10 - pad) pixels.
        assert mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()
        assert len(rows) >= 10 - pad and len(cols) >= 10 - pad
    assert inside.all(1).equal(inside.any(1))  # channels agree
    assert (~inside).any()  # some sample was shifted into the padding


def test_crop_flip_is_reproducible_under_a_seed():
    x = torch.randn(20, 3, 8, 8)
    augment = random_crop_flip(4)
    torch.manual_seed(3)
    first = augment(x)
    torch.manual_seed(3)
    assert torch.equal(augment(x), first)
    assert not torch.equal(augment(x), first)


def test_crop_flip_mirrors_about_half_the_samples():
    torch.manual_seed(4)
    x = torch.arange(6.0).expand(4000, 1, 2, 6)  # every column differs, so a mirror is unmistakable
    flipped = (random_crop_flip(0)(x)[:, 0, 0, 0] == 5).float().mean().item()
    assert abs(flipped - 0.5) < 0.04


# ---------------------------------------------------------------- CIFAR-10 uses it


def test_cifar_augments_training_batches_but_not_sample(tmp_path):
    batches = write_cifar(tmp_path / "cifar-10-batches-py", n=10)
    data = load_quiet("cifar10", tmp_path)
    # The test split is normalised tensors like the training split (it once came back as raw uint8 numpy).
    raw = torch.from_numpy(batches["test_batch"][b"data"].reshape(-1, 3, 32, 32)).float() / 255
    mean, std = torch.tensor(cifar_module.MEAN).view(1, 3, 1, 1), torch.tensor(cifar_module.STD).view(1, 3, 1, 1)
    torch.testing.assert_close(data.test_x, (raw - mean) / std)
    assert data.test_y.dtype == torch.int64
    assert data.augment is not None
    assert data.to("cpu").augment is data.augment
    assert data.split_validation(0.2, seed=0)[0].augment is data.augment
    torch.manual_seed(0)
    x, y = next(data.train_batches(10, torch.Generator().manual_seed(0)))
    order = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    assert torch.equal(y, data.train_y[order])
    assert x.shape == (10, 3, 32, 32) and not torch.equal(x, data.train_x[order])
    sx, sy = data.sample(4)
    assert torch.equal(sx, data.train_x[:4]) and torch.equal(sy, data.train_y[:4])
    data.augment = None
    x, _ = next(data.train_batches(10, torch.Generator().manual_seed(0)))
    assert torch.equal(x, data.train_x[order])


# ---------------------------------------------------------------- imagenet: layout and interface


def test_imagenet_classes_counts_and_shapes(image_root):
    data = load_small(image_root)
    assert data.name == "imagenet" and data.classes == list(CLASSES) and data.num_classes == 3
    assert data.num_train == 12 and data.num_test == 6 and data.input_shape == (3, 32, 32)
    batches = epoch(data, seed=0)
    assert [tuple(x.shape) for x, _ in batches] == [(5, 3, 32, 32), (5, 3, 32, 32), (2, 3, 32, 32)]
    x, y = stacked(batches)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.bincount(y).tolist() == [4, 4, 4]
    test = list(data.test_batches(4))
    assert [len(y) for _, y in test] == [4, 2]
    assert torch.cat([y for _, y in test]).tolist() == [0, 0, 1, 1, 2, 2]  # class folder, then file name
    sx, sy = data.sample(3)
    assert sx.shape == (3, 3, 32, 32) and sy.tolist() == [0, 0, 1]
    assert torch.equal(sx, test[0][0][:3])
    assert len(data.sample(100)[1]) == 6  # at most the whole val split


def test_imagenet_accepts_train_and_val_directly_in_root(tmp_path):
    write_image_folders(tmp_path)
    data = load_small(tmp_path)
    assert data.num_train == 12 and data.num_test == 6


def test_imagenet_normalises_with_the_imagenet_statistics(tmp_path):
    write_image_folders(tmp_path / "imagenet", n_val=1)
    colour = (200, 100, 50)
    Image.new("RGB", (45, 60), colour).save(tmp_path / "imagenet" / "val" / "ant" / "img0.JPEG", quality=100)
    Image.new("RGB", (45, 60), colour).save(tmp_path / "imagenet" / "val" / "ant" / "img0.png")  # sorts after
    data = load_small(tmp_path)
    x, _ = data.sample(2)
    expected = (torch.tensor(colour).view(1, 3, 1, 1) / 255 - MEAN) / STD
    torch.testing.assert_close(x[1:2], expected.expand(1, 3, 32, 32), atol=1e-5, rtol=0)
    torch.testing.assert_close(x[0:1], expected.expand(1, 3, 32, 32), atol=0.1, rtol=0)  # JPEG is lossy
    lo, hi = (0 - MEAN) / STD, (1 - MEAN) / STD
    for batch, _ in [*data.test_batches(4), *epoch(data, seed=0)]:
        assert (batch >= lo - 1e-5).all() and (batch <= hi + 1e-5).all()
    train, _ = stacked(epoch(data, seed=0))
    assert train.mean().abs() < 0.6 and 0.5 < train.std() < 1.5  # random pixels: roughly standardised


def test_imagenet_same_seed_same_batches(image_root):
    data = load_small(image_root)
    a, b, c = epoch(data, seed=7), epoch(data, seed=7), epoch(data, seed=8)
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b, strict=True))
    assert not torch.equal(stacked(a)[0], stacked(c)[0])
    # The order is the generator's permutation, as for the in-memory datasets.
    order = torch.randperm(12, generator=torch.Generator().manual_seed(7))
    assert stacked(a)[1].tolist() == [i // 4 for i in order.tolist()]
    assert all(torch.equal(xa, xb) for (xa, _), (xb, _) in zip(data.test_batches(4), data.test_batches(4)))


def test_imagenet_workers_give_the_same_pixels_and_unwrap_errors(image_root):
    serial = load_small(image_root)
    parallel = load_small(image_root, num_workers=2)
    for (xa, ya), (xb, yb) in zip(epoch(serial, seed=3, batch_size=3), epoch(parallel, seed=3, batch_size=3)):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert torch.equal(stacked(list(serial.test_batches(4)))[0], stacked(list(parallel.test_batches(4)))[0])
    bad = image_root / "imagenet" / "train" / "cat" / "img1.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a PNG")
    with pytest.raises(DataError) as err:
        epoch(parallel, seed=3, batch_size=3)
    message = str(err.value)
    assert str(bad) in message and "delete or replace" in message
    assert "Caught" not in message and "Traceback" not in message  # the worker's wrapper is gone


def test_imagenet_shards_partition_the_global_batch(image_root):
    data = load_small(image_root)
    whole = epoch(data, seed=5, batch_size=5)
    ranks = [epoch(data, seed=5, batch_size=5, rank=r, world_size=2) for r in range(2)]
    for (x, y), (x0, y0), (x1, y1) in zip(whole, *ranks, strict=True):
        assert torch.equal(torch.cat([y0, y1]), y) and torch.equal(torch.cat([x0, x1]), x)
        assert len(y0) - len(y1) in (0, 1)
    # A final global batch smaller than world_size leaves some ranks an empty share.
    tail = epoch(data, seed=5, batch_size=11, rank=1, world_size=2)[-1]
    assert tail[0].shape == (0, 3, 32, 32) and tail[1].shape == (0,)


def test_imagenet_augment_none_trains_on_the_eval_transform(image_root):
    data = load_small(image_root)

    def pixels_by_image(d, seed):
        x, _ = stacked(epoch(d, seed))
        return sorted(tuple(v.flatten()[:64].tolist()) for v in x)

    assert pixels_by_image(data, 0) != pixels_by_image(data, 1)  # random crops differ
    plain = load_small(image_root)
    plain.augment = None
    assert pixels_by_image(plain, 0) == pixels_by_image(plain, 1)  # the same images, each always the same
    assert data.augment is not None  # another instance is unaffected


def test_imagenet_to_moves_batches_and_keeps_settings(image_root):
    data = load_small(image_root)
    moved = data.to("cpu")
    assert moved is not data and moved.device == torch.device("cpu") and moved.augment is data.augment
    assert moved.num_train == data.num_train and "imagenet" in repr(moved)
    x, y = next(moved.train_batches(4, torch.Generator().manual_seed(0)))
    assert x.device.type == "cpu" and y.device.type == "cpu"


# ---------------------------------------------------------------- imagenet: errors


def test_imagenet_corrupt_file_names_it(image_root):
    bad = image_root / "imagenet" / "val" / "bee" / "img0.JPEG"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated JPEG
    data = load_small(image_root)
    with pytest.raises(DataError, match="img0.JPEG.*not a readable image") as err:
        list(data.test_batches(6))
    assert str(bad) in str(err.value)


def test_imagenet_missing_layout_explains_it(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("imagenet", tmp_path, download=True)
    message = str(err.value)
    assert f"{tmp_path}/imagenet/train/<class>/<image>" in message and "imagenet/val/<class>" in message
    assert "cannot be downloaded automatically" in message and "image-net.org" in message
    (tmp_path / "imagenet" / "train" / "ant").mkdir(parents=True)
    with pytest.raises(DataError, match=r"found .*train but no .*val"):
        load_dataset("imagenet", tmp_path)


def test_imagenet_empty_folders_and_unknown_val_class(tmp_path):
    (tmp_path / "imagenet" / "train" / "ant").mkdir(parents=True)
    (tmp_path / "imagenet" / "val" / "ant").mkdir(parents=True)
    with pytest.raises(DataError, match="no images"):
        load_dataset("imagenet", tmp_path)
    write_image_folders(tmp_path / "other")
    (tmp_path / "other" / "val" / "dog").mkdir()
    with pytest.raises(DataError, match=r"val.dog is a class folder that .*train does not have"):
        load_dataset("imagenet", tmp_path / "other")


def test_imagenet_split_validation_and_bad_options(image_root):
    data = load_small(image_root)
    with pytest.raises(ConfigError, match="val/ split.*val_fraction to 0"):
        data.split_validation(0.1, seed=0)
    with pytest.raises(ConfigError, match="resize_size"):
        load_dataset("imagenet", image_root, image_size=64, resize_size=32)
    with pytest.raises(ConfigError, match="num_workers"):
        load_dataset("imagenet", image_root, num_workers=-1)
    with pytest.raises(ConfigError, match="image_size, resize_size, num_workers"):
        load_dataset("imagenet", image_root, crop=3)


def test_imagenet_random_resized_box_stays_inside_and_falls_back():
    import random

    rng = random.Random(0)
    for width, height in [(40, 30), (7, 300), (500, 3), (1, 1)]:
        for _ in range(50):
            left, top, right, bottom = imagenet_module.random_resized_box(width, height, rng)
            assert 0 <= left < right <= width and 0 <= top < bottom <= height
    # An extreme strip never fits a crop of allowed aspect: the centred fallback keeps the ratio in range.
    left, top, right, bottom = imagenet_module.random_resized_box(1000, 10, random.Random(1), scale=(0.9, 1.0))
    assert (right - left) / (bottom - top) == pytest.approx(4 / 3, rel=0.1) and bottom - top == 10
    assert math.isclose((left + right) / 2, 500, abs_tol=1)


def test_imagenet_trains_through_the_engine(image_root, tiny_config, tmp_path):
    from bioplausible.engine import fit

    data = load_small(image_root)
    options = {**SMALL, "num_workers": 0}  # what it was loaded with: fit refuses a dataset its config does not name
    config = tiny_config(dataset="imagenet", dataset_options=options, epochs=1, batch_size=4, eval_batch_size=4,
                         probe_every=0)  # fmt: skip
    run = fit(config, data=data, quiet=True)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["epochs"] == 1
    with pytest.raises(ConfigError, match="val_fraction"):
        fit(dataclasses.replace(config, out=str(tmp_path / "run2"), val_fraction=0.2), data=data, quiet=True)


def test_imagenet_batches_can_name_each_images_index(image_root):
    data = load_small(image_root)
    plain = epoch(data, 4)  # the same seed gives the same crops: the indices must not change the batches
    indexed = list(data.train_batches(5, torch.Generator().manual_seed(4), with_index=True))
    assert len(indexed) == len(plain)
    for (x, y), (xi, yi, index) in zip(plain, indexed, strict=True):
        torch.testing.assert_close(xi, x)
        assert torch.equal(yi, y) and torch.equal(index // 4, y)  # 4 images per class, in folder order
    assert sorted(torch.cat([b[2] for b in indexed]).tolist()) == list(range(data.num_train))
