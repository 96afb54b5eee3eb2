"""The four seed studies as sweep specs (data, not code), each at two budgets (skip-connections at three).

``paper`` uses the published settings as far as the papers state them; ``small`` finishes on 2 CPU cores within
about an hour and says in its ``notes`` what it reduced, so a report never passes a small study off as the paper's.
``medium`` (skip-connections only) runs Im et al.'s grid on MNIST with step budgets and three seeds on 2 CPU cores
in about 4 hours, and says what it reduced.
Rules or architectures that are not registered yet are left out with a "not yet available" message
(``available_spec``); the rest of the study runs.
"""

from __future__ import annotations

import copy
from typing import Any

from ..errors import ConfigError

BUDGETS = ("small", "medium", "paper")
EARLY_STOP_SMALL = {"val_fraction": 0.1, "patience": 3}
SIGN_RULES = ["usf", "frsf", "brsf", "fa"]


SKIP_RULES = ["bp", "fa", "dtp"]
SKIP_COMMON = (
    "Im, Patil & Branson: plain nets (NN: mlp, convnet) against densely connected ones (DN: dense-mlp, "
    "dense-convnet) under bp, fa and dtp on MNIST; every configuration's test accuracy sorted best to worst, and per "
    "rule the dense - plain difference in area under that curve with a 95 % bootstrap interval. The grid axes are "
    "the paper's: learning rate, early-stopping point (iterations = optimizer steps, i.e. mini-batch updates), depth "
    "and activation (sigmoid, relu). One run per (arch, rule, depth, activation, lr, seed) trains to the largest "
    "iteration count and records the test accuracy at every early-stopping point on the way (exactly what a "
    "separate shorter run ends with), so the iteration axis costs no extra training; the learning rate is constant "
    "(a schedule would make the points differ from shorter runs). No validation split: the iterations are the "
    "early stopping. Probes are off (probe_every 0): the study does not need them, and a rule's probes that draw "
    "random numbers could perturb its training. Taken from the paper (as the issue quotes it): MNIST; NN, DN, "
    "ConvNet, DenseConvNet; BP, FA, DTP; depth 3-7; sigmoid lr 0.1-0.001 with early stopping at 200k-800k "
    "iterations, relu lr 1e-3 to 1e-5 with 100k-1,000k iterations. Assumed (the paper's text was not available to "
    "us): plain SGD (the sigmoid rates, 100x the relu ones, fit SGD, under which each sigmoid layer scales the "
    "gradient by at most 1/4; under Adam they would not need to differ), batch 100, Glorot (xavier) "
    "initialisation (the Keras/TensorFlow default of the time), the widths below, three seeds."
)


def _skip_connections(budget: str) -> dict[str, Any]:
    return {"small": _skip_small, "medium": _skip_medium, "paper": _skip_paper}[budget]()


def _skip_small() -> dict[str, Any]:
    axes = {
        "rule": SKIP_RULES,
        "arch_options.depth": [3, 5, 7],
        "arch_options.activation": ["sigmoid", "relu"],
        "lr": [1e-3, 1e-2],
    }
    return {
        "name": "skip-connections-small",
        "notes": (
            "Im, Patil, Branson: NN vs DN on MNIST, every configuration's accuracy sorted best to worst. SMALL "
            "budget, a smoke test that CANNOT TEST THE CLAIM: the 8x8 digits set (1437 train images) instead of "
            "MNIST; depths 3, 5, 7; two learning rates (1e-3, 1e-2); width 64 (MLPs) and 16 channels (ConvNets); "
            "at most 15 epochs of 23 batches (345 steps) with early stopping (patience 3 on a 10 % validation "
            "split); one seed. At that budget a 7-layer sigmoid MLP does not train even with backprop and plain "
            "ConvNets stay near chance under FA, so a dense curve lying higher says that dense nets train faster, "
            "not that they are less sensitive to their hyperparameters; and with one seed no difference has an "
            "interval. Use --budget medium (MNIST, step budgets, three seeds) to test the claim."
        ),
        "base": {"dataset": "digits", "epochs": 15, "batch_size": 64, "optimizer": "adam", **EARLY_STOP_SMALL},
        "grid": [
            {"arch": ["mlp", "dense-mlp"], **axes, "arch_options.width": [64]},
            {"arch": ["convnet", "dense-convnet"], **axes, "arch_options.channels": [16]},
        ],
        "seeds": [0],
    }


