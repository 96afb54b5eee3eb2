"""Published numbers, kept as data with their citations, so every table can print the paper beside us.

Each entry says which runs it describes (``match``: config fields and architecture options that must be equal)
and the published test error in %. Sources: ../shared/TARGETS.md of the project, which quotes the papers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

BARTUNOV = "Bartunov et al. 2018, Table 1"
BARTUNOV_FC = {"dataset": "mnist", "arch": "mlp", "depth": 5, "width": 256, "activation": "tanh"}


@dataclass(frozen=True)
class Published:
    test_error: float
    source: str
    match: dict[str, Any] = field(default_factory=dict)
    note: str = ""


BARTUNOV_LC = {"dataset": "mnist", "arch": "lc-net"}
SEARCH = "best test error, 500 epochs, 60-config search"


def _bartunov(error: float, arch: dict[str, Any], rule: str, schedule: str | None = None) -> Published:
    match = {**arch, "rule": rule, **({"schedule": schedule} if schedule else {})}
    return Published(error, BARTUNOV, match, SEARCH)


PUBLISHED: list[Published] = [
    _bartunov(1.48, BARTUNOV_FC, "bp"),
    _bartunov(1.85, BARTUNOV_FC, "fa"),
    _bartunov(2.75, BARTUNOV_FC, "dfa"),
    _bartunov(1.83, BARTUNOV_FC, "dtp", "alternating"),
    _bartunov(2.86, BARTUNOV_FC, "dtp", "parallel"),
    _bartunov(2.28, BARTUNOV_FC, "sdtp", "alternating"),
    _bartunov(3.52, BARTUNOV_FC, "sdtp", "parallel"),
    _bartunov(1.86, BARTUNOV_FC, "aosdtp", "alternating"),
    _bartunov(2.93, BARTUNOV_FC, "aosdtp", "parallel"),
    _bartunov(1.17, BARTUNOV_LC, "bp"),
    _bartunov(1.26, BARTUNOV_LC, "fa"),
    _bartunov(2.05, BARTUNOV_LC, "dfa"),
    _bartunov(1.46, BARTUNOV_LC, "dtp", "alternating"),
    _bartunov(1.52, BARTUNOV_LC, "dtp", "parallel"),
    _bartunov(1.90, BARTUNOV_LC, "sdtp", "alternating"),
    _bartunov(1.98, BARTUNOV_LC, "sdtp", "parallel"),
    _bartunov(1.91, BARTUNOV_LC, "aosdtp", "alternating"),
    _bartunov(1.92, BARTUNOV_LC, "aosdtp", "parallel"),
    _bartunov(1.01, {"dataset": "mnist", "arch": "shared-conv-net"}, "bp"),
]


GAMMELL = "Gammell et al. 2020"
GAMMELL_NET = {"dataset": "mnist", "arch": "energy-net", "hidden_sizes": [100] * 5, "lr": 0.015}
PUBLISHED += [
    Published(31.1, f"{GAMMELL}, p-sweep", {**GAMMELL_NET, "topology": "layered", "epochs": 10}, "p = 0, 10 epochs"),
    Published(11.8, f"{GAMMELL}, p-sweep", {**GAMMELL_NET, "topology": "skip", "p": 0.016, "epochs": 10}, "p ≈ 0.016"),
    Published(10.3, f"{GAMMELL}, p-sweep", {**GAMMELL_NET, "topology": "skip", "p": 0.04, "epochs": 10}, "p ≈ 0.042"),
    Published(13.18, GAMMELL, {**GAMMELL_NET, "topology": "layered", "epochs": 100}, "1000 / 12 steps"),
    Published(5.24, GAMMELL, {**GAMMELL_NET, "topology": "skip", "p": 0.1, "epochs": 100}, "a = 0.168"),
]


def flat_config(config: dict[str, Any]) -> dict[str, Any]:
    """A run's config with its rule and architecture options lifted to the top level, for matching."""
    return {**config, **config.get("rule_options", {}), **config.get("arch_options", {})}


def published_for(config: dict[str, Any]) -> Published | None:
    """The published number that describes a run with this config, if any."""
    flat = flat_config(config)
    for entry in PUBLISHED:
        if all(flat.get(k) == v for k, v in entry.match.items()):
            return entry
    return None
