"""CIFAR-10 as JPEG (q75) vs the official pixels: one model's accuracy on the same 1,000 test images in both forms.

The pickle subset holds the first 1,000 official test images; the JPEG release holds every test image, each class
folder in the official order, so the k-th test image of class c in the pickle is ``test/<c>/<k-th file>.jpg``.
Both are normalised with cifar10's fixed channel statistics, so the only difference the model sees is the JPEG loss.

    python benchmarks/cifar_jpeg_vs_pickle.py --run runs/cifar-fa    # a run of `bioplausible train --dataset cifar10`
    python benchmarks/cifar_jpeg_vs_pickle.py                        # no run: trains a small convnet briefly first
    python benchmarks/cifar_jpeg_vs_pickle.py --time-loader          # first (decode + cache) and cached load times

``--time-loader`` loads the 60,000 JPEGs with ``load_dataset("cifar10", <jpeg folder>)`` in two fresh processes
sharing a new empty cache folder (the first decodes and writes the cache, the second reads it), and checks the
files' md5, the counts and the labels against ../shared/data/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bioplausible.archs import create_arch
from bioplausible.data import cifar10 as cifar
from bioplausible.data.imagefolder import normalise_images
from bioplausible.rules import create_rule

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
INPUT_SHAPE = (3, 32, 32)
JPEG_MD5 = "2d9e17b748a60d397090e3120f3d2f7b"  # of all files' bytes in sorted path order (../shared/data/README.md)
SMALL_NET = {"arch": "convnet", "arch_options": {"depth": 4, "channels": 32, "activation": "relu"}, "rule": "bp"}


def pickle_test_images(pickle_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The subset's test images, uint8 (N, 3, 32, 32), and labels (N,)."""
    pixels, labels = cifar._read_batch(pickle_dir / cifar.TEST_FILE)
    return torch.from_numpy(pixels), torch.from_numpy(labels)


def matching_jpeg_paths(jpeg_dir: Path, labels: torch.Tensor, split: str = "test") -> list[Path]:
    """For each label in pickle order, the next file of that class folder (files sorted by name)."""
    files = {c: sorted((jpeg_dir / split / name).iterdir()) for c, name in enumerate(cifar.CLASSES)}
    taken = dict.fromkeys(files, 0)
    paths = []
    for c in labels.tolist():
        paths.append(files[c][taken[c]])
        taken[c] += 1
    return paths


def decode(paths: list[Path]) -> torch.Tensor:
    from PIL import Image

    pixels = np.empty((len(paths), 32, 32, 3), dtype=np.uint8)
    for i, path in enumerate(paths):
        with Image.open(path) as image:
            pixels[i] = np.asarray(image.convert("RGB"))
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()


def model_from_run(run: Path) -> tuple[torch.nn.Module, str]:
    """The run's model with its final weights, built as the engine builds it (the rule adds its buffers)."""
    config = json.loads((run / "config.json").read_text())
    if config.get("dataset") != "cifar10":
        sys.exit(f"{run} trained on {config.get('dataset')!r}, not cifar10")
    model = create_arch(config["arch"], INPUT_SHAPE, 10, **config.get("arch_options", {}))
    rule = create_rule(config["rule"], loss=config.get("loss", "ce"), **config.get("rule_options", {}))
    model = rule.prepare(model, torch.zeros(2, *INPUT_SHAPE))
    checkpoint = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)  # the user's own run
    model.load_state_dict(checkpoint["model"])
    return model, f"{config['rule']} {config['arch']} {config.get('arch_options', {})} from {run}"


def small_trained_model(jpeg_dir: Path, per_class: int, epochs: int) -> tuple[torch.nn.Module, str]:
    """A small convnet trained by bp on the first ``per_class`` JPEG training images of each class."""
    labels = torch.arange(10).repeat_interleave(per_class)
    x = normalise_images(decode(matching_jpeg_paths(jpeg_dir, labels, "train")), cifar.MEAN, cifar.STD)
    torch.manual_seed(0)
    model = create_arch(SMALL_NET["arch"], INPUT_SHAPE, 10, **SMALL_NET["arch_options"])
    rule = create_rule(SMALL_NET["rule"])
    model = rule.prepare(model, torch.zeros(2, *INPUT_SHAPE))
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    t0 = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(labels))
        for start in range(0, len(labels), 64):
            idx = order[start : start + 64]
            optimizer.zero_grad(set_to_none=True)
            rule.step(model, x[idx], labels[idx])
            optimizer.step()
    seconds = time.perf_counter() - t0
    name = f"{SMALL_NET['rule']} {SMALL_NET['arch']} {SMALL_NET['arch_options']}"
    return model, f"{name}, trained here: {epochs} epoch(s) on {len(labels):,} JPEG training images, {seconds:.0f} s"


