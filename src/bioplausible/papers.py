"""The papers' numbers and training recipes, as data with their citations.

``PUBLISHED``: test errors (%) the papers report, each with the runs it describes: the dataset (the registry name,
plus the size of its full training set: a run on a subset does not match), the rule and architecture, and the
options and settings that must be equal. ``published_for(config)`` finds the number to print beside a run.
``RECIPES``: the training settings the papers (or their code) used, which the study presets read.

Sources are quoted in the project's ``TARGETS.md``; BioTorch's recipe is read from its
``benchmark_configs/cifar10/resnet_20/sgd/*.yaml``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

BARTUNOV = "Bartunov et al. 2018, Table 1"
BIOTORCH = "Sanfiz & Akrout 2021, BioTorch benchmark"
GAMMELL = "Gammell et al. 2020"
LABORIEUX = "Laborieux et al. 2021"

#: Training images of each dataset's full set: a run that read fewer (a subset) is not the paper's setting.
FULL_TRAIN = {"mnist": 60_000, "cifar10": 50_000, "imagenet": 1_281_167}
#: How the papers name the datasets (printed beside ours, which may be a re-encoding: "CIFAR-10 (JPEG q75)").
DATA_NAMES = {"mnist": "MNIST", "cifar10": "CIFAR-10", "imagenet": "ImageNet"}


@dataclass(frozen=True)
class Published:
    """One published test error and the runs it describes.

    Attributes:
        test_error: in %.
        source: the citation.
        dataset, arch, rule: registry names the run's config must have.
        match: further settings that must be equal: ``"epochs"``, ``"lr"`` (config fields),
            ``"arch_options.depth"``, ``"rule_options.schedule"`` (options).
        note: what the number is (e.g. "best of a 60-configuration search").
    """

    test_error: float
    source: str
    dataset: str
    arch: str
    rule: str
    match: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def data(self) -> str:
        return DATA_NAMES.get(self.dataset, self.dataset)


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON sees them (tuples and lists alike, 1 and 1.0 alike)."""
    return json.dumps(a) == json.dumps(b) or (isinstance(a, (int, float)) and isinstance(b, (int, float)) and a == b)


def setting(config: dict[str, Any], key: str) -> Any:
    """``config[key]``, or an option for a dotted key (``arch_options.depth``); None when absent."""
    group, _, name = key.partition(".")
    if name:
        return (config.get(group) or {}).get(name)
    return config.get(key)


def full_training_set(config: dict[str, Any], summary: dict[str, Any] | None = None) -> bool:
    """Whether a run trained on its dataset's full training set, as the papers did: the ``num_train`` its loader
    recorded; for a run that did not record it, the examples per epoch its summary implies (steps / epochs ×
    batch size, at least 80 %: a validation split still counts, a subset or ``max_batches`` does not)."""
    full = FULL_TRAIN.get(config.get("dataset"))
    if not full:
        return True
    source = config.get("data_source") or {}
    if source.get("num_train") is not None:
        return source["num_train"] >= full
    steps, epochs = (summary or {}).get("steps"), (summary or {}).get("epochs")
    if steps and epochs and config.get("batch_size"):
        return steps / epochs * config["batch_size"] >= 0.8 * full
    return True


def published_for(
    config: dict[str, Any], summary: dict[str, Any] | None = None, other_epochs: bool = False
) -> Published | None:
    """The published number for a run with this (resolved) config, if any; none for a run that did not train on
    the full training set (see ``full_training_set``, which reads ``summary`` when the config cannot tell).

    ``other_epochs``: when no entry matches exactly, one that differs only in its number of epochs, its source
    then saying after how many epochs it was published (a shorter run printed beside the paper's full one)."""
    if not full_training_set(config, summary):
        return None
    dataset = config.get("dataset")
    candidates = [
        e for e in PUBLISHED if (e.dataset, e.arch, e.rule) == (dataset, config.get("arch"), config.get("rule"))
    ]
    for entry in candidates:
        if all(_same(setting(config, k), v) for k, v in entry.match.items()):
            return entry
    near = [e for e in candidates if "epochs" in e.match] if other_epochs else []
    epochs = max(config.get("epochs") or 1, 1)
    for entry in sorted(near, key=lambda e: abs(math.log(e.match["epochs"] / epochs))):  # the closest ratio first
        rest = {k: v for k, v in entry.match.items() if k != "epochs"}
        if all(_same(setting(config, k), v) for k, v in rest.items()):
            return dataclasses.replace(entry, source=f"{entry.source}, after {entry.match['epochs']} epochs")
    return None


# ------------------------------------------------------------------------------------ Bartunov et al. 2018

SEARCH = "best test error within 500 epochs, 60-configuration random search"
FC_MNIST = {"arch_options.depth": 5, "arch_options.width": 256, "arch_options.activation": "tanh"}
FC_CIFAR = {"arch_options.depth": 3, "arch_options.width": 1024, "arch_options.activation": "tanh"}


