"""Step-time benchmark: each rule's training step relative to backprop's, on the same model and batch.

Ratios measured in one process, with the rules interleaved round by round, hold on a noisy machine where absolute
times do not. A step is what the engine does per batch (``build`` makes the same model, rule and optimizer as a
run): ``zero_grad``, ``rule.step`` under the run's precision, ``optimizer.step``.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch

from .build import build, precision_context, resolve_config, without_unread
from .config import TrainConfig
from .data import Dataset
from .registry import ARCHS, RULES
from .report import markdown_table


def best_cpu_time(fn, repeats: int = 5, number: int = 200) -> float:
    """Best of ``repeats`` mean CPU times (``time.process_time``, this process only) of ``number`` calls of ``fn``,
    in seconds. CPU time, not wall time: on a shared machine wall time also counts other jobs' time slices."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(number):
            fn()
        best = min(best, (time.process_time() - start) / number)
    return best


def random_data(input_shape: tuple[int, ...], classes: int, batch_size: int, device) -> Dataset:
    """A batch of Gaussian inputs and labels, as a dataset ``build`` can size a model from."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, *input_shape, generator=g).to(device)
    y = torch.randint(0, classes, (batch_size,), generator=g).to(device)
    return Dataset("random", x, y, x, y, classes)


def make_trainer(config: TrainConfig, data: Dataset, device: torch.device):
    """One training step of ``config`` on ``data``'s batch, as the engine does it."""
    state = build(resolve_config(config), data, device)
    x, y = data.train_x, data.train_y
    if config.channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)

    def step():
        state.optimizer.zero_grad(set_to_none=True)
        with precision_context(config, device):
            state.rule.step(state.model, x, y)
        state.optimizer.step()

    return step


def time_steps(step, n: int, device: torch.device) -> float:
    """Seconds per step, averaged over ``n`` steps."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n


def step_times(configs: dict[str, TrainConfig], data: Dataset, rounds=7, steps=20, device="cpu"):
    """Per label, the seconds per step of each round (configurations interleaved within every round)."""
    device = torch.device(device)
    trainers = {label: make_trainer(c, data, device) for label, c in configs.items()}
    for step in trainers.values():  # warm-up: allocator, kernels, optimizer state
        time_steps(step, 3, device)
    times: dict[str, list[float]] = {label: [] for label in configs}
    for _ in range(rounds):
        for label, step in trainers.items():
            times[label].append(time_steps(step, steps, device))
    return times


def ratio_table(times: dict[str, list[float]], batch_size: int, reference: str = "bp") -> tuple[str, dict[str, float]]:
    """Markdown: each configuration's median step time, throughput, and ratio to ``reference``'s."""
    medians = {r: statistics.median(t) for r, t in times.items()}
    ratios = {r: m / medians[reference] for r, m in medians.items()}
    rows = [[r, f"{1e3 * medians[r]:.2f}", f"{batch_size / medians[r]:.0f}", f"{ratios[r]:.3f}"] for r in times]
    return markdown_table(["rule", "ms / step (median)", "samples / s", f"ratio to {reference}"], rows), ratios


def variants(base: TrainConfig, rules: list[str], args, added: str | None = None) -> dict[str, TrainConfig]:
    """The configurations to time, labelled: each rule, at each precision and memory format asked for (the label is
    the rule alone when only one of each is timed). The first is the reference of the ratios. The ``added`` rule
    (bp, when not asked for) is timed without the options it would not read, such as EP's nudged phase; a rule
    asked for is refused with them, as ``train`` refuses it."""
    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    formats = [False, True] if args.both_formats else [args.channels_last]
    configs = {}
    for precision in precisions:
        for channels_last in formats:
            for rule in rules:
                label = rule
                if len(precisions) > 1 or len(formats) > 1:
                    label += f" {precision}{' channels-last' if channels_last else ''}"
                config = dataclasses.replace(base, rule=rule, precision=precision, channels_last=channels_last)
                configs[label] = without_unread(config) if rule == added else config
    return configs


def run_bench(args) -> int:
    """``bioplausible bench``: see ``bioplausible bench --help``."""
    torch.set_num_threads(args.threads or torch.get_num_threads())
    rules = [r.strip() for r in args.rules.split(",") if r.strip()]
    for r in rules:
        RULES.get(r)  # an unknown rule fails before any timing
    added = None if "bp" in rules else "bp"
    if added:
        rules.insert(0, added)
    input_shape = tuple(int(n) for n in args.input_shape.split(","))
    fields = {f.name for f in dataclasses.fields(ARCHS.get(args.arch).Config)}
    arch_options = {k: getattr(args, k) for k in ("depth", "width") if k in fields}
    if "activation" in fields:
        arch_options["activation"] = "tanh"
    arch_options.update(json.loads(args.arch_options))
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
    base = TrainConfig(arch=args.arch, arch_options=arch_options, optimizer=args.optimizer, lr=1e-4, device=args.device)
    configs = variants(base, rules, args, added)
    data = random_data(input_shape, args.classes, args.batch_size, args.device)
    times = step_times(configs, data, args.rounds, args.steps, args.device)
    table, ratios = ratio_table(times, args.batch_size, reference=next(iter(configs)))
    shape = f"{args.arch} {args.input_shape} -> {args.classes}, options {arch_options}"
    print(
        f"{shape}, batch {args.batch_size}, {args.optimizer}, {args.precision}"
        f"{', channels-last' if args.channels_last or args.both_formats else ''}, device {args.device}, "
        f"torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; median of {args.rounds} rounds x {args.steps} steps\n"
    )
    print(table)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"setup": vars(args), "times_s": times, "ratios": ratios}, indent=2))
    return 0
