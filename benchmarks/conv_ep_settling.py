"""One settling sweep of a convolutional energy network against the bare convolutions and pooling it performs, CPU.

A sweep of ``conv-energy-net`` (``src/bioplausible/archs/conv_energy.py``) computes, per connection, the bottom-up
drive P(conv(s) + b) (with max pooling's switches; the clamped input's drive once per phase, not per sweep) and
the feedback convᵀ(P⁻¹ s) into the layer below, then the
hard sigmoid of each layer's sum and the sweep's largest state change (the tolerance test). The bare work is the
first part alone: every convolution, pooling, unpooling and transposed convolution (and the readout's two matrix
products) on fixed random states of the same shapes and memory format. Their ratio is the settling loop's
overhead: activations, sums, layout copies, the residual. Measured for the free phase and the nudged phase
(symmetric nudging through a softmax readout), both settling orders, best of ``--rounds`` interleaved rounds.

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
from bioplausible.studies.presets import LABORIEUX_NET, SMALL_CONV_NET

clock = time.process_time  # CPU time of this process: other jobs' time slices do not count (see ep_settling.py)
NETS = {
    "mnist": ((1, 28, 28), SMALL_CONV_NET, 64),
    "laborieux": ((3, 32, 32), LABORIEUX_NET, 128),
}


def best_time(fn, repeats: int, number: int) -> float:
    """Best of ``repeats`` mean CPU times of ``number`` calls, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        start = clock()
        for _ in range(number):
            fn()
        best = min(best, (clock() - start) / number)
    return best


def bare_products(net, batch: int, readout: bool):
    """A function computing one sweep's convolutions, poolings and their transposes (and, with ``readout``, the
    linear readout's two products, which only the nudged phase needs) on random channels-last states of the net's
    shapes, nothing else; and the number of connections it runs."""
    lowers = [torch.rand(batch, *net.input_shape)] + [torch.rand(batch, *shape) for shape in net.shapes]
    lowers = [s.contiguous(memory_format=torch.channels_last) if s.dim() == 4 else s for s in lowers]
    work = []
    connections = list(net.connections.values())
    for c in connections if readout else connections[:-1]:
        lower = lowers[c.lower]
        if isinstance(c, ConvConnection):
            a = F.conv2d(lower, c.weight, c.bias, padding=c.padding)
            upper, switches = pool(a, c.pooling)
            work.append((c, lower, upper.contiguous(memory_format=torch.channels_last), (switches, a.shape[-2:])))
        else:
            work.append((c, lower, torch.rand(batch, c.weight.shape[0]), None))

    def bare():
        for c, lower, upper, cache in work:
            if c.lower > 0:  # the clamped input's drive is computed once per phase, and it gets no feedback
                c.bottom_up(lower)
                c.top_down(upper, cache)

    return bare, sum(c.lower > 0 for c, *_ in work)


def ce_nudging(y: torch.Tensor, beta: float = 0.5):
    """The nudging force −β ∂C/∂ŷ of the cross-entropy C of softmax(ŷ) against labels ``y`` (N,)."""
    return lambda out: -beta * (out.softmax(-1) - F.one_hot(y, out.shape[1]))


def sweep_costs(args) -> None:
    input_shape, options, batch = NETS[args.net]
    batch = args.batch_size or batch
    torch.manual_seed(0)
    x = torch.rand(batch, *input_shape)
    print(f"conv-energy-net {args.net} {options['conv_channels']}, batch {batch}, {torch.get_num_threads()} thread(s)")
    print("one sweep against the bare convolutions / poolings / transposes it performs, best of rounds:")
    for order in ("synchronous", "alternating"):
        net = create_arch("conv-energy-net", input_shape, 10, **{**options, "settle_order": order, "readout": "linear"})
        net.input_shape = input_shape
        net.requires_grad_(False)
        bare = {phase: bare_products(net, batch, phase == "nudged") for phase in ("free", "nudged")}
        nudge = ce_nudging(torch.randint(0, 10, (batch,)))

        with torch.no_grad():
            state = net.settle(x, steps=5, tolerance=0).state
            best = dict.fromkeys(("free", "nudged", "bare free", "bare nudged"), float("inf"))
            for _ in range(args.rounds):  # interleaved, so that a load change hits all alike
                for phase, force in (("free", None), ("nudged", nudge)):
                    best[f"bare {phase}"] = min(best[f"bare {phase}"], best_time(bare[phase][0], 1, args.sweeps))
                    start = clock()
                    net.settle(x, state, steps=args.sweeps, force=force, tolerance=0)
                    best[phase] = min(best[phase], (clock() - start) / args.sweeps)
        for phase in ("free", "nudged"):
            plain = best[f"bare {phase}"]
            print(
                f"  {order:<11} {phase:<6} sweep {best[phase] * 1e3:8.2f} ms, bare {plain * 1e3:8.2f} ms "
                f"({bare[phase][1]} connections besides the input's) -> ratio {best[phase] / plain:.2f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--net", default="mnist", choices=tuple(NETS))
    parser.add_argument("--batch-size", type=int, default=0, help="0: the net's training batch (64 / 128)")
    parser.add_argument("--sweeps", type=int, default=10, help="sweeps per timed call")
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds (the best is reported)")
    parser.add_argument("--repeats", type=int, default=0, help="alias of --rounds when given (tests)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.repeats:
        args.rounds = args.repeats
    torch.set_num_threads(args.threads)
    sweep_costs(args)


if __name__ == "__main__":
    main()
