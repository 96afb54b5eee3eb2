"""Tables of run folders, with the published number beside ours."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import NOT_SETTINGS
from ..runs import load_run
from .papers import published_for
from .tables import markdown_table


def find_runs(root: str | Path) -> list[dict[str, Any]]:
    """Every run folder (one holding summary.json) under ``root``, sorted by path."""
    return [load_run(p.parent) for p in sorted(Path(root).rglob("summary.json"))]


def describe_rule(config: dict[str, Any]) -> str:
    """The rule's name, with its schedule when it has one (target propagation: parallel or alternating) and
    "per-layer lr" when its learning rates are scaled per layer (EP)."""
    options = config.get("rule_options", {})
    notes = [options["schedule"]] if options.get("schedule") else []
    if options.get("layer_lr_scale"):
        notes.append("per-layer lr")
    return f"{config.get('rule')} ({', '.join(notes)})" if notes else str(config.get("rule"))


def topology(config: dict[str, Any]) -> str:
    """An energy network's connectivity ("layered", "skip p=0.04", "dense"); "" for other architectures."""
    options = config.get("arch_options", {})
    if config.get("arch") != "energy-net":
        return ""
    kind = options.get("topology", "layered")
    return f"skip p={options.get('p', 0.1):g}" if kind == "skip" and options.get("p", 0.1) > 0 else kind


def describe_arch(config: dict[str, Any]) -> str:
    options = config.get("arch_options", {})
    shape = f" {options['width']}x{options['depth']}" if {"width", "depth"} <= set(options) else ""
    hidden = options.get("hidden_sizes")
    if hidden and len(set(hidden)) == 1:
        shape = f" {hidden[0]}x{len(hidden)}"
    elif hidden:
        shape = " " + "-".join(str(n) for n in hidden)
    act = f" {options['activation']}" if "activation" in options else ""
    variant = f" {topology(config)}" if topology(config) else ""
    return f"{config.get('arch', '?')}{shape}{act}{variant}"


def run_label(config: dict[str, Any]) -> str:
    """What tells runs of one architecture apart in a legend: the rule (with its schedule or per-layer lr) and an
    energy network's topology."""
    variant = topology(config)
    return f"{describe_rule(config)}, {variant}" if variant else describe_rule(config)


def flat_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The config's settings as one flat mapping (``rule_options`` and ``arch_options`` folded in by name)."""
    flat = {k: v for k, v in config.items() if k not in NOT_SETTINGS and not k.endswith("_options")}
    for group in ("rule_options", "arch_options"):
        flat.update(config.get(group, {}))
    return flat


def varying_settings(configs: list[dict[str, Any]]) -> list[str]:
    """For runs that share a table row's label, the settings in which each differs from the others, e.g.
    "lr=0.000237 init=lecun seed=1" (a hyperparameter search, or seeds of one configuration)."""
    flats = [flat_settings(c) for c in configs]
    keys = sorted({k for f in flats for k in f})
    varying = [k for k in keys if len({repr(f.get(k)) for f in flats}) > 1]  # runs of one label: one rule
    return [" ".join(f"{k}={f.get(k, 'default')}" for k in varying) for f in flats]


def results_table(runs: list[dict[str, Any]]) -> str:
    """Markdown: rule, architecture, dataset, epochs, our best and final test error, the paper's, status.

    When several runs share a label (a search, or seeds), a ``run`` column names each folder and ``settings``
    lists what differs between the runs of that label."""
    labels = [
        (describe_rule(r["config"]), describe_arch(r["config"]), r["config"].get("dataset"), r["summary"].get("epochs"))
        for r in runs
    ]
    groups: dict[tuple, list[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(label, []).append(i)
    settings = [""] * len(runs)
    for members in groups.values():
        if len(members) > 1:
            for i, text in zip(members, varying_settings([runs[i]["config"] for i in members])):
                settings[i] = text
    detailed = any(settings)
    rows = []
    for run, label, setting in zip(runs, labels, settings):
        config, summary = run["config"], run["summary"]
        paper = published_for(config)
        rows.append(
            [
                *label,
                f"{100 * (1 - summary['best_test_accuracy']):.2f}",
                f"{100 * (1 - summary['test_accuracy']):.2f}",
                f"{paper.test_error:.2f} ({paper.source})" if paper else "–",
                summary.get("status"),
                f"{summary.get('wall_time_s', 0):.0f}",
                *([Path(run["path"]).name, setting] if detailed else []),
            ]
        )
    headers = [
        "rule",
        "arch",
        "dataset",
        "epochs",
        "best test err %",
        "final test err %",
        "paper test err %",
        "status",
        "time (s)",
        *(["run", "settings"] if detailed else []),
    ]
    return markdown_table(headers, rows)
