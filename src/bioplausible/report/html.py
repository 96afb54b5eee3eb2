"""A report of a folder of runs (or a study folder): ``report.md`` with PNG files beside it, and ``report.html``,
one self-contained page (figures embedded as base64 data URIs, no scripts, no external assets).

Built from run folders only: the results table with the papers' numbers, learning curves, per-layer alignment
angles and learning-signal norms over epochs, and for a study the sensitivity curves and their statistics.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from .papers import published_for
from .plots import (
    plot_layer_probes,
    plot_learning_curves,
    plot_p_sweep,
    plot_settling_steps,
    plot_update_profile,
)
from .summary import describe_rule, find_runs, results_table, topology

MAX_PANELS = 12  # per-layer probe figures show at most this many runs: the best of each (arch, rule)
PROBES = [
    ("feedback_angle", "angle between B and Wᵀ (°)", False, "Feedback alignment: angle between B and Wᵀ per layer"),
    ("grad_angle", "angle to the backprop gradient (°)", False, "Angle between the rule's update and backprop's"),
    ("grad_norm", "‖update‖ per layer", True, "Learning-signal magnitude per layer (vanishing with depth?)"),
    (
        "ep_update_norm",
        "‖EP update‖ per adjacent layer pair",
        True,
        "EP weight-update magnitude per layer pair (vanishing learning signal?)",
    ),
]


def is_study(folder: Path) -> bool:
    return (folder / "spec.yaml").exists() or (folder / "study.db").exists()


def figure_key(run: dict[str, Any]) -> tuple:
    """What a figure tells runs apart by: arch, rule with its schedule, energy topology."""
    return run["config"].get("arch"), describe_rule(run["config"]), topology(run["config"])


def representative_runs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The best finished run of each (arch, rule with its schedule, energy topology), by final test accuracy; at
    most MAX_PANELS of them."""
    best: dict[tuple, dict[str, Any]] = {}
    for run in runs:
        if not run["metrics"]:
            continue
        key = figure_key(run)
        accuracy = run["summary"].get("test_accuracy") or 0.0
        if key not in best or accuracy > (best[key]["summary"].get("test_accuracy") or 0.0):
            best[key] = run
    return [best[k] for k in sorted(best, key=str)][:MAX_PANELS]


def write_report(folder: str | Path) -> Path:
    """Write ``report.md``, its PNG figures and ``report.html`` into ``folder``; returns the HTML path."""
    from ..studies.sweep import results_from_runs
    from .sensitivity import study_sections

    folder = Path(folder)
    runs = find_runs(folder)
    if not runs:
        raise ConfigError(f"no run folders (with summary.json) under {folder}")
    study = is_study(folder)
    # a study, or a folder of searches and seeds: one figure line or panel per (arch, rule), its best run
    pick_best = study or len({figure_key(r) for r in runs}) < len(runs)
    shown = representative_runs(runs) if pick_best else [r for r in runs if r["metrics"]]
    sections: list[tuple[str, str | None, Path | None]] = []  # (heading, markdown text, figure)
    notes = study_notes(folder)
    if notes:
        sections.append(("Study", notes, None))
    if not study or any(published_for(r["config"]) for r in runs):  # a study lists its configurations instead
        sections.append(("Results (ours beside the papers')", results_table(runs), None))
    if study:
        results = results_from_runs(runs)
        if results:
            sections += study_sections(folder, results)
    figure = plot_p_sweep(runs, folder / "p_sweep.png")
    if figure:
        sections.append(("Layer skipping: test error against the rewiring probability p", None, figure))
    if shown:
        title = "best run of each (arch, rule)" if pick_best else ""
        sections.append(("Learning curves", None, plot_learning_curves(shown, folder / "learning_curves.png", title)))
    for kind, ylabel, log, heading in PROBES:
        figure = plot_layer_probes(shown, kind, folder / f"{kind}.png", ylabel, log=log)
        if figure:
            sections.append((heading, None, figure))
    optional = [  # figures that exist only for some runs (None otherwise): energy networks
        (
            "Equilibrium propagation: weight change per layer pair (vanishing signal?)",
            plot_update_profile,
            "ep_update_profile",
        ),
        ("Equilibrium propagation: settling steps per batch", plot_settling_steps, "settling_steps"),
    ]
    for heading, plot, name in optional:
        figure = plot(shown, folder / f"{name}.png")
        if figure:
            sections.append((heading, None, figure))
    (folder / "report.md").write_text(markdown(folder, sections))
    page = folder / "report.html"
    page.write_text(html_page(f"bioplausible report: {folder.resolve().name}", sections))
    return page


def study_notes(folder: Path) -> str:
    spec_file = folder / "spec.yaml"
    if not spec_file.exists():
        return ""
    spec = yaml.safe_load(spec_file.read_text()) or {}
    lines = [f"Study `{spec.get('name', folder.name)}`."]
    if spec.get("notes"):
        lines.append(str(spec["notes"]))
    return "\n\n".join(lines)


def markdown(folder: Path, sections: list[tuple[str, str | None, Path | None]]) -> str:
    parts = [f"# Report: {folder.resolve().name}\n"]
    for heading, text, figure in sections:
        parts.append(f"## {heading}\n")
        if text:
            parts.append(text + "\n")
        if figure:
            parts.append(f"![{heading}]({figure.name})\n")
    return "\n".join(parts)


def html_page(title: str, sections: list[tuple[str, str | None, Path | None]]) -> str:
    body = [f"<h1>{html.escape(title)}</h1>"]
    for heading, text, figure in sections:
        body.append(f"<h2>{html.escape(heading)}</h2>")
        if text:
            body.append(markdown_to_html(text))
        if figure:
            data = base64.b64encode(figure.read_bytes()).decode("ascii")
            body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(heading)}"></figure>')
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}"
        "th,td{border:1px solid #bbb;padding:0.25em 0.6em;text-align:left}th{background:#eee}"
        "img{max-width:100%;height:auto}code{background:#f3f3f3;padding:0 0.2em}"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{style}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def markdown_to_html(text: str) -> str:
    """Markdown tables and paragraphs (all the report writes) as HTML."""
    out, table = [], []
    for block in text.split("\n\n"):
        lines = block.strip().splitlines()
        if lines and all(line.startswith("|") for line in lines):
            table = [[html.escape(c.strip()) for c in line.strip("|").split("|")] for line in lines]
            head, rows = table[0], [r for r in table[1:] if not set("".join(r)) <= set("-: ")]
            out.append(
                "<table><thead><tr>"
                + "".join(f"<th>{c}</th>" for c in head)
                + "</tr></thead><tbody>"
                + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
                + "</tbody></table>"
            )
        elif lines:
            text_html = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(" ".join(lines)))
            out.append("<p>" + re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text_html) + "</p>")
    return "\n".join(out)
