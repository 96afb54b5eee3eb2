"""A study spec's grid points, read by the study that trains them and by the report that counts them."""

from __future__ import annotations

import itertools
from typing import Any

from ..config import TrainConfig


def grids_of(spec: dict[str, Any]) -> list[Any]:
    """The spec's grids: ``grid`` is one mapping of axes or a list of them."""
    grid = spec.get("grid", {})
    return grid if isinstance(grid, list) else [grid]


def points_of(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every grid point (with its seed), in a fixed order: the union of each grid's product."""
    points = []
    seeds = spec.get("seeds") if "random" not in spec else None
    for grid in grids_of(spec):
        axes = dict(grid)
        if seeds:
            axes["seed"] = seeds
        keys = list(axes)
        for values in itertools.product(*(axes[k] for k in keys)):
            point = dict(zip(keys, values))
            if point not in points:
                points.append(point)
    return points


def chosen(field: str, params: dict[str, Any], base: dict[str, Any]) -> str:
    """The rule or architecture (``field``) a point trains: its own value, else the base's, else TrainConfig's
    default."""
    return params.get(field, base.get(field, getattr(TrainConfig(), field)))
