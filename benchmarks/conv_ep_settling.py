"""One settling sweep of a convolutional energy network against the bare convolutions and pooling it performs, CPU.

A sweep of ``conv-energy-net`` (``src/bioplausible/archs/conv_energy.py``, ``_sweeps``) computes, per connection
above the input, the bottom-up drive P(conv(s) + b) (with max pooling's switches) and the feedback convᵀ(P⁻¹ s)
into the layer below (a linear readout's two products in the nudged phase only), then the hard sigmoid of each
layer's sum and the sweep's largest state change (the tolerance test). The bare work is the first part alone, on
fixed random states of the same shapes and memory format. Their ratio is the loop's overhead per sweep: the
activations, the sums, layout copies and the residual.

A ``settle`` call also does work once per call: the clamped input's drive, a first bottom-up pass over every layer,
and joining the layers into the flat state (with ŷ). That is not a sweep's cost, so a sweep is timed as the
difference between settling 2n and n sweeps, divided by n (n = ``--sweeps``), best of ``--rounds`` interleaved
rounds. Measured for the free phase and the nudged phase (``--readout linear``: symmetric-nudging's force through
a softmax readout, cross-entropy; ``energy``: the output layer inside the energy, MSE), both settling orders.

Nets (``--net``): ``mnist``, the conv-ep study's 32-64 5×5 net on 1×28×28 (batch 64, as
results/conv-ep-mnist/run.sh); ``laborieux``, their 128-256-512-512 3×3 CIFAR-10 net on 3×32×32 (batch 128 on a
GPU; give a smaller ``--batch-size`` on a CPU). Times are CPU seconds of this process, ``--threads`` threads.

python benchmarks/conv_ep_settling.py --net mnist --rounds 5
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from bioplausible.archs import create_arch
from bioplausible.archs.conv_energy import ConvConnection, pool
from bioplausible.bench import best_cpu_time
from bioplausible.studies.presets import LABORIEUX_NET, SMALL_CONV_NET

clock = time.process_time  # CPU time of this process: other jobs' time slices do not count (see ep_settling.py)
NETS = {
    "mnist": ((1, 28, 28), SMALL_CONV_NET, 64),
    "laborieux": ((3, 32, 32), LABORIEUX_NET, 128),
}


def bare_products(net, batch: int, phase: str):
    """A function computing one sweep's convolutions, poolings and their transposes (and the readout's products
    where the phase uses them) on random channels-last states of the net's shapes, nothing else; and the number
    of connections it runs."""
    lowers = [torch.rand(batch, *net.input_shape)] + [torch.rand(batch, *shape) for shape in net.shapes]
    lowers = [s.contiguous(memory_format=torch.channels_last) if s.dim() == 4 else s for s in lowers]
    connections = list(net.connections.values())
    if net.readout == "linear" and phase == "free":  # the readout is outside the energy: only nudging uses it
        connections = connections[:-1]
    work = []
    for c in connections:
        if c.lower == 0:  # the clamped input's drive is computed once per call, and the input gets no feedback
            continue
        lower = lowers[c.lower]
        if isinstance(c, ConvConnection):
            a = F.conv2d(lower, c.weight, c.bias, padding=c.padding)
            upper, switches = pool(a, c.pooling)
            work.append((c, lower, upper.contiguous(memory_format=torch.channels_last), (switches, a.shape[-2:])))
        else:
            work.append((c, lower, torch.rand(batch, c.weight.shape[0]), None))

    def bare():
        for c, lower, upper, cache in work:
            c.bottom_up(lower)
            c.top_down(upper, cache)

    return bare, len(work)


def nudging(y: torch.Tensor, readout: str, beta: float = 0.5):
    """The nudging force −β ∂C/∂out against labels ``y`` (N,): cross-entropy of softmax(ŷ) for the linear readout,
    ½‖s_L − onehot‖² for the energy readout."""
    if readout == "linear":
        return lambda out: -beta * (out.softmax(-1) - F.one_hot(y, out.shape[1]))
    return lambda out: -beta * (out - F.one_hot(y, out.shape[1]))


def sweep_costs(args) -> None:
    input_shape, options, batch = NETS[args.net]
    batch = args.batch_size or batch
    torch.manual_seed(0)
    x = torch.rand(batch, *input_shape)
    n = args.sweeps
    print(
        f"conv-energy-net {args.net} {options['conv_channels']}, {args.readout} readout, batch {batch}, "
        f"{torch.get_num_threads()} thread(s)"
    )
    print(f"one sweep ((time of {2 * n} - time of {n}) / {n}) against the bare convolutions / poolings / transposes")
    print("it performs, best of rounds:")
    for order in ("synchronous", "alternating"):
        net = create_arch(
            "conv-energy-net", input_shape, 10, **{**options, "settle_order": order, "readout": args.readout}
        )
        net.input_shape = input_shape
        net.requires_grad_(False)
        bare = {phase: bare_products(net, batch, phase) for phase in ("free", "nudged")}
        forces = {"free": None, "nudged": nudging(torch.randint(0, 10, (batch,)), args.readout)}
        with torch.no_grad():
            state = net.settle(x, steps=5, tolerance=0).state
            best = {key: float("inf") for key in ("free", "nudged", "free 2n", "nudged 2n", "bare free", "bare nudged")}
            for _ in range(args.rounds):  # interleaved, so that a load change hits all alike
                for phase, force in forces.items():
                    best[f"bare {phase}"] = min(best[f"bare {phase}"], best_cpu_time(bare[phase][0], 1, n))
                    for key, steps in ((phase, n), (f"{phase} 2n", 2 * n)):
                        start = clock()
                        net.settle(x, state, steps=steps, force=force, tolerance=0)
                        best[key] = min(best[key], clock() - start)
        for phase in forces:
            sweep, plain = (best[f"{phase} 2n"] - best[phase]) / n, best[f"bare {phase}"]
            print(
                f"  {order:<11} {phase:<6} sweep {sweep * 1e3:8.2f} ms, bare {plain * 1e3:8.2f} ms "
                f"(connections above the input: {bare[phase][1]}) -> ratio {sweep / plain:.2f}"
            )


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--net", default="mnist", choices=tuple(NETS))
    parser.add_argument("--readout", default="linear", choices=("linear", "energy"))
    parser.add_argument(
        "--batch-size", type=positive, default=None, help="default: the net's training batch (64 / 128)"
    )
    parser.add_argument("--sweeps", type=positive, default=10, help="n: a sweep is (time of 2n - time of n) / n")
    parser.add_argument("--rounds", type=positive, default=5, help="timing rounds (the best is reported)")
    parser.add_argument("--repeats", type=positive, default=None, help="alias of --rounds (tests)")
    parser.add_argument("--threads", type=positive, default=1)
    args = parser.parse_args()
    if args.repeats:
        args.rounds = args.repeats
    torch.set_num_threads(args.threads)
    sweep_costs(args)


if __name__ == "__main__":
    main()
