"""Engine overhead: an epoch of the training loop against the bare compute of the same batches.

The engine's epoch (shuffling, slicing and augmenting the in-memory data on the device, the divergence checks, the
metric sums, the progress bar) is timed on N batches; so is the bare loop over the very same batches, made in
advance: ``zero_grad``, ``rule.step`` under the run's precision, ``optimizer.step``. The two are interleaved
round by round, so the ratio holds on a busy machine. Bar (TARGETS.md): epoch time <= 1.1 x the bare compute.

    python benchmarks/epoch_overhead.py --dataset cifar10 --data-dir ../shared/data --arch resnet20 --channels-last
    python benchmarks/epoch_overhead.py --dataset cifar10 --data-dir ../shared/data --arch mlp \
        --arch-options '{"depth": 3, "width": 1024}'
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from bioplausible.build import build, precision_context, resolve_config
from bioplausible.config import TrainConfig
from bioplausible.data import load_dataset
from bioplausible.engine import fresh_loop, train_one_epoch


def engine_epoch(state, data, config) -> float:
    state.loop = fresh_loop()
    state.generator.manual_seed(0)
    t0 = time.perf_counter()
    train_one_epoch(state, data, config, "epoch", reference_loss=float("inf"))
    return time.perf_counter() - t0


def bare_epoch(state, batches, config) -> float:
    t0 = time.perf_counter()
    for x, y in batches:
        state.optimizer.zero_grad(set_to_none=True)
        with precision_context(config, state.device):
            state.rule.step(state.model, x, y)
        state.optimizer.step()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--arch", default="resnet20")
    p.add_argument("--arch-options", default="{}")
    p.add_argument("--rule", default="bp")
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--precision", default="fp32")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset, args.data_dir)
    config = resolve_config(
        TrainConfig(
            rule=args.rule, arch=args.arch, arch_options=json.loads(args.arch_options), dataset=args.dataset,
            batch_size=args.batch_size, max_batches=args.batches, probe_every=0, precision=args.precision,
            channels_last=args.channels_last, progress=False, optimizer="sgd", lr=1e-3, momentum=0.9,
        )
    )  # fmt: skip
    state = build(config, data, "cpu")
    generator = torch.Generator().manual_seed(0)
    batches = []
    for x, y in data.train_batches(config.batch_size, generator):  # the same batches, augmented in advance
        if args.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        batches.append((x, y))
        if len(batches) == args.batches:
            break
    engine_epoch(state, data, config), bare_epoch(state, batches, config)  # warm-up
    engine, bare = [], []
    for _ in range(args.rounds):
        engine.append(engine_epoch(state, data, config))
        bare.append(bare_epoch(state, batches, config))
    e, b = statistics.median(engine), statistics.median(bare)
    print(
        f"{args.rule} on {args.arch} {config.arch_options}, {args.dataset} ({data.source.get('description')}), "
        f"{args.batches} batches of {args.batch_size}, {args.precision}"
        f"{', channels-last' if args.channels_last else ''}, {torch.get_num_threads()} thread(s), "
        f"median of {args.rounds} rounds"
    )
    print(f"engine epoch {e:.2f} s, bare compute of the same batches {b:.2f} s: ratio {e / b:.3f} (bar <= 1.1)")


if __name__ == "__main__":
    main()
