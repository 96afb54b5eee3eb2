"""The four seed studies as sweep specs (data, not code), at two or three budgets.

``paper`` uses the published settings as far as the papers state them (their recipes are data in
:mod:`bioplausible.papers`); ``small`` finishes on 2 CPU cores within about an hour; ``medium`` (skip-connections,
bartunov2018, sign-symmetry) is what 2 CPU cores finish in about 3-4 hours. Each says in its ``notes`` what it
reduced, which the report prints, so a report never passes a reduced study off as the paper's.
Rules or architectures that are not registered yet are left out with a "not yet available" message
(``available_spec``); the rest of the study runs.
"""

from __future__ import annotations

import copy
from typing import Any

from ..errors import ConfigError
from ..papers import RECIPES

BUDGETS = ("small", "medium", "paper")
EARLY_STOP_SMALL = {"val_fraction": 0.1, "patience": 3}


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
    "MEDIUM budget (MNIST on 2 CPU cores; planned at 8.6 core-hours, measured at about 11.4 on this shared machine, "
    "most of it DTP on the dense nets; two workers of one thread each): it reduces the paper's grid as follows. "
    "Depths 3 and 7 (not 3-7). Adam instead of SGD, because the iteration counts are about 1/150 of the paper's "
    "(MLPs: 6,000 steps of batch 100, i.e. 10 epochs, early-stopping points 1,500-6,000 for sigmoid and 600-6,000 for"
    " relu, the paper's ratios; ConvNets: 1,200 steps of batch 32, 0.64 epoch, points 300-1,200 and 120-1,200) and "
    "plain SGD does not train a deep sigmoid net in so few steps (bp, mlp 128x7 sigmoid, lr 0.1: chance after 3,000 "
    "steps); the lr grids are Adam's: relu 1e-3, 1e-4, 1e-5 (the paper's values) and sigmoid 1e-2, 3e-3, 1e-3 (the "
    "paper's 0.1-0.001 are SGD rates: under Adam 0.1 and 0.01 stall a sigmoid net). Width 128 for the MLPs (not 256) "
    "and 8 channels for the ConvNets (a plain ConvNet's output reads the global average of its last 8 maps, a dense "
    "one's of all 1 + 8 x depth). Three seeds."
)


TP_RULES = ["dtp", "sdtp", "aosdtp"]
SCHEDULES = ["parallel", "alternating"]
FC_MNIST = {"depth": 5, "width": 256, "activation": "tanh"}
FC_CIFAR = {"depth": 3, "width": 1024, "activation": "tanh"}
BARTUNOV_COMMON = (
    "Bartunov et al. 2018, Table 1: bp, fa, dfa and the target-propagation rules (dtp, sdtp, aosdtp; parallel and "
    "alternating) on fully connected nets (MNIST 5x256, CIFAR-10 3x1024, tanh) and locally connected ones (lc-net, "
    "which picks its CIFAR layers from 3 input channels). Adam; LeCun-normal initialisation (std 1/sqrt(fan_in), the "
    "variance-preserving kind of the TensorFlow codebases of the time): with PyTorch's default the top hidden layers "
    "of the 5x256 tanh net carry less signal than TP's noise. "
)
BARTUNOV_SEARCH = (
    "Random search per (net, rule, schedule) over lr and Adam beta2/eps, and for the TP rules over alpha, noise "
    "(their ranges) and the inverse lr (log-uniform in [3e-4, 3e-2]: this library's range, where its own search "
    "found the stable alternating configurations; the rules without inverses ignore these); the CIFAR-10 nets are "
    "searched over their MNIST ranges, the CIFAR ones not being published. "
)


def _bartunov_nets(dataset: str, arch: str, options: dict[str, Any]) -> list[dict[str, Any]]:
    """Two grids for one net: bp, fa, dfa; and the TP rules under both schedules."""
    net = {"dataset": [dataset], "arch": [arch], **{f"arch_options.{k}": [v] for k, v in options.items()}}
    return [{**net, "rule": ["bp", "fa", "dfa"]}, {**net, "rule": TP_RULES, "rule_options.schedule": SCHEDULES}]


