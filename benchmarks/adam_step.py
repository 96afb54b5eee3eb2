"""Time of one Adam step, fused (what ``bioplausible.optim.adam`` builds on the CPU) against torch's ``foreach``
implementation, on the parameters of an MLP (default: Bartunov's CIFAR-10 net, 3072-1024×3-10), one thread.

    python benchmarks/adam_step.py                       # results/bench/adam_step_cpu.txt
    python benchmarks/adam_step.py --sizes 784,1000,1000,1000,10
"""

import argparse
import statistics
import time

import torch


def step_ms(params: list[torch.nn.Parameter], repeats: int, **implementation) -> float:
    optimizer = torch.optim.Adam(params, lr=1e-4, **implementation)
    optimizer.step()  # the state is allocated on the first step
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="3072,1024,1024,1024,10", help="layer widths, input first")
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args()
    torch.set_num_threads(1)
    sizes = [int(s) for s in args.sizes.split(",")]
    params = [torch.nn.Parameter(torch.randn(o, i)) for i, o in zip(sizes, sizes[1:])]
    params += [torch.nn.Parameter(torch.zeros(o)) for o in sizes[1:]]
    for p_ in params:
        p_.grad = torch.randn_like(p_)
    n = sum(p_.numel() for p_ in params)
    foreach, fused = step_ms(params, args.repeats, foreach=True), step_ms(params, args.repeats, fused=True)
    setup = f"MLP {args.sizes}, 1 thread, median of {args.repeats}, torch {torch.__version__}"
    print(f"Adam step on {n:,} parameters ({setup})")
    print(f"foreach {foreach:.2f} ms, fused {fused:.2f} ms: fused / foreach = {fused / foreach:.3f}")


if __name__ == "__main__":
    main()