def _bartunov(table: dict[str, float], dataset: str, arch: str, match: dict[str, Any]) -> list[Published]:
    """Rows "rule" or "rule/schedule" of one column of Table 1."""
    rows = []
    for key, error in table.items():
        rule, _, schedule = key.partition("/")
        extra = {"rule_options.schedule": schedule} if schedule else {}
        rows.append(Published(error, BARTUNOV, dataset, arch, rule, {**match, **extra}, SEARCH))
    return rows


_TP_MNIST_FC = {"dtp/alternating": 1.83, "dtp/parallel": 2.86, "sdtp/alternating": 2.28, "sdtp/parallel": 3.52,
                "aosdtp/alternating": 1.86, "aosdtp/parallel": 2.93}  # fmt: skip
_TP_MNIST_LC = {"dtp/alternating": 1.46, "dtp/parallel": 1.52, "sdtp/alternating": 1.90, "sdtp/parallel": 1.98,
                "aosdtp/alternating": 1.91, "aosdtp/parallel": 1.92}  # fmt: skip
PUBLISHED: list[Published] = [
    *_bartunov({"bp": 1.48, "fa": 1.85, "dfa": 2.75, **_TP_MNIST_FC}, "mnist", "mlp", FC_MNIST),
    *_bartunov({"bp": 1.17, "fa": 1.26, "dfa": 2.05, **_TP_MNIST_LC}, "mnist", "lc-net", {}),
    Published(1.01, BARTUNOV, "mnist", "shared-conv-net", "bp", {}, f"BP ConvNet; {SEARCH}"),
    # CIFAR-10: only the alternating schedule of DTP and AO-SDTP is in the table
    *_bartunov(
        {"bp": 41.32, "fa": 41.97, "dfa": 47.80, "dtp/alternating": 42.32, "aosdtp/alternating": 45.40},
        "cifar10",
        "mlp",
        FC_CIFAR,
    ),  # fmt: skip
    *_bartunov(
        {"bp": 32.41, "fa": 37.44, "dfa": 44.41, "dtp/alternating": 39.47, "aosdtp/alternating": 40.21},
        "cifar10",
        "lc-net",
        {},
    ),  # fmt: skip
]

# ------------------------------------------------------------------------------------ BioTorch (top-1 error)

ALL_LAYERS = {"rule_options.bp_layers": []}  # BioTorch trains every layer with the rule


def _biotorch(table: dict[str, float], dataset: str, arch: str, note: str) -> list[Published]:
    return [
        Published(error, BIOTORCH, dataset, arch, rule, {} if rule == "bp" else dict(ALL_LAYERS), note)
        for rule, error in table.items()
    ]


PUBLISHED += [
    *_biotorch(
        {"bp": 8.63, "usf": 10.05, "brsf": 11.02, "frsf": 11.20, "fa": 32.16, "dfa": 45.94},
        "cifar10",
        "resnet20",
        "SGD, 250 epochs",
    ),  # fmt: skip
    *_biotorch(
        {"bp": 8.3, "usf": 8.2, "brsf": 8.69, "frsf": 9.49, "fa": 34.88, "dfa": 38.01},
        "cifar10",
        "resnet56",
        "SGD, 250 epochs",
    ),  # fmt: skip
    *_biotorch(
        {"bp": 30.39, "fa": 85.25, "dfa": 82.45, "usf": 34.97, "brsf": 37.21, "frsf": 36.50},
        "imagenet",
        "resnet18",
        "top-1",
    ),  # fmt: skip
    *_biotorch({"bp": 0.91, "fa": 1.70, "dfa": 1.61}, "mnist", "lenet", ""),
]

# ------------------------------------------------------------------------------------ Gammell et al. 2020

GAMMELL_100X5 = {"arch_options.hidden_sizes": [100] * 5, "lr": 0.015}
GAMMELL_500X3 = {"arch_options.hidden_sizes": [500] * 3}
PUBLISHED += [
    Published(31.1, f"{GAMMELL}, p-sweep", "mnist", "energy-net", "ep",
              {**GAMMELL_100X5, "arch_options.topology": "layered", "epochs": 10}, "p = 0, 10 epochs"),
    Published(11.8, f"{GAMMELL}, p-sweep", "mnist", "energy-net", "ep",
              {**GAMMELL_100X5, "arch_options.topology": "skip", "arch_options.p": 0.016, "epochs": 10}, "p ≈ 0.016"),
    Published(10.3, f"{GAMMELL}, p-sweep", "mnist", "energy-net", "ep",
              {**GAMMELL_100X5, "arch_options.topology": "skip", "arch_options.p": 0.04, "epochs": 10}, "p ≈ 0.042"),
    Published(13.18, GAMMELL, "mnist", "energy-net", "ep",
              {**GAMMELL_100X5, "arch_options.topology": "layered", "epochs": 100}, "1000 / 12 steps"),
    Published(5.24, GAMMELL, "mnist", "energy-net", "ep",
              {**GAMMELL_100X5, "arch_options.topology": "skip", "arch_options.p": 0.1, "arch_options.a": 0.168,
               "rule_options.remove_skip_after": 0, "epochs": 100}, "a = 0.168"),
    Published(2.87, GAMMELL, "mnist", "energy-net", "ep",
              {**GAMMELL_500X3, "arch_options.topology": "layered", "lr": 0.02, "epochs": 100}, "500 / 8 steps"),
    Published(2.57, GAMMELL, "mnist", "energy-net", "ep",
              {**GAMMELL_500X3, "arch_options.topology": "layered", "lr": 0.128, "epochs": 110}, "per-layer lr"),
    Published(2.51, GAMMELL, "mnist", "energy-net", "ep",
              {**GAMMELL_500X3, "arch_options.topology": "skip", "arch_options.p": 0.1, "arch_options.a": 0.0829,
               "rule_options.remove_skip_after": 0, "epochs": 271}, "a = 0.0829"),
]  # fmt: skip

