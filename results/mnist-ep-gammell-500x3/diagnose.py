"""Why Gammell's 784-500×3-10 recipe does not learn here (issue 14): the net's free equilibria on 200 MNIST test
images at initialisation and every 50 batches of training with results/mnist-ep-gammell-500x3/run.sh's settings
(block-settled free phase, 8 Euler nudged steps, β = 1 random sign, persistent states, SGD, batch 20): per layer the
fraction of units at 0 and at 1, the outputs' mean, the test accuracy on those images, and the last batch's nudged
shift, and how many of the window's +β and −β batches stalled (their nudged phase moved no unit by more than
2e-4, twice the tolerance: the dead-network warning's test). One thread.

    python results/mnist-ep-gammell-500x3/diagnose.py --lr 0.02 --batches 300      # > diagnose_lr0.02.txt
    python results/mnist-ep-gammell-500x3/diagnose.py --hidden 100,100,100,100,100 --batches 0   # the 100×5 net
    python results/mnist-ep-gammell-500x3/diagnose.py --lr 0.02 --batches 300 --raw-pixels       # inputs in [0, 1]
    python results/mnist-ep-gammell-500x3/diagnose.py --lr 0.02 --batches 300 --nudge-after-step # their nudged step
"""

import argparse

import torch

from bioplausible.archs import create_arch
from bioplausible.data import load_dataset
from bioplausible.rules import create_rule


def equilibria(net, x, y) -> str:
    """The free equilibria of ``x`` from zero: saturation per layer, output mean and accuracy."""
    with torch.no_grad():
        state = net.settle(x).state
    out = state[:, net.layer_slice(net.num_layers)]
    layers = []
    for l in range(1, net.num_layers + 1):
        s = state[:, net.layer_slice(l)]
        layers.append(f"s{l} at 0 {(s <= 0).float().mean():.2f}, at 1 {(s >= 1).float().mean():.2f}")
    accuracy = (out.argmax(1) == y).float().mean()
    return f"accuracy {accuracy:.3f}, output mean {out.mean():.3f}; " + "; ".join(layers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", default="500,500,500")
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--raw-pixels", action="store_true", help="undo the loader's normalisation: pixels in [0, 1]")
    parser.add_argument("--nudge-after-step", action="store_true", help="Gammell's code's nudged step (see energy.py)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    data = load_dataset("mnist", data_dir=args.data_dir)
    if args.raw_pixels:  # the loader's (0.1307, 0.3081) undone: the input as Gammell et al. feed it (a suspect)
        data.train_x, data.test_x = data.train_x * 0.3081 + 0.1307, data.test_x * 0.3081 + 0.1307
    hidden = tuple(int(h) for h in args.hidden.split(","))
    net = create_arch("energy-net", (784,), 10, hidden_sizes=hidden, settle="block", omega=1.7, nudged_settle="euler",
                      epsilon=0.5, free_steps=500, nudged_steps=8, tolerance=1e-4, topology="layered",
                      nudge_after_step=args.nudge_after_step)  # fmt: skip
    rule = create_rule("ep", loss="mse", beta=1.0, nudging="random-sign", persistent=True)
    net = rule.prepare(net, data.train_x[:2].flatten(1))
    optimizer = torch.optim.SGD(net.parameters(), lr=args.lr)
    x_test, y_test = data.test_x[:200].flatten(1), data.test_y[:200]
    pixels = (", raw pixels" if args.raw_pixels else "") + (", nudge after step" if args.nudge_after_step else "")
    print(f"784-{'-'.join(map(str, hidden))}-10, lr {args.lr}{pixels}, batch 20; free equilibria of 200 test images")
    print(f"  batch 0: {equilibria(net, x_test, y_test)}", flush=True)
    stalled = {"+β": 0, "−β": 0}
    draw = rule.betas

    def drawn() -> list[float]:  # the batch's β, kept to sort its stall by sign
        rule.drawn = draw()
        return rule.drawn

    rule.betas = drawn
    order = torch.randperm(len(data.train_x), generator=torch.Generator().manual_seed(0))
    for b in range(args.batches):
        index = order[b * 20 : (b + 1) * 20]
        optimizer.zero_grad()
        metrics = rule.step(net, data.train_x[index].flatten(1), data.train_y[index], index=index)
        optimizer.step()
        if float(metrics["nudged_shift"]) <= 2e-4:
            stalled["+β" if rule.drawn[0] > 0 else "−β"] += 1
        if (b + 1) % 50 == 0:
            counts = ", ".join(f"{k} {v}" for k, v in stalled.items())
            print(f"  batch {b + 1}: {equilibria(net, x_test, y_test)}; stalled of the 50: {counts}", flush=True)
            stalled = dict.fromkeys(stalled, 0)


if __name__ == "__main__":
    main()
