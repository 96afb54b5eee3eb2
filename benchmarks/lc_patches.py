"""A whole training step of Bartunov's CIFAR-10 locally connected net with the LC layers' patches gathered as they
are (``LocallyConnected2d.patches``: strided views of the padded input, one contiguous copy) against the former
``F.unfold(...).permute(2, 0, 1)``, which batched matmuls copy matrix by matrix with L-strided reads. Same
process, interleaved, best of rounds; one thread.

    python benchmarks/lc_patches.py --rules bp,fa,dfa    # batch 100: results/bench/lc_patches_cpu.txt
    python benchmarks/lc_patches.py --batch-size 32      # bp and fa
"""

import time

import torch
import torch.nn.functional as F

from bioplausible.archs import create_arch
from bioplausible.cli import Parser
from bioplausible.errors import BioplausibleError
from bioplausible.layers.local import LocallyConnected2d
from bioplausible.rules import create_rule


def unfold_patches(layer: LocallyConnected2d, h: torch.Tensor) -> torch.Tensor:
    """The former patches: the same values, as a permuted (non-contiguous) view of F.unfold's output."""
    return F.unfold(h, layer.kernel_size, padding=layer.padding, stride=layer.stride).permute(2, 0, 1)


def step_seconds(rule, net, x, y, rounds: int) -> dict[str, float]:
    """Best CPU seconds of one ``rule.step`` with each way of gathering the patches, interleaved."""
    ways = {"strided views": LocallyConnected2d.patches, "unfold + permute": unfold_patches}
    best = dict.fromkeys(ways, float("inf"))
    try:
        for _ in range(rounds + 1):  # the first round warms up and is not counted
            for name, patches in ways.items():
                LocallyConnected2d.patches = patches
                net.zero_grad(set_to_none=True)
                start = time.process_time()
                rule.step(net, x, y)
                best[name] = min(best[name], time.process_time() - start) if _ else best[name]
    finally:
        LocallyConnected2d.patches = ways["strided views"]
    return best


def prepared(name: str, x: torch.Tensor):
    """The rule ``name`` and the lc-net it trains (raises UnknownNameError or IncompatibleError)."""
    rule = create_rule(name)
    return rule, rule.prepare(create_arch("lc-net", (3, 32, 32), 10), x[:2])


def main() -> None:
    parser = Parser(description=__doc__.splitlines()[0])  # one-line errors
    parser.add_argument("--rules", default="bp,fa", help="comma-separated rules")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.batch_size < 1 or args.rounds < 1:
        parser.error("--batch-size and --rounds must be at least 1")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x, y = torch.randn(args.batch_size, 3, 32, 32), torch.randint(0, 10, (args.batch_size,))
    try:  # every rule checked before the first is timed: a typo fails at once, in one line
        pairs = {name: prepared(name, x) for name in args.rules.split(",")}
    except BioplausibleError as e:
        parser.error(str(e))
    print(f"lc-net (CIFAR-10 variant, 3x32x32), batch {args.batch_size}, 1 thread, best of {args.rounds}, CPU s a step")
    for name, (rule, net) in pairs.items():
        best = step_seconds(rule, net, x, y, args.rounds)
        new, old = best["strided views"], best["unfold + permute"]
        print(f"  {name}: strided views {new:.3f} s, unfold + permute {old:.3f} s -> new / old {new / old:.2f}")


if __name__ == "__main__":
    main()
