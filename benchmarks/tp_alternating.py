"""Why the alternating schedule of target propagation stalls: a look inside its forward epochs.

Bartunov et al.'s FC net (784-256×5-10, tanh, Adam, batch 100) with ``--schedule alternating``: one epoch trains
the inverses only, the next the forward weights only. Every ``--every`` steps of a forward epoch this prints the
test accuracy (first 2,000 test images), and per hidden layer the inverse's relative reconstruction error, the
angle between the target step ĥ − h and −∂L/∂h (degrees), and the fraction of saturated units (|h| > 0.99).

python benchmarks/tp_alternating.py                          # sdtp with Bartunov's SDTP hyperparameters
python benchmarks/tp_alternating.py --rule dtp --lr 3.08e-4 --inverse-lr 4.593e-3 --noise 0.22
python benchmarks/tp_alternating.py --clamp 0.95             # diagnostic: targets clamped inside tanh's range
python benchmarks/tp_alternating.py --init lecun             # variance-preserving init (the README's runs)
"""

from __future__ import annotations

import argparse

import torch

from bioplausible.archs import create_arch
from bioplausible.archs.init import INITS, initialize
from bioplausible.build import seed_everything
from bioplausible.data import load_dataset
from bioplausible.errors import BioplausibleError
from bioplausible.rules import create_rule


def load(data_dir: str, samples: int):
    try:
        data = load_dataset("mnist", data_dir=data_dir, download=False)
        name = "MNIST"
    except BioplausibleError:
        data, name = load_dataset("synthetic"), "synthetic (no MNIST found)"
    if samples:
        data.train_x, data.train_y = data.train_x[:samples], data.train_y[:samples]
    return data, name


def clamp_targets(rule, bound: float) -> None:
    """Diagnostic only: clamp every hidden target into (−bound, bound), inside the range of tanh."""
    targets = rule.targets

    def clamped(*args, **kwargs):
        return [None if t is None else t.clamp(-bound, bound) for t in targets(*args, **kwargs)]

    rule.targets = clamped


def report(tag: str, model, rule, data, probe_x, probe_y) -> None:
    metrics = rule.probe(model, probe_x, probe_y)
    with torch.no_grad():
        features, _ = rule.forward_layers(probe_x)
        saturated = [(h.abs() > 0.99).float().mean().item() for h in features[1:-1]]
        test_x, test_y = data.test_x[:2000], data.test_y[:2000]
        accuracy = (model(test_x).argmax(1) == test_y).float().mean().item()

    def values(kind: str, fmt: str) -> str:
        return " ".join(format(v, fmt) for k, v in metrics.items() if f"tp_{kind}/" in k)

    print(
        f"{tag:<18} test {accuracy:6.1%} | inverse error {values('inverse_error', '4.2f')} | "
        f"angle {values('target_angle', '3.0f')} | saturated {' '.join(f'{s:4.2f}' for s in saturated)}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rule", default="sdtp", choices=("dtp", "sdtp", "aosdtp"))
    parser.add_argument("--lr", type=float, default=3.01e-4)
    parser.add_argument("--inverse-lr", type=float, default=9.572e-3)
    parser.add_argument("--noise", type=float, default=0.118)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--every", type=int, default=100, help="report every N steps of a forward epoch")
    parser.add_argument("--clamp", type=float, default=0.0, help="clamp hidden targets to ±CLAMP (0: off)")
    parser.add_argument("--init", default="default", choices=INITS, help="weight initialisation (see --init of train)")
    parser.add_argument("--samples", type=int, default=0, help="train on the first N images only (0: all)")
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seed_everything(0)
    data, name = load(args.data_dir, args.samples)
    model = create_arch("mlp", data.input_shape, data.num_classes, depth=5, width=256, activation="tanh")
    initialize(model, args.init)
    options = {"schedule": "alternating", "inverse_lr": args.inverse_lr, "noise": args.noise}
    rule = create_rule(args.rule, loss="ce", **options)
    if args.clamp:
        clamp_targets(rule, args.clamp)
    rule.prepare(model, data.sample(2)[0])
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    generator = torch.Generator().manual_seed(0)
    probe_x, probe_y = data.sample(500)
    settings = f"lr {args.lr:g}, inverse lr {args.inverse_lr:g}, noise {args.noise:g}, init {args.init}"
    print(f"{args.rule} alternating on {name}: {settings}")
    print("columns: hidden layers 1..5; each inverse error is that of the inverse reconstructing that layer")
    for epoch in range(args.epochs):
        rule.start_epoch(epoch)
        for i, (x, y) in enumerate(data.train_batches(100, generator)):
            optimizer.zero_grad(set_to_none=True)
            rule.step(model, x, y)
            optimizer.step()
            if rule.phase == "forward" and i % args.every == 0:
                report(f"epoch {epoch} fwd {i}", model, rule, data, probe_x, probe_y)
        phase = "fwd" if rule.phase == "forward" else "inv"
        report(f"epoch {epoch} {phase} end", model, rule, data, probe_x, probe_y)


if __name__ == "__main__":
    main()
