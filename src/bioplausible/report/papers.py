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


PUBLISHED: list[Published] = [
    Published(1.48, BARTUNOV, {**BARTUNOV_FC, "rule": "bp"}, "best test error, 500 epochs, 60-config search"),
    Published(1.85, BARTUNOV, {**BARTUNOV_FC, "rule": "fa"}, "best test error, 500 epochs, 60-config search"),
    Published(2.75, BARTUNOV, {**BARTUNOV_FC, "rule": "dfa"}, "best test error, 500 epochs, 60-config search"),
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
