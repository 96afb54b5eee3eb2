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
    """The rule's name, with its schedule when it has one (target propagation: parallel or alternating)."""
    schedule = config.get("rule_options", {}).get("schedule")
    return f"{config.get('rule')} ({schedule})" if schedule else str(config.get("rule"))


def describe_arch(config: dict[str, Any]) -> str:
    options = config.get("arch_options", {})
    shape = f" {options['width']}x{options['depth']}" if {"width", "depth"} <= set(options) else ""
    act = f" {options['activation']}" if "activation" in options else ""
    return f"{config.get('arch', '?')}{shape}{act}"


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
