"""Step-time benchmark: each rule's training step relative to backprop's, on the same model and batch.

Ratios measured in one process, with the rules interleaved round by round, hold on a noisy machine where absolute
times do not. A step is what the engine does per batch: ``zero_grad``, ``rule.step``, ``optimizer.step``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch

from .archs import create_arch
from .engine import materialize
from .registry import ARCHS, RULES
from .report import markdown_table
from .rules import create_rule


def make_trainer(
    rule_name: str, arch: str, input_shape: tuple[int, ...], classes: int, arch_options: dict, device: torch.device
):
    torch.manual_seed(0)
    model = create_arch(arch, input_shape, classes, **arch_options).to(device)
    rule = create_rule(rule_name)
    rule.prepare(model)
    materialize(model, torch.zeros(2, *input_shape, device=device))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step(x, y):
        optimizer.zero_grad(set_to_none=True)
        rule.step(model, x, y)
        optimizer.step()

    return step


def time_steps(step, x, y, n: int, device: torch.device) -> float:
    """Seconds per step, averaged over ``n`` steps."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        step(x, y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n


def step_times(
    rules,
    arch="mlp",
    input_shape=(784,),
    classes=10,
    arch_options=None,
    batch_size=128,
    rounds=7,
    steps=20,
    device="cpu",
) -> dict[str, list[float]]:
    """Per rule, the seconds per step of each round (rules interleaved within every round)."""
    device = torch.device(device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, *input_shape, generator=g).to(device)
    y = torch.randint(0, classes, (batch_size,), generator=g).to(device)
    trainers = {r: make_trainer(r, arch, input_shape, classes, arch_options or {}, device) for r in rules}
    for step in trainers.values():  # warm-up: allocator, kernels, Adam state
        time_steps(step, x, y, 3, device)
    times: dict[str, list[float]] = {r: [] for r in rules}
    for _ in range(rounds):
        for rule, step in trainers.items():
            times[rule].append(time_steps(step, x, y, steps, device))
    return times


def ratio_table(times: dict[str, list[float]], batch_size: int, reference: str = "bp") -> tuple[str, dict[str, float]]:
    medians = {r: statistics.median(t) for r, t in times.items()}
    ratios = {r: m / medians[reference] for r, m in medians.items()}
    rows = [[r, f"{1e3 * medians[r]:.2f}", f"{batch_size / medians[r]:.0f}", f"{ratios[r]:.3f}"] for r in times]
    return markdown_table(["rule", "ms / step (median)", "samples / s", f"ratio to {reference}"], rows), ratios


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bioplausible bench", description=__doc__.splitlines()[0])
    p.add_argument("--rules", default="bp,fa,usf,frsf,brsf,dfa", help="comma-separated rules (bp is the reference)")
    p.add_argument("--arch", default="mlp")
    p.add_argument("--input-shape", default="784", help="one sample's shape, e.g. 784 or 3,224,224")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--depth", type=int, default=3, help="for archs with a depth option")
    p.add_argument("--width", type=int, default=1000, help="for archs with a width option")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--rounds", type=int, default=60, help="interleaved rounds; the median is reported")
    p.add_argument(
        "--steps",
        type=int,
        default=3,
        help="steps timed per rule per round (few: rules then see the same machine state)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--json", help="also write the times and ratios to this JSON file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rules = [r.strip() for r in args.rules.split(",") if r.strip()]
    for r in rules:
        RULES.get(r)  # an unknown rule fails before any timing
    if "bp" not in rules:
        rules.insert(0, "bp")
    input_shape = tuple(int(n) for n in args.input_shape.split(","))
    fields = {f.name for f in dataclasses.fields(ARCHS.get(args.arch).Config)}
    arch_options = {k: getattr(args, k) for k in ("depth", "width") if k in fields}
    if "activation" in fields:
        arch_options["activation"] = "tanh"
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
    times = step_times(
        rules, args.arch, input_shape, args.classes, arch_options, args.batch_size, args.rounds, args.steps, args.device
    )
    table, ratios = ratio_table(times, args.batch_size)
    shape = f"{args.arch} {args.input_shape} -> {args.classes}, options {arch_options}"
    print(
        f"{shape}, batch {args.batch_size}, Adam, device {args.device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; median of {args.rounds} rounds x {args.steps} steps\n"
    )
    print(table)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"setup": vars(args), "times_s": times, "ratios": ratios}, indent=2))
    return 0