def _bartunov_search(n_trials: int) -> dict[str, Any]:
    return {
        "n_trials": n_trials,
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
    }


def _bartunov2018(budget: str) -> dict[str, Any]:
    return {"small": _bartunov_small, "medium": _bartunov_medium, "paper": _bartunov_paper}[budget]()


def _bartunov_small() -> dict[str, Any]:
    return {
        "name": "bartunov2018-small",
        "notes": BARTUNOV_COMMON + BARTUNOV_SEARCH + "SMALL budget: the digits set instead of MNIST, 4 random "
        "configurations per (net, rule, schedule) instead of 60, 50 epochs instead of 500, the FC net only; no "
        "CIFAR-10 and no LC nets (too slow for an hour on 2 cores).",
        "base": {"dataset": "digits", "epochs": 50, "batch_size": 64, "optimizer": "adam", "init": "lecun"},
        "grid": _bartunov_nets("digits", "mlp", FC_MNIST),
        "random": _bartunov_search(4),
        "seeds": [0],
    }


def _bartunov_medium() -> dict[str, Any]:
    """Their published MNIST hyperparameters, no search: MNIST FC and CIFAR-10 FC (see MEDIUM_BARTUNOV)."""
    recipe = RECIPES["bartunov2018-mnist-fc"]
    borrowed = {"aosdtp": "sdtp"}  # no published configuration: the nearest published one
    grids = []
    for dataset, options, epochs in (("mnist", FC_MNIST, 40), ("cifar10", FC_CIFAR, 25)):
        for rule in ["bp", "fa", "dfa", *TP_RULES]:
            settings = {k: [v] for k, v in recipe.per_rule[borrowed.get(rule, rule)].items()}
            schedules = {"rule_options.schedule": SCHEDULES} if rule in TP_RULES else {}
            net = {f"arch_options.{k}": [v] for k, v in options.items()}
            grid = {"dataset": [dataset], "arch": ["mlp"], "rule": [rule], "epochs": [epochs], **net}
            grids.append({**grid, **settings, **schedules})
    return {
        "name": "bartunov2018-medium",
        "notes": BARTUNOV_COMMON + MEDIUM_BARTUNOV,
        "base": {"dataset": "mnist", "batch_size": 128, "optimizer": "adam", "init": "lecun", "threads": 1},
        "grid": grids,
        "seeds": [0],
    }


MEDIUM_BARTUNOV = (
    "MEDIUM budget (2 CPU cores, about 3 hours; two workers of one thread each), planned from one-thread step times "
    "measured on this machine under load (batch 128; MNIST 5x256: bp, fa, dfa 13 ms, TP rules 29-31 ms; CIFAR-10 "
    "3x1024: bp, fa, dfa 116-131 ms, TP rules 190-202 ms; lc-net on CIFAR-10: bp 3.8 s, dtp 8.0 s, i.e. 25 and 52 "
    "minutes an epoch). It reduces the paper as follows. No search: one run per (net, rule, schedule) with their "
    "published best MNIST fully connected hyperparameters (Adam lr bp 1.52e-4, fa 1.68e-4, dfa 1.649e-3; dtp lr "
    "3.08e-4, inverse lr 4.593e-3, alpha 0.232, noise 0.22; sdtp lr 3.01e-4, inverse lr 9.572e-3, noise 0.118), the "
    "alternating schedule's values used for the parallel one too, and sdtp's for aosdtp (theirs are not published); "
    "on CIFAR-10 the same MNIST values, its own not being published. 40 epochs on MNIST and 25 on CIFAR-10 instead "
    "of 500 (their number is the best test error within 500 epochs). The fully connected nets only: the LC nets "
    "take 25-52 minutes an epoch on CIFAR-10. One seed."
)