def _step_grids(
    families: list[tuple[list[str], dict[str, Any]]],
    depths: list[int],
    schedules: dict[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    """One grid per (architecture family, activation): the family's settings, the activation's lr grid and its
    step budget (trained to the last early-stopping point, evaluated at each)."""
    grids = []
    for archs, family in families:
        for activation, schedule in schedules.items():
            grids.append({
                "arch": archs,
                "rule": SKIP_RULES,
                "arch_options.depth": depths,
                "arch_options.activation": [activation],
                "lr": schedule["lr"],
                **{k: [v] for k, v in family.items()},
                "max_steps": [max(schedule["iterations"])],
                "eval_steps": [schedule["iterations"]],
            })  # fmt: skip
    return grids


STEP_BASE = {
    "dataset": "mnist",
    "init": "xavier",
    "val_fraction": 0.0,
    "patience": 0,
    "lr_schedule": "constant",
    "probe_every": 0,
}


def _skip_medium() -> dict[str, Any]:
    mlp = {"arch_options.width": MEDIUM["width"], "batch_size": 100}
    conv = {"arch_options.channels": MEDIUM["channels"], "batch_size": MEDIUM["conv_batch"]}
    schedules = {
        "sigmoid": {"lr": MEDIUM["sigmoid_lr"], "iterations": MEDIUM["sigmoid_iterations"]},
        "relu": {"lr": MEDIUM["relu_lr"], "iterations": MEDIUM["relu_iterations"]},
    }
    conv_schedules = {
        "sigmoid": {"lr": MEDIUM["sigmoid_lr"], "iterations": MEDIUM["conv_sigmoid_iterations"]},
        "relu": {"lr": MEDIUM["relu_lr"], "iterations": MEDIUM["conv_relu_iterations"]},
    }
    grids = _step_grids([(["mlp", "dense-mlp"], mlp)], MEDIUM["depths"], schedules)
    grids += _step_grids([(["convnet", "dense-convnet"], conv)], MEDIUM["depths"], conv_schedules)
    return {
        "name": "skip-connections-medium",
        "notes": SKIP_COMMON + " " + MEDIUM_NOTES,
        "base": {**STEP_BASE, "optimizer": "adam", "threads": 1},
        "grid": grids,
        "seeds": [0, 1, 2],
    }


def _skip_paper() -> dict[str, Any]:
    schedules = {
        "sigmoid": {"lr": [0.1, 0.01, 0.001], "iterations": [200_000, 400_000, 600_000, 800_000]},
        "relu": {"lr": [1e-3, 1e-4, 1e-5], "iterations": [100_000, 250_000, 500_000, 750_000, 1_000_000]},
    }
    families = [
        (["mlp", "dense-mlp"], {"arch_options.width": 256, "batch_size": 100}),
        (["convnet", "dense-convnet"], {"arch_options.channels": 32, "batch_size": 100}),
    ]
    return {
        "name": "skip-connections-paper",
        "notes": SKIP_COMMON + " PAPER budget: the published grid (depth 3-7, the learning rates and iteration "
        "counts above), SGD, width 256 (MLPs) and 32 channels (ConvNets), three seeds: for a GPU.",
        "base": {**STEP_BASE, "optimizer": "sgd"},
        "grid": _step_grids(families, [3, 4, 5, 6, 7], schedules),
        "seeds": [0, 1, 2],
    }


# The medium budget: MNIST on 2 CPU cores, planned from one-thread step times measured on this machine (see
# MEDIUM_NOTES for what it reduces; the README's study section has the measurements and the estimate).
MEDIUM = {
    "width": 128,
    "channels": 8,
    "conv_batch": 32,
    "depths": [3, 7],
    "sigmoid_lr": [1e-2, 3e-3, 1e-3],
    "relu_lr": [1e-3, 1e-4, 1e-5],
    "sigmoid_iterations": [1500, 3000, 4500, 6000],
    "relu_iterations": [600, 1500, 3000, 4500, 6000],
    "conv_sigmoid_iterations": [300, 600, 900, 1200],
    "conv_relu_iterations": [120, 300, 600, 900, 1200],
}
MEDIUM_NOTES = (
    "MEDIUM budget (MNIST on 2 CPU cores, about 8.6 core-hours as measured under load on this machine; two "
    "workers of one thread each): it reduces the paper's grid as follows. Depths 3 and 7 (not 3-7). Adam instead "
    "of SGD, because the iteration counts are about 1/150 of the paper's (MLPs: 6,000 steps of batch 100, i.e. "
    "10 epochs, early-stopping points 1,500-6,000 for sigmoid and 600-6,000 for relu, the paper's ratios; "
    "ConvNets: 1,200 steps of batch 32, 0.64 epoch, points 300-1,200 and 120-1,200) and plain SGD does not train a "
    "deep sigmoid net in so few steps (bp, mlp 128x7 sigmoid, lr 0.1: chance after 3,000 steps); the lr grids are "
    "Adam's: relu 1e-3, 1e-4, 1e-5 (the paper's values) and sigmoid 1e-2, 3e-3, 1e-3 (the paper's 0.1-0.001 are "
    "SGD rates: under Adam 0.1 and 0.01 stall a sigmoid net). Width 128 for the MLPs (not 256) and 8 channels for "
    "the ConvNets (a plain ConvNet's output reads the global average of its last 8 maps, a dense one's of all "
    "1 + 8 x depth). Three seeds."
)


def _bartunov2018(budget: str) -> dict[str, Any]:
    small = budget == "small"
    tp = ["dtp", "sdtp", "aosdtp"]
    return {
        "name": f"bartunov2018-{budget}",
        "notes": (
            "Bartunov et al. 2018, Table 1: MNIST, FC 5x256 tanh and locally connected nets, random search per "
            "method over lr and Adam beta2/eps, and for the TP rules over alpha, noise (their ranges) and the "
            "inverse lr (log-uniform in [3e-4, 3e-2]: this library's range, where its own search found the stable "
            "alternating configurations; the rules without inverses ignore these). LeCun-normal initialisation "
            "(std 1/sqrt(fan_in), the variance-preserving kind of the TensorFlow codebases of the time): with "
            "PyTorch's default the top hidden layers of the 5x256 tanh net carry less signal than TP's noise. "
            + (
                "SMALL budget: the digits set instead of MNIST, 4 random configurations per (net, rule, schedule) "
                "instead of 60, 50 epochs instead of 500, the FC net only (LC nets are too slow for an hour on "
                "2 cores)."
                if small
                else "PAPER budget: MNIST, 60 configurations per method, 500 epochs (best test error)."
            )
        ),
        "base": {
            "dataset": "digits" if small else "mnist",
            "epochs": 50 if small else 500,
            "batch_size": 64 if small else 128,
            "optimizer": "adam",
            "init": "lecun",
            "arch_options": {},
        },
        "grid": [
            {
                "arch": ["mlp"],
                "rule": ["bp", "fa", "dfa"],
                "arch_options.depth": [5],
                "arch_options.width": [256],
                "arch_options.activation": ["tanh"],
            },
            {
                "arch": ["mlp"],
                "rule": tp,
                "rule_options.schedule": ["parallel", "alternating"],
                "arch_options.depth": [5],
                "arch_options.width": [256],
                "arch_options.activation": ["tanh"],
            },
        ]  # fmt: skip
        + (
            []
            if small
            else [
                {"arch": ["lc-net"], "rule": ["bp", "fa", "dfa"]},
                {"arch": ["lc-net"], "rule": tp, "rule_options.schedule": ["parallel", "alternating"]},
            ]
        ),
        "random": {
            "n_trials": 4 if small else 60,
            "sampler": "random",
            "params": {
                "lr": {"low": 1e-5, "high": 3e-4, "log": True},
                "adam_beta2": {"choices": [0.99, 0.999]},
                "adam_eps": {"choices": [1e-4, 1e-6, 1e-8]},
                "rule_options.alpha": {"low": 0.01, "high": 0.2},
                "rule_options.noise": {"low": 0.01, "high": 0.3},
                "rule_options.inverse_lr": {"low": 3e-4, "high": 3e-2, "log": True},
            },
            "seed": 2018,
        },
        "seeds": [0],
    }


def _sign_symmetry(budget: str) -> dict[str, Any]:
    small = budget == "small"
    return {
        "name": f"sign-symmetry-{budget}",
        "notes": (
            "Xiao et al. 2018: BP, sign symmetry (uSF, frSF, brSF) and FA on a ResNet, last layer by BP or not; "
            "the report shows the alignment angles over training. "
            + (
                "SMALL budget: ResNet-20 at a quarter width on the 8x8 digits set, 30 epochs, Adam, instead of "
                "ResNet-18 on ImageNet."
                if small
                else "PAPER budget: ResNet-18 on ImageNet, SGD with momentum, 90 epochs, cosine schedule."
            )
        ),
        "base": {
            "dataset": "digits" if small else "imagenet",
            "arch": "resnet20" if small else "resnet18",
            "arch_options": {"width_multiplier": 0.25} if small else {},
            "epochs": 30 if small else 90,
            "batch_size": 64 if small else 256,
            "optimizer": "adam" if small else "sgd",
            "lr": 1e-3 if small else 0.1,
            "momentum": 0.0 if small else 0.9,
            "weight_decay": 0.0 if small else 1e-4,
            "lr_schedule": "constant" if small else "cosine",
        },
        "grid": [{"rule": ["bp"]}, {"rule": SIGN_RULES, "rule_options.bp_layers": [[], ["fc"]]}],
        "seeds": [0],
    }


def _layer_skipping_ep(budget: str) -> dict[str, Any]:
    small = budget == "small"
    depth = 5
    scales = [4.0**-i for i in range(depth + 1)]  # Gammell's factor 4 per layer, first hidden layer fastest
    return {
        "name": f"layer-skipping-ep-{budget}",
        "notes": (
            "Gammell et al. 2020: EP on a 100x5 layered energy net with one global lr, with per-layer lrs, and "
            "with small-world layer-skipping connections over p in {0.004, 0.016, 0.04, 0.1} (global lr). "
            "The per-layer scales (factor 4 per layer) extend Gammell's 3-layer schedule to 5 layers. "
            + (
                "SMALL budget: the 8x8 digits set (1437 train images) instead of MNIST; 40 epochs, i.e. about "
                "2,900 steps of batch 20 against the 30,000 of Gammell's 10-epoch MNIST p-sweep; at most 200 free / "
                "12 nudged settling steps with tolerance 1e-4 instead of 1000 / 12; one seed."
                if small
                else "PAPER budget: MNIST, 100 epochs, 1000 free / 12 nudged settling steps."
            )
        ),
        "base": {
            "dataset": "digits" if small else "mnist",
            "arch": "energy-net",
            "rule": "ep",
            "epochs": 40 if small else 100,
            "batch_size": 20,
            "optimizer": "sgd",
            "loss": "mse",
            "rule_options": {"beta": 1.0, "nudging": "random-sign"},
            "arch_options": {
                "hidden_sizes": [100] * depth,
                "epsilon": 0.5,
                "free_steps": 200 if small else 1000,
                "nudged_steps": 12,
                "a": 0.168,
            },
        },
        "grid": [
            {"arch_options.topology": ["layered"], "lr": [0.015]},
            {"arch_options.topology": ["layered"], "lr": [0.128], "rule_options.layer_lr_scale": [scales]},
            {"arch_options.topology": ["skip"], "arch_options.p": [0.004, 0.016, 0.04, 0.1], "lr": [0.015]},
        ],
        "seeds": [0],
    }


PRESETS = {
    "skip-connections": _skip_connections,
    "bartunov2018": _bartunov2018,
    "sign-symmetry": _sign_symmetry,
    "layer-skipping-ep": _layer_skipping_ep,
}


def budgets_of(name: str) -> tuple[str, ...]:
    """The budgets a preset has: every preset has small and paper; skip-connections also medium."""
    return BUDGETS if name == "skip-connections" else ("small", "paper")


def preset_spec(name: str, budget: str = "small") -> dict[str, Any]:
    """The spec of a preset at a budget (a fresh copy: callers may change it)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown study {name!r}; studies: {', '.join(PRESETS)}")
    if budget not in budgets_of(name):
        raise ConfigError(f"the study {name} has the budgets {', '.join(budgets_of(name))} (got {budget!r})")
    return copy.deepcopy(PRESETS[name](budget))


def available_spec(spec: dict[str, Any]) -> tuple[dict[str, Any] | None, list[str]]:
    """The spec without the rules and architectures that are not registered; and a message for each left out.

    Returns ``None`` for the spec when nothing of it can run.
    """
    from ..registry import ARCHS, RULES  # names only: nothing is imported to list them

    spec = copy.deepcopy(spec)
    base = spec.get("base", {})
    missing: dict[str, set[str]] = {"rule": set(), "arch": set()}
    registries = {"rule": RULES, "arch": ARCHS}
    grids = spec.get("grid", {})
    kept = []
    for grid in grids if isinstance(grids, list) else [grids]:
        grid = dict(grid)
        for kind, registry in registries.items():
            if kind in grid:
                missing[kind] |= {v for v in grid[kind] if v not in registry}
                grid[kind] = [v for v in grid[kind] if v in registry]
            elif base.get(kind) is not None and base[kind] not in registry:
                missing[kind].add(base[kind])
                grid[kind] = []
        if all(grid.get(k, [None]) for k in registries):
            kept.append(grid)
    messages = [
        f"{kind} {name!r} is not yet available; the study runs without it (available: {', '.join(registries[kind])})"
        for kind in registries
        for name in sorted(missing[kind])
    ]
    if not kept:
        return None, messages
    spec["grid"] = kept if isinstance(grids, list) else kept[0]
    return spec, messages
