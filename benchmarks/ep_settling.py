"""EP settling cost on a 784-100×5-10 energy network (Gammell et al.'s deep net), batch 20, CPU.

Prints (1) one settling step against the bare matrix products of the same shapes (the per-pair products a
layered step needs: each adjacent non-input pair in both directions; the input's drive is constant while clamped),
(2) steps used with a tolerance against Gammell's fixed caps, (3) the time to train on 1,000 MNIST-sized samples
with ep, settling to the tolerance and with the fixed caps, (4) time to accuracy: ``--epochs`` passes over the
samples with Gammell's fixed 1000 / 12 steps from zero, with the tolerance from zero, and with the tolerance from
persistent states, test accuracy (on 1,000 test images) after each pass, and the time each needs to reach the
fixed-cap run's final accuracy (95 % of it).

python benchmarks/ep_settling.py                     # MNIST from $BIOPLAUSIBLE_DATA or ../shared/data if present
python benchmarks/ep_settling.py --samples 200 --topology skip --epochs 0
"""

from __future__ import annotations

import argparse
import time

import torch

from bioplausible.archs import create_arch
from bioplausible.data import load_dataset
from bioplausible.errors import BioplausibleError
from bioplausible.rules import create_rule


def best_time(fn, repeats: int = 5, number: int = 200) -> float:
    """Best of ``repeats`` mean times of ``number`` calls, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def mnist(data_dir: str | None, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, str]:
    """n training and 1,000 test images (flattened) with labels, and the data's name."""
    try:
        data = load_dataset("mnist", data_dir=data_dir, download=False)
        return (
            data.train_x[:n].flatten(1),
            data.train_y[:n],
            data.test_x[:1000].flatten(1),
            data.test_y[:1000],
            "MNIST",
        )
    except BioplausibleError:
        g = torch.Generator().manual_seed(0)
        x, tx = torch.rand(n, 784, generator=g), torch.rand(1000, 784, generator=g)
        return x, torch.randint(0, 10, (n,), generator=g), tx, torch.randint(0, 10, (1000,), generator=g), "random"