def _bartunov_paper() -> dict[str, Any]:
    grids = []
    for dataset, options in (("mnist", FC_MNIST), ("cifar10", FC_CIFAR)):
        grids += _bartunov_nets(dataset, "mlp", options) + _bartunov_nets(dataset, "lc-net", {})
    return {
        "name": "bartunov2018-paper",
        "notes": BARTUNOV_COMMON + BARTUNOV_SEARCH + "PAPER budget: MNIST and CIFAR-10, FC and LC nets, 60 "
        "configurations per (net, rule, schedule), 500 epochs (best test error).",
        "base": {"dataset": "mnist", "epochs": 500, "batch_size": 128, "optimizer": "adam", "init": "lecun"},
        "grid": grids,
        "random": _bartunov_search(60),
        "seeds": [0],
    }


SIGN_RULES = ["usf", "frsf", "brsf", "fa", "dfa", "kp"]
SIGN_COMMON = (
    "Xiao et al. 2018, on CIFAR-10 as BioTorch (Sanfiz & Akrout 2021) benchmarks it: bp, sign symmetry (usf, frsf, "
    "brsf), fa, dfa and kp on a ResNet, each feedback rule with the last layer trained by backprop and without "
    "(rule_options.bp_layers [last] or [], Xiao et al.'s switch; BioTorch's published numbers are for all layers "
    "under the rule); probes on (the alignment angles over training). Recipe: BioTorch's ResNet-20 SGD config "
    "(SGD lr 0.1, dfa 0.001, momentum 0.9, weight decay 1e-4, batch 128, lr x0.1 after epochs 100, 150, 200 of 250, "
    "Xavier initialisation of W and of the feedback of fa, usf, frsf, brsf and kp, random crop and flip). "
)