@torch.no_grad()
def predictions(model: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    model.eval()
    x = normalise_images(pixels, cifar.MEAN, cifar.STD)
    return torch.cat([model(x[i : i + 250]).argmax(1) for i in range(0, len(x), 250)])


def compare(args: argparse.Namespace) -> None:
    pickle_pixels, labels = pickle_test_images(args.pickle_dir)
    jpeg_pixels = decode(matching_jpeg_paths(args.jpeg_dir, labels))
    diff = (pickle_pixels.float() - jpeg_pixels.float()).abs().mean().item()
    model, what = model_from_run(args.run) if args.run else small_trained_model(args.jpeg_dir, 1000, args.epochs)
    on_pickle, on_jpeg = predictions(model, pickle_pixels), predictions(model, jpeg_pixels)
    acc_pickle = (on_pickle == labels).float().mean().item()
    acc_jpeg = (on_jpeg == labels).float().mean().item()
    print(f"model: {what}")
    print(f"test images: {len(labels):,} (pickle subset {args.pickle_dir} and the same images in {args.jpeg_dir})")
    print(f"mean |pixel difference| pickle vs JPEG: {diff:.2f} of 255")
    print(f"accuracy on the official pixels (pickle): {100 * acc_pickle:.1f} %")
    print(f"accuracy on the JPEG q75 pixels:          {100 * acc_jpeg:.1f} %")
    print(f"difference (JPEG - pickle): {100 * (acc_jpeg - acc_pickle):+.1f} points")
    print(f"same prediction on both: {100 * (on_pickle == on_jpeg).float().mean().item():.1f} % of images")


LOAD_ONCE = """
import json, sys, time
import torch
from bioplausible.data import load_dataset
t0, cpu0 = time.perf_counter(), time.process_time()
data = load_dataset("cifar10", sys.argv[1], download=False)
seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
print(json.dumps({"seconds": seconds, "cpu": cpu, "source": data.source, "train": list(data.train_x.shape),
                  "test": list(data.test_x.shape), "train_counts": torch.bincount(data.train_y).tolist(),
                  "test_counts": torch.bincount(data.test_y).tolist(), "classes": data.classes}))
"""


def time_loader(args: argparse.Namespace) -> None:
    paths = sorted(p for p in args.jpeg_dir.rglob("*.jpg"))
    md5 = hashlib.md5()
    for path in paths:
        md5.update(path.read_bytes())
    print(f"{args.jpeg_dir}: {len(paths):,} .jpg files, md5 of their bytes in sorted path order {md5.hexdigest()} "
          f"({'matches' if md5.hexdigest() == JPEG_MD5 else 'DIFFERS FROM'} the README's)")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bioplausible-cache.") as cache:
        env = {**os.environ, "XDG_CACHE_HOME": cache, "OMP_NUM_THREADS": "1"}
        for label in ("first load (decode + cache write)", "cached load", "cached load again"):
            t0 = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-c", LOAD_ONCE, str(args.jpeg_dir)], env=env, capture_output=True, text=True
            )
            process = time.perf_counter() - t0
            if out.returncode:
                sys.exit(out.stderr)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"{label}: load_dataset {result['seconds']:.2f} s wall, {result['cpu']:.2f} s CPU "
                f"(whole process incl. imports {process:.2f} s wall)"
            )
        print(f"cache: {Path(result['source']['cache']).stat().st_size / 2**20:.0f} MiB, {result['source']['cache']}")
    print(f"train {result['train']}, test {result['test']}, classes {result['classes']}")
    print(f"train labels per class {result['train_counts']}")
    print(f"test labels per class {result['test_counts']}")
    print(f"source: {json.dumps(result['source'])}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, help="a run folder (config.json, checkpoint.pt) of a cifar10 run")
    p.add_argument("--jpeg-dir", type=Path, default=DATA / "cifar10-jpeg")
    p.add_argument("--pickle-dir", type=Path, default=DATA / "cifar10-subset" / cifar.FOLDER)
    p.add_argument("--epochs", type=int, default=1, help="epochs of the small net trained when no --run is given")
    p.add_argument("--time-loader", action="store_true", help="time loading the 60,000 JPEGs instead")
    args = p.parse_args()
    torch.set_num_threads(1)
    time_loader(args) if args.time_loader else compare(args)


if __name__ == "__main__":
    main()