# ------------------------------------------------------------------------------------ Laborieux et al. 2021

# Their net (4 convolutions 128-256-512-512 of 3x3, 250 free steps) and their 120 epochs: a smaller net is not
# printed beside their numbers, and a shorter run of their net only with "after 120 epochs".
LABORIEUX_NET = {"arch_options.conv_channels": [128, 256, 512, 512], "arch_options.kernel_sizes": [3],
                 "arch_options.free_steps": 250, "epochs": 120}  # fmt: skip
PUBLISHED += [
    Published(86.0, LABORIEUX, "cifar10", "conv-energy-net", "ep",
              {**LABORIEUX_NET, "rule_options.nudging": "one-sided"}, "one-sided nudging"),
    Published(11.7, LABORIEUX, "cifar10", "conv-energy-net", "ep",
              {**LABORIEUX_NET, "rule_options.nudging": "symmetric", "rule_options.cost": "ce"},
              "symmetric nudging, cross-entropy"),
]  # fmt: skip


# ------------------------------------------------------------------------------------ recipes


@dataclass(frozen=True)
class Recipe:
    """Training settings a paper (or its code) used, and per rule what differs, keyed as a study's base and grid
    are: TrainConfig fields, and dotted ``rule_options.<name>`` / ``arch_options.<name>`` for a rule's or an
    architecture's own options (``for_rule`` returns them so; a study expands them)."""

    source: str
    settings: dict[str, Any]
    per_rule: dict[str, dict[str, Any]] = field(default_factory=dict)
    note: str = ""

    def for_rule(self, rule: str) -> dict[str, Any]:
        return {**self.settings, **self.per_rule.get(rule, {})}


RECIPES: dict[str, Recipe] = {
    "biotorch-resnet20-sgd": Recipe(
        f"{BIOTORCH}: benchmark_configs/cifar10/resnet_20/sgd/*.yaml",
        {
            "optimizer": "sgd",
            "lr": 0.1,
            "momentum": 0.9,
            "weight_decay": 1e-4,
            "batch_size": 128,
            "epochs": 250,
            "lr_schedule": "step",
            "lr_milestones": [100, 150, 200],
            "init": "xavier",
            "augment": True,
        },
        per_rule={
            "dfa": {"lr": 0.001},
            # BioTorch draws B, and the sign-symmetric magnitudes, with the same Xavier init as W (kp, which it does
            # not benchmark, likewise, so that every rule with layer-wise feedback starts from W's scale)
            **{rule: {"rule_options.feedback_init": "xavier"} for rule in ("fa", "usf", "frsf", "brsf", "kp")},
        },
        note="SGD with momentum 0.9, weight decay 1e-4, batch 128, 250 epochs, lr ×0.1 after epochs 100, 150 and "
        "200, Xavier initialisation of W and of the feedback (B, sign magnitudes), random crop and flip; lr 0.1 "
        "(DFA 0.001)",
    ),  # fmt: skip
    "bartunov2018-mnist-fc": Recipe(
        f"{BARTUNOV} and its appendix (best hyperparameters, MNIST, fully connected)",
        {"optimizer": "adam", "epochs": 500},
        per_rule={
            "bp": {"lr": 1.52e-4},
            "fa": {"lr": 1.68e-4},
            "dfa": {"lr": 1.649e-3},
            "dtp": {
                "lr": 3.08e-4,
                "rule_options.inverse_lr": 4.593e-3,
                "rule_options.alpha": 0.232,
                "rule_options.noise": 0.220,
            },
            "sdtp": {"lr": 3.01e-4, "rule_options.inverse_lr": 9.572e-3, "rule_options.noise": 0.118},
        },  # fmt: skip
        note="Adam; the best configurations of their search on MNIST (DTP and SDTP: the alternating schedule's)",
    ),
    "bartunov2018-search": Recipe(
        f"{BARTUNOV}: the random search's ranges",
        {"optimizer": "adam", "epochs": 500},
        note="lr log-uniform 1e-5..3e-4, α 0.01..0.2, σ 0.01..0.3, Adam β2 ∈ {0.99, 0.999}, ε ∈ {1e-4, 1e-6, 1e-8}",
    ),
}
