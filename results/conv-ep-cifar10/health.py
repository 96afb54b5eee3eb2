"""The EP settling-health checks (bioplausible.rules.ep_health) rerun on the last checkpoint of each conv-EP
CIFAR-10 run under this folder: 10 batches of 64 test images drawn at random (seed 0; the dead-network test needs
10 in a row), the rule's step without an optimizer step, its metrics and the warnings it gives. Checkpoints are not
committed: run it where the runs were trained (or after rerunning them).

    python results/conv-ep-cifar10/health.py [RUNS_FOLDER ...]     # default: results/conv-ep-cifar10
"""

import json
import sys
import warnings
from pathlib import Path

import torch

from bioplausible.build import build, resolve_config
from bioplausible.config import TrainConfig
from bioplausible.engine import load_data

BATCHES, BATCH_SIZE = 10, 64


def check(folder: Path, data_cache: dict) -> None:
    config = resolve_config(TrainConfig.from_dict(json.loads((folder / "config.json").read_text()), drop_facts=True))
    key = (config.dataset, config.data_dir)
    data = data_cache.setdefault(key, load_data(config))
    state = build(config, data)
    state.load_state_dict(torch.load(folder / "checkpoint.pt", weights_only=False))
    torch.set_num_threads(1)
    size = min(BATCH_SIZE, len(data.test_y) // BATCHES)  # a small test set gives smaller batches
    order = torch.randperm(len(data.test_y), generator=torch.Generator().manual_seed(0))  # the test set is by class
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(BATCHES):
            x, y = (
                data.test_x[order[i * size : (i + 1) * size]],
                data.test_y[order[i * size : (i + 1) * size]],
            )
            state.model.zero_grad(set_to_none=True)
            metrics = state.rule.step(state.model, x, y)
    shown = {k: f"{float(metrics[k]):.3g}" for k in ("nudged_shift", "settle_residual", "loss", "accuracy")}
    epoch = state.loop.get("epoch")
    print(f"{folder.name} (checkpoint after epoch {epoch}): last batch {shown}")
    for w in caught:
        print(f"  warning: {str(w.message)[:160]}...")
    if not caught:
        print("  no warning")


def main() -> None:
    roots = [Path(a) for a in sys.argv[1:]] or [Path(__file__).parent]
    folders = sorted(p.parent for root in roots for p in root.glob("*/checkpoint.pt"))
    if not folders:
        sys.exit(f"error: no run folder with a checkpoint.pt under {', '.join(map(str, roots))}")
    cache: dict = {}
    for folder in folders:
        check(folder, cache)


if __name__ == "__main__":
    main()
