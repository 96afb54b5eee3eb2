"""The results table: every run with the published number beside ours, labelled by what the rule and architecture
declare, and the data each was trained on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..analysis.document import Table
from ..analysis.runs import Run, as_run, load_runs
from ..config import NOT_SETTINGS
from ..papers import published_for


def find_runs(root: str | Path) -> list[Run]:
    """Every readable run folder (one holding summary.json) under ``root``, sorted by path."""
    return load_runs(root).runs


def flat_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The config's settings as one flat mapping (``rule_options`` and ``arch_options`` folded in by name)."""
    flat = {k: v for k, v in config.items() if k not in NOT_SETTINGS and not k.endswith("_options")}
    for group in ("rule_options", "arch_options"):
        flat.update(config.get(group) or {})
    return flat


def varying_settings(configs: list[dict[str, Any]]) -> list[str]:
    """For runs that share a table row's label, the settings in which each differs from the others, e.g.
    "lr=0.000237 init=lecun seed=1" (a hyperparameter search, or seeds of one configuration)."""
    flats = [flat_settings(c) for c in configs]
    keys = sorted({k for f in flats for k in f})
    varying = [k for k in keys if len({repr(f.get(k)) for f in flats}) > 1]
    return [" ".join(f"{k}={f.get(k, 'default')}" for k in varying) for f in flats]


def row_label(run: Run) -> tuple[str, str, str, Any]:
    return run.rule_label, run.arch_label, run.data, run.summary.get("epochs")


def paper_cell(run: Run) -> str:
    paper = published_for(run.config, run.summary, other_epochs=True)
    return f"{paper.test_error:.2f} ({paper.source})" if paper else "–"


def percent_error(run: Run, which: str) -> str:
    value = run.summary.get(which)
    return "–" if value is None else f"{100 * (1 - value):.2f}"


def results_rows(runs: list[Run]) -> Table:
    """Rule, architecture, data, epochs, our best and final test error, the paper's (with its citation), status.

    When several runs share a label (a search, or seeds), a ``run`` column names each folder and ``settings``
    lists what differs between the runs of that label; the epochs they got to do not split them (an unfinished
    run of a search still shows its settings)."""
    groups: dict[tuple, list[int]] = {}
    for i, run in enumerate(runs):
        groups.setdefault(row_label(run)[:-1], []).append(i)
    settings = [""] * len(runs)
    for members in groups.values():
        if len(members) > 1:
            for i, text in zip(members, varying_settings([runs[i].config for i in members])):
                settings[i] = text
    detailed = any(settings)
    rows = []
    for run, setting in zip(runs, settings):
        rows.append([
            *row_label(run), percent_error(run, "best_test_accuracy"), percent_error(run, "test_accuracy"),
            paper_cell(run), status_cell(run.summary), f"{run.summary.get('wall_time_s') or 0:.0f}",
            *([run.path.name, setting] if detailed else []),
        ])  # fmt: skip
    headers = ["rule", "arch", "data", "epochs", "best test err %", "final test err %", "paper test err %", "status",
               "time (s)", *(["run", "settings"] if detailed else [])]  # fmt: skip
    return Table.of(headers, rows)


def status_cell(summary: dict[str, Any]) -> str | None:
    """The run's status, marked "warned" when it was warned about while training (the report's notes say why)."""
    status = summary.get("status")
    return f"{status}, warned" if summary.get("warnings") else status


def results_table(runs: list[Run] | list[dict[str, Any]]) -> str:
    """``results_rows`` as Markdown (runs as :class:`Run` or ``runs.load_run`` dicts)."""
    return results_rows([as_run(r) for r in runs]).markdown()
