"""Memory of DFA's feedback matrices for convolutions: dense (n_e × C·H·W per layer) vs kernel-shaped
(n_e × C × k × k, ``--dfa-feedback kernel``), counted from the shapes DFA would draw (nothing is allocated).

    python benchmarks/dfa_memory.py                      # ResNet-18, ImageNet size (3×224×224, 1000 classes)
    python benchmarks/dfa_memory.py --arch resnet20 --input-shape 3,32,32 --classes 10
"""

import argparse
import math

import torch

from bioplausible.archs import create_arch
from bioplausible.layers import swappable_layers, trace
from bioplausible.layers.modes import direct_feedback_shape
from bioplausible.layers.types import layer_type


def feedback_bytes(arch: str, input_shape: tuple[int, ...], classes: int, shape: str) -> int:
    model = create_arch(arch, input_shape, classes)
    names = swappable_layers(model)
    found = trace(model, torch.zeros(1, *input_shape), names)
    n_e = math.prod(found.output_shape)
    total = 0
    for name in found.order:
        layer = model.get_submodule(name)
        conv = isinstance(layer, torch.nn.Conv2d)
        feedback = layer_type(layer).feedback_class.from_module(layer, None)
        form = shape if conv else "dense"
        total += math.prod(direct_feedback_shape(feedback, n_e, found.input_shapes[name], form)) * 4  # float32
    return total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--input-shape", default="3,224,224")
    p.add_argument("--classes", type=int, default=1000)
    args = p.parse_args()
    shape = tuple(int(n) for n in args.input_shape.split(","))
    dense = feedback_bytes(args.arch, shape, args.classes, "dense")
    kernel = feedback_bytes(args.arch, shape, args.classes, "kernel")
    print(f"{args.arch} {shape} -> {args.classes}: DFA feedback, float32")
    print(f"  dense  (n_e x C*H*W per conv): {dense / 2**20:10.1f} MiB")
    print(f"  kernel (n_e x C x k x k):      {kernel / 2**20:10.1f} MiB  ({dense / kernel:.0f}x less)")


if __name__ == "__main__":
    main()
