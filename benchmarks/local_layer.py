"""Locally connected layer vs Conv2d of the same shape: forward+backward time and memory.

Memory is counted exactly: parameter bytes, and the bytes autograd saves for the backward pass (measured with
``torch.autograd.graph.saved_tensors_hooks``), which is what grows with the batch.

    python benchmarks/local_layer.py                 # Bartunov's MNIST LC layers, batch 64, CPU
"""

import argparse
import statistics
import time

import torch
from torch import nn

from bioplausible.layers import FeedbackLocallyConnected2d, FeedbackMode, LocallyConnected2d
from bioplausible.report import markdown_table

SHAPES = [  # (in_channels, out_channels, in_size, kernel, stride, padding): Bartunov et al. Table 3, MNIST
    (1, 32, 28, 3, 2, 1),
    (32, 64, 14, 3, 2, 1),
]


def feedback_version(layer: nn.Module) -> nn.Module:
    """The layer with fixed feedback B = a copy of W (FA's arithmetic; B's values do not change the time)."""
    fb = FeedbackLocallyConnected2d.from_module(layer, FeedbackMode())
    fb.register_buffer("feedback", fb.weight.detach().clone())
    return fb


def saved_bytes(layer: nn.Module, x: torch.Tensor) -> int:
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer(x).sum()
    return total


def time_fwd_bwd(layer: nn.Module, x: torch.Tensor, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        layer(x).sum().backward()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args()
    rows = []
    for c_in, c_out, size, k, s, pad in SHAPES:
        torch.manual_seed(0)
        x = torch.randn(args.batch_size, c_in, size, size, requires_grad=True)
        layers = {
            "Conv2d": nn.Conv2d(c_in, c_out, k, s, pad),
            "LocallyConnected2d": LocallyConnected2d(c_in, c_out, (size, size), k, s, pad),
            "LocallyConnected2d (fa)": feedback_version(LocallyConnected2d(c_in, c_out, (size, size), k, s, pad)),
        }
        for name, layer in layers.items():
            time_fwd_bwd(layer, x, 3)  # warm-up
            ms = 1e3 * time_fwd_bwd(layer, x, args.repeats)
            params = sum(t.numel() * t.element_size() for t in layer.parameters())
            rows.append(
                [
                    f"{c_in}->{c_out}, {size}x{size}, k{k} s{s} p{pad}",
                    name,
                    f"{ms:.2f}",
                    f"{params / 2**20:.2f}",
                    f"{saved_bytes(layer, x) / 2**20:.2f}",
                ]
            )
    print(f"batch {args.batch_size}, torch {torch.__version__}, {torch.get_num_threads()} threads, CPU\n")
    print(markdown_table(["layer shape", "layer", "fwd+bwd ms (median)", "params MiB", "saved for backward MiB"], rows))


if __name__ == "__main__":
    main()