def train_time(net, rule, x, y, batch_size: int, optimizer=None) -> tuple[float, float, float]:
    """Seconds for one pass of SGD over (x, y); mean free and nudged steps per batch."""
    optimizer = optimizer or torch.optim.SGD(net.parameters(), lr=0.015)
    free, nudged, batches = 0.0, 0.0, 0
    start = time.perf_counter()
    for i in range(0, len(x), batch_size):
        optimizer.zero_grad(set_to_none=True)
        index = torch.arange(i, min(i + batch_size, len(x)))
        metrics = rule.step(net, x[i : i + batch_size], y[i : i + batch_size], index=index)
        optimizer.step()
        free, nudged, batches = (
            free + metrics["free_steps"].item(),
            nudged + metrics["nudged_steps"].item(),
            batches + 1,
        )
    return time.perf_counter() - start, free / batches, nudged / batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--topology", default="layered", choices=("layered", "skip", "dense"))
    parser.add_argument("--tolerance", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=5, help="passes for the time-to-accuracy part (0: skip it)")
    parser.add_argument("--p", type=float, default=0.04, help="rewiring probability of the skip topology")
    parser.add_argument("--png", default="", help="save the free phase's residual per step (every topology) here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    sizes = dict(hidden_sizes=(100,) * 5, topology=args.topology, p=args.p, a=0.168, free_steps=1000, nudged_steps=12)
    net = create_arch("energy-net", (784,), 10, tolerance=args.tolerance, **sizes)
    x, y, test_x, test_y, source = mnist(args.data_dir, args.samples)
    xb = x[: args.batch_size]
    print(f"784-100x5-10 {args.topology}, batch {args.batch_size}, {torch.get_num_threads()} thread(s), data: {source}")

    # (1) one settling step vs the bare products
    with torch.no_grad():
        state = net.settle(xb, steps=50, tolerance=0).state
        n = 400
        step = best_time(lambda: net.settle(xb, state, steps=n, tolerance=0), 3, 1) / n
        setup = best_time(lambda: net.settle(xb, state, steps=1, tolerance=0), 3, 20)
        pairs = [c.effective() for c in net.connections.values() if c.lower > 0]
        lower = [torch.rand(args.batch_size, w.shape[0]) for w in pairs]
        upper = [torch.rand(args.batch_size, w.shape[1]) for w in pairs]

        def bare():  # what a step must compute: each non-input pair's product in both directions
            for a, b, w in zip(lower, upper, pairs):
                a @ w
                b @ w.t()

        products = best_time(bare)
    print(f"settling step {step * 1e3:.3f} ms (a 1-step settle incl. setup: {setup * 1e3:.3f} ms)")
    print(f"bare per-pair products ({2 * len(pairs)} matmuls) {products * 1e3:.3f} ms -> ratio {step / products:.2f}")

    # (1b) cost against the connections present: skip pairs settled connection by connection vs as masked matrices
    topology_costs(xb)

    # (2) steps used: tolerance vs the fixed cap
    with torch.no_grad():
        free = net.settle(xb)
    print(
        f"free phase from zero: {free.steps} steps to tolerance {args.tolerance:g} (cap 1000), "
        f"last residual {free.residuals[-1].item():.2e}"
    )

    # (3) training time on the samples
    for label, tolerance in (("tolerance", args.tolerance), ("fixed cap", 0.0)):
        torch.manual_seed(0)
        model = create_arch("energy-net", (784,), 10, tolerance=tolerance, **sizes)
        rule = create_rule("ep", beta=1.0, nudging="random-sign")
        rule.prepare(model)
        seconds, free_steps, nudged_steps = train_time(model, rule, x, y, args.batch_size)
        print(
            f"train {len(x)} samples ({label}): {seconds:.1f} s, mean steps free {free_steps:.0f} / nudged "
            f"{nudged_steps:.1f} -> {seconds * 60000 / len(x) / 60:.1f} min per 60k-sample epoch"
        )

    if args.png:
        plot_residuals(args, sizes, xb)
    if args.epochs:
        time_to_accuracy(args, sizes, x, y, test_x, test_y)


def topology_costs(xb: torch.Tensor, steps: int = 100, rounds: int = 5) -> None:
    """Settling-step time of each topology, its layer-skipping pairs stored sparse (the default) and as masked
    dense matrices, measured interleaved (best of ``rounds``)."""
    print("settling step by topology (sparse skip pairs / as masked matrices):")
    for topology, p in (("layered", 0.0), ("skip", 0.004), ("skip", 0.04), ("skip", 0.1), ("dense", 0.0)):
        torch.manual_seed(0)
        net = create_arch("energy-net", (784,), 10, hidden_sizes=(100,) * 5, topology=topology, p=p, a=0.168)
        sparse = [c for c in net.connections.values() if c.sparse]
        links = sum(c.count() for c in sparse)
        with torch.no_grad():
            state = net.settle(xb, steps=20, tolerance=0).state
            best = {True: float("inf"), False: float("inf")}
            for _ in range(rounds):
                for flag in (True, False):
                    for c in sparse:
                        c.sparse = flag
                    start = time.perf_counter()
                    net.settle(xb, state, steps=steps, tolerance=0)
                    best[flag] = min(best[flag], (time.perf_counter() - start) / steps)
        name = f"skip p={p:g}" if topology == "skip" else topology
        print(
            f"  {name:<12} {links:>5} hidden skip connections: {best[True] * 1e3:.3f} ms / {best[False] * 1e3:.3f} ms"
        )


def plot_residuals(args, sizes, xb) -> None:
    """The largest state change per step of a free phase from zero, 1,000 steps, each topology at initialisation."""
    from bioplausible.report.plots import plt, save_figure

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for topology in ("layered", "skip", "dense"):
        torch.manual_seed(0)
        net = create_arch("energy-net", (784,), 10, tolerance=0.0, **{**sizes, "topology": topology})
        with torch.no_grad():
            residuals = net.settle(xb).residuals
        label = f"skip p={args.p:g}" if topology == "skip" else topology
        ax.semilogy(range(1, len(residuals) + 1), residuals.clamp_min(1e-12).numpy(), label=label)
    ax.axhline(args.tolerance, color="k", linestyle="--", linewidth=1, label=f"tolerance {args.tolerance:g}")
    ax.set(xlabel="settling step (free phase from zero)", ylabel="max |Δs| in the step")
    ax.grid(alpha=0.3)
    ax.legend()
    print(f"saved {save_figure(fig, args.png, f'784-100x5-10 energy nets at initialisation, batch {len(xb)}')}")


def time_to_accuracy(args, sizes, x, y, test_x, test_y) -> None:
    """(4): the same net and seed trained three ways; accuracy after each pass against cumulative train time."""
    variants = {
        "fixed 1000/12 from zero (Gammell)": (0.0, False),
        f"tolerance {args.tolerance:g} from zero": (args.tolerance, False),
        f"tolerance {args.tolerance:g}, persistent": (args.tolerance, True),
    }
    curves = {}
    for label, (tolerance, persistent) in variants.items():
        torch.manual_seed(0)
        model = create_arch("energy-net", (784,), 10, tolerance=tolerance, **sizes)
        rule = create_rule("ep", beta=1.0, nudging="random-sign", persistent=persistent)
        rule.prepare(model)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.015)
        elapsed, curve = 0.0, []
        for _ in range(args.epochs):
            seconds, free_steps, _ = train_time(model, rule, x, y, args.batch_size, optimizer)
            elapsed += seconds
            with torch.no_grad():
                model.tolerance = args.tolerance  # evaluate every variant the same way
                accuracy = (model(test_x).argmax(1) == test_y).float().mean().item()
                model.tolerance = tolerance
            curve.append((elapsed, accuracy, free_steps))
        curves[label] = curve
        points = ", ".join(f"{a:.1%} @ {t:.0f} s ({f:.0f} free steps)" for t, a, f in curve)
        print(f"{label}: {points}")
    reference = curves[next(iter(variants))]
    goal = 0.95 * reference[-1][1]  # 95 %: small test sets make single-point accuracies noisy
    print(f"time to the fixed-cap run's final test accuracy (95 % of it, {goal:.1%}):")
    for label, curve in curves.items():
        reached = next((t for t, a, _ in curve if a >= goal - 1e-9), None)
        gain = "" if reached is None else f" ({reference[-1][0] / reached:.2f}x faster than fixed caps)"
        print(f"  {label}: " + (f"{reached:.0f} s{gain}" if reached is not None else "not reached"))


if __name__ == "__main__":
    main()
