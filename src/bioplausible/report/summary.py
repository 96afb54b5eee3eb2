"""Tables of run folders, with the published number beside ours."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def results_table(runs: list[dict[str, Any]]) -> str:
    """Markdown: rule, architecture, dataset, epochs, our best and final test error, the paper's, status."""
    rows = []
    for run in runs:
        config, summary = run["config"], run["summary"]
        paper = published_for(config)
        rows.append(
            [
                describe_rule(config),
                describe_arch(config),
                config.get("dataset"),
                summary.get("epochs"),
                f"{100 * (1 - summary['best_test_accuracy']):.2f}",
                f"{100 * (1 - summary['test_accuracy']):.2f}",
                f"{paper.test_error:.2f} ({paper.source})" if paper else "–",
                summary.get("status"),
                f"{summary.get('wall_time_s', 0):.0f}",
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
    ]
    return markdown_table(headers, rows)