def _sign_grid(settings: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """bp; every other rule with the last layer on backprop and off, with its own settings from the recipe (its lr,
    and the init its feedback is drawn with where the recipe draws it like W), rules that share them in one grid."""
    grids: list[dict[str, Any]] = [{"rule": ["bp"], "lr": [settings["bp"]["lr"]]}]
    groups: dict[tuple, list[str]] = {}
    for rule in SIGN_RULES:
        own = {k: v for k, v in settings[rule].items() if k == "lr" or k.startswith("rule_options.")}
        groups.setdefault(tuple(sorted(own.items())), []).append(rule)
    for own, rules in groups.items():
        grids.append({"rule": rules, **{k: [v] for k, v in own}, "rule_options.bp_layers": [[], ["last"]]})
    return grids


def scaled_milestones(milestones: list[int], epochs: int, of: int) -> list[int]:
    """The step schedule's milestones at the same fractions of a shorter run (at least epoch 1, increasing)."""
    scaled = []
    for m in milestones:
        value = max(1, round(m * epochs / of))
        if value < epochs and value not in scaled:
            scaled.append(value)
    return scaled


def _sign_symmetry(budget: str) -> dict[str, Any]:
    recipe = RECIPES["biotorch-resnet20-sgd"]
    settings = {rule: recipe.for_rule(rule) for rule in ["bp", *SIGN_RULES]}
    if budget == "small":
        return {
            "name": "sign-symmetry-small",
            "notes": SIGN_COMMON + "SMALL budget, a smoke test: ResNet-20 at a quarter width on the 8x8 digits set, "
            "30 epochs, Adam lr 1e-3, constant, instead of CIFAR-10 with the recipe.",
            "base": {
                "dataset": "digits",
                "arch": "resnet20",
                "arch_options": {"width_multiplier": 0.25},
                "epochs": 30,
                "batch_size": 64,
                "optimizer": "adam",
                "probe_every": 1,
            },  # fmt: skip
            "grid": _sign_grid({rule: {"lr": 1e-3} for rule in settings}),
            "seeds": [0],
        }
    epochs = MEDIUM_SIGN_EPOCHS if budget == "medium" else recipe.settings["epochs"]
    milestones = scaled_milestones(recipe.settings["lr_milestones"], epochs, recipe.settings["epochs"])
    base = {**recipe.settings, "dataset": "cifar10", "arch": "resnet20", "epochs": epochs,
            "lr_milestones": milestones, "probe_every": 1}  # fmt: skip
    if budget == "medium":
        notes = SIGN_COMMON + MEDIUM_SIGN
        base.update(channels_last=True, threads=1)
        grid = _sign_grid(settings)
    else:
        notes = SIGN_COMMON + "PAPER budget: the recipe as published (250 epochs), on ResNet-20 and on ResNet-18 "
        notes += "(with its CIFAR stem, which it picks for 32x32 images): for a GPU."
        grid = [{**g, "arch": ["resnet20", "resnet18"]} for g in _sign_grid(settings)]
    return {"name": f"sign-symmetry-{budget}", "notes": notes, "base": base, "grid": grid, "seeds": [0]}


MEDIUM_SIGN_EPOCHS = 6
MEDIUM_SIGN = (
    "MEDIUM budget (2 CPU cores, about 3 hours; two workers of one thread each, --channels-last): ResNet-20 trains "
    "an epoch of CIFAR-10 in about 230 s on one idle core, so the 13 runs (bp, and 6 rules x last layer on backprop "
    "or not) get 6 epochs each (13 x 6 x 230 s x 1.1 for evaluation and probes = 5.5 core-hours) instead of 250, "
    "with the step schedule's milestones at the same fractions (lr x0.1 after epochs 2, 4 and 5). ResNet-20 only "
    "(ResNet-18 with the CIFAR stem costs about 14x more per epoch). One seed."
)


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


def _ep_open_questions(budget: str) -> dict[str, Any]:
    """Gammell et al.'s (2020) open questions as one study: depth, removing the skip connections, their scale a."""
    small, medium = budget == "small", budget == "medium"
    epochs = {"small": 10, "medium": 6, "paper": 100}[budget]
    depths = [3, 5, 8]
    skip = {"arch_options.topology": ["skip"], "arch_options.p": [0.1]}
    five = {"arch_options.hidden_sizes": [[100] * 5]}
    reductions = {
        "small": "SMALL budget: a smoke test that cannot answer the questions: the 8x8 digits set (1437 train "
        "images), 10 epochs, skip connections removed after 5.",
        "medium": "MEDIUM budget (MNIST on 2 CPU cores, about 2 core-hours): 6 epochs instead of 100, skip "
        "connections removed after 3; one seed. Enough to see which nets learn at all at each depth, not the "
        "final errors of the paper's 100 epochs.",
        "paper": "PAPER budget: 100 epochs (Gammell's), skip connections removed after 50; one seed.",
    }
    return {
        "name": f"ep-open-questions-{budget}",
        "notes": (
            "Gammell et al. 2020 leave open how layer skipping behaves with depth, whether the skip connections "
            "are needed once trained, and how the skip weights' scale a matters. Three questions on their "
            "protocol (EP, one global lr 0.015, beta 1 random sign, batch 20, SGD, MSE, persistent states; free "
            "phase by block settling, omega 1.7, tolerance 1e-4; 12 Euler nudged steps): (1) depth: 3, 5 and 8 "
            "hidden layers of 100, layered against skip p = 0.1, a = 0.168; (2) removal: the skip net of depth "
            "5 trained with its skip connections, which are then removed (zeroed and frozen) for the rest of "
            "training; (3) scale: a in {0.042, 0.168, 0.672} at p = 0.1, depth 5. " + reductions[budget]
        ),
        "base": {
            "dataset": "digits" if small else "mnist",
            "arch": "energy-net",
            "rule": "ep",
            "epochs": epochs,
            "batch_size": 20,
            "optimizer": "sgd",
            "lr": 0.015,
            "loss": "mse",
            "rule_options": {"beta": 1.0, "nudging": "random-sign", "persistent": True},
            "arch_options": {
                "settle": "block",
                "omega": 1.7,
                "nudged_settle": "euler",
                "epsilon": 0.5,
                "free_steps": 200 if small else 500,
                "nudged_steps": 12,
                "tolerance": 1e-4,
                "a": 0.168,
            },
            **({"threads": 1} if medium else {}),
        },
        "grid": [
            {"arch_options.topology": ["layered"], "arch_options.hidden_sizes": [[100] * d for d in depths]},
            {**skip, "arch_options.hidden_sizes": [[100] * d for d in depths]},
            {**skip, **five, "rule_options.remove_skip_after": [epochs // 2]},
            {**skip, **five, "arch_options.a": [0.042, 0.672]},
        ],
        "seeds": [0],
    }


# Laborieux et al. 2021's CIFAR-10 recipe (their code's command for Table 1): 4 convolutions 128-256-512-512, 3x3,
# max pooling after each, padding 1,1,1,0, a 10-unit output; SGD, momentum 0.9, per-layer lrs 0.25 0.15 0.1 0.08
# 0.05, weight decay 3e-4, cosine decay, 120 epochs, batch 128, crop + flip; "my_hard_sig" (our half-hard-sigmoid);
# T1 = 250 free and T2 = 30 nudged steps of the fixed-point iteration; beta 0.5.
LABORIEUX_NET = {
    "conv_channels": [128, 256, 512, 512],
    "kernel_sizes": [3],
    "paddings": [1, 1, 1, 0],
    "pooling": "max",
    "activation": "half-hard-sigmoid",
    "settle_order": "synchronous",
    "free_steps": 250,
    "nudged_steps": 30,
    "tolerance": 0.0,
    "input_scale": 1 / 3,
}
LABORIEUX_LRS = [0.25, 0.15, 0.1, 0.08, 0.05]
# The three estimators Laborieux et al. contrast: one-sided nudging with the MSE output in the energy (their 86 %),
# symmetric nudging with it, and symmetric nudging with a softmax readout and cross-entropy (their 11.7 %).
NUDGING_GRID = [
    {"rule_options.nudging": ["one-sided", "symmetric"], "arch_options.readout": ["energy"],
     "rule_options.cost": ["mse"], "loss": ["mse"]},
    {"rule_options.nudging": ["symmetric"], "arch_options.readout": ["linear"], "rule_options.cost": ["ce"],
     "loss": ["ce"]},
]  # fmt: skip
CONV_EP_COMMON = (
    "Laborieux et al. 2021: equilibrium propagation on convolutional energy networks. On CIFAR-10 one-sided nudging "
    "fails (86 % error) where symmetric nudging (+-beta) learns, most with a softmax readout and cross-entropy "
    "(11.7 %). Three runs per net: one-sided and symmetric nudging with the MSE output inside the energy, and "
    "symmetric nudging with the softmax readout (cross-entropy). "
)


def _conv_ep(budget: str) -> dict[str, Any]:
    return {"small": _conv_ep_small, "medium": _conv_ep_medium, "paper": _conv_ep_paper}[budget]()


def _conv_ep_paper() -> dict[str, Any]:
    return {
        "name": "conv-ep-paper",
        "notes": CONV_EP_COMMON + "PAPER budget: their CIFAR-10 net and recipe (128-256-512-512 3x3 convolutions, "
        "SGD momentum 0.9, per-layer lrs 0.25-0.05, weight decay 3e-4, cosine, 120 epochs, batch 128, crop + flip, "
        "250 free / 30 nudged steps, beta 0.5), for a GPU.",
        "base": {
            "dataset": "cifar10",
            "arch": "conv-energy-net",
            "rule": "ep",
            "epochs": 120,
            "batch_size": 128,
            "optimizer": "sgd",
            "lr": LABORIEUX_LRS[0],
            "momentum": 0.9,
            "weight_decay": 3e-4,
            "lr_schedule": "cosine",
            "augment": True,
            "arch_options": dict(LABORIEUX_NET),
            "rule_options": {"beta": 0.5, "layer_lr_scale": [lr / LABORIEUX_LRS[0] for lr in LABORIEUX_LRS]},
        },  # fmt: skip
        "grid": copy.deepcopy(NUDGING_GRID),
        "seeds": [0],
    }


SMALL_CONV_NET = {
    "conv_channels": [32, 64],
    "kernel_sizes": [5],
    "pooling": "max",
    "activation": "hard-sigmoid",
    "settle_order": "synchronous",
    "free_steps": 60,
    "nudged_steps": 15,
    "tolerance": 0.0,
}
SMALL_CONV_TRAINING = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "batch_size": 64}
MEDIUM_CONV_EP = (
    "MEDIUM budget (2 CPU cores, one thread per run; about 7 core-hours, planned from this machine's measured cost of "
    "0.37 ms per image and settling step on MNIST under load, about 1.9x that on CIFAR-10): a small net, 2 "
    "convolutions 32-64 of 5x5 with max pooling, hard-sigmoid, 60 free / 15 nudged steps, SGD lr 0.05 momentum 0.9, "
    "batch 64, beta 0.5. MNIST: symmetric nudging with the softmax readout, 3 epochs (the issue's bar: 1.5 % test "
    "error; 150 batches of a pilot reached 4.8 %). CIFAR-10: the three runs on the same net, 2 epochs each, with "
    "crop + flip, against the paper's 120 epochs of a 128-256-512-512 net: enough to see whether one-sided nudging "
    "falls behind symmetric nudging early, not the paper's errors."
)


def _conv_ep_medium() -> dict[str, Any]:
    net = {f"arch_options.{k}": [v] for k, v in SMALL_CONV_NET.items()}
    mnist = {"dataset": ["mnist"], "epochs": [3], "augment": [False], "rule_options.nudging": ["symmetric"],
             "arch_options.readout": ["linear"], "rule_options.cost": ["ce"], "loss": ["ce"]}  # fmt: skip
    cifar = [{**grid, "dataset": ["cifar10"], "epochs": [2], "augment": [True]} for grid in NUDGING_GRID]
    return {
        "name": "conv-ep-medium",
        "notes": CONV_EP_COMMON + MEDIUM_CONV_EP,
        "base": {
            "arch": "conv-energy-net",
            "rule": "ep",
            "rule_options": {"beta": 0.5},
            "threads": 1,
            **SMALL_CONV_TRAINING,
        },  # fmt: skip
        "grid": [{**net, **mnist}, *({**net, **grid} for grid in cifar)],
        "seeds": [0],
    }


def _conv_ep_small() -> dict[str, Any]:
    net = {**SMALL_CONV_NET, "conv_channels": [8, 16], "kernel_sizes": [3], "paddings": [1], "free_steps": 30,
           "nudged_steps": 10}  # fmt: skip
    return {
        "name": "conv-ep-small",
        "notes": CONV_EP_COMMON + "SMALL budget: a smoke test that cannot show the contrast: the 8x8 digits set, "
        "8-16 channels of 3x3, 30 free / 10 nudged steps, 5 epochs.",
        "base": {
            "dataset": "digits",
            "arch": "conv-energy-net",
            "rule": "ep",
            "epochs": 5,
            "augment": False,
            "rule_options": {"beta": 0.5},
            "arch_options": net,
            **SMALL_CONV_TRAINING,
        },  # fmt: skip
        "grid": copy.deepcopy(NUDGING_GRID),
        "seeds": [0],
    }


PRESETS = {
    "skip-connections": _skip_connections,
    "bartunov2018": _bartunov2018,
    "sign-symmetry": _sign_symmetry,
    "layer-skipping-ep": _layer_skipping_ep,
    "ep-open-questions": _ep_open_questions,
    "conv-ep": _conv_ep,
}


def budgets_of(name: str) -> tuple[str, ...]:
    """The budgets a preset has: small and paper, and medium for the studies planned for 2 CPU cores."""
    return ("small", "paper") if name == "layer-skipping-ep" else BUDGETS


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
