"""Train several rules one after another in one process group (launched by tests/test_distributed.py, alone or
under torchrun), so the data-parallel tests start the interpreter and the process group once, not once per rule.

    python tests/ddp_job.py OUT EPOCHS fresh|resume RULE [RULE ...]
"""

import sys

from bioplausible.config import TrainConfig
from bioplausible.engine import fit

SMALL = {"dataset": "synthetic", "arch": "mlp", "arch_options": {"depth": 2, "width": 12}}
SETUPS = {  # a job named RULE@ARCH trains that rule on that architecture; others train on SMALL
    "ep": {
        "dataset": "synthetic",
        "arch": "energy-net",
        "arch_options": {"hidden_sizes": (8,), "free_steps": 30, "nudged_steps": 6},
        "rule_options": {"persistent": True},
    },
    "ep@conv-energy-net": {  # 8 batches of the digits: 16 steps in 2 epochs, as the synthetic set gives
        "dataset": "digits",
        "max_batches": 8,
        "arch": "conv-energy-net",
        "arch_options": {"conv_channels": (4,), "kernel_sizes": (3,), "paddings": (1,), "free_steps": 30},
        "rule_options": {"persistent": True, "nudging": "symmetric", "cost": "ce"},
    },
}


def main() -> None:
    out, epochs, mode, *rules = sys.argv[1:]
    for rule in rules:
        setup = SETUPS.get(rule, SMALL)
        config = TrainConfig(
            rule=rule.split("@")[0], epochs=int(epochs), batch_size=32, lr=0.01, seed=3, device="cpu",
            threads=1, progress=False, out=f"{out}/{rule}", resume=mode == "resume", **setup,
        )  # fmt: skip
        fit(config, quiet=True)


if __name__ == "__main__":
    main()
