"""The sections of a sensitivity study (Im, Patil & Branson): the claim's test in sentences generated from the
numbers, the sorted-curve figure with its seed spread, the curves' statistics with intervals, and every
configuration with every setting that varies as a column. Also writes ``results.csv``, the compact results file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..analysis.cost import cost_table, remaining_cost
from ..analysis.curves import (
    claim_sentences,
    claim_table,
    claim_tests,
    configuration_table,
    curve_table,
    plot_sensitivity,
    untrained_by_backprop,
    varying_settings,
    write_results_csv,
)
from ..analysis.document import Figure, Paragraph, Section
from ..analysis.sensitivity import N_BOOT

BOOTSTRAP_NOTE = (
    "Area = the mean test accuracy over the grid's configurations (the area under the sorted curve with the rank "
    "scaled to 0..1), in %; Δ in points of %. Intervals: 95 % percentile bootstrap, B = {n_boot}, generator seed 0. "
    "A replicate resamples the cells (depth × activation × lr: what one run per seed covers) with replacement, and "
    "within each cell its seeds with replacement; a seed brings all the early-stopping points of its run. A "
    "comparison draws the same cells for the nets it compares and their seeds independently, on the configurations "
    "both have. A claim is supported where the interval of Δ area lies above 0. The last column compares the "
    "dense net's gain under the rule with its gain under the control rule: above 0 means dense connections help "
    "the rule more than they help backprop."
)
COST_NOTE = (
    "Wall time: each finished run's `wall_time_s` (resumed sessions summed); core hours: wall time × the CPU "
    "threads the run used × its processes. Runs on a GPU, or without a recorded thread count, count in wall time "
    "only, runs without a recorded wall time in neither (the last column counts both). Measured on the machine "
    "that trained the runs, with whatever else ran on it at the time. The grid's runs are matched by their "
    "settings; other runs in the folder count in the table only."
)
SENSITIVITY = "Hyperparameter sensitivity (sorted best to worst)"


def is_study(folder: Path) -> bool:
    return (folder / "spec.yaml").exists() or (folder / "study.db").exists()


def study_notes(folder: Path) -> list[Paragraph]:
    """The study's name and its spec's notes (what each budget reduced); nothing outside a study."""
    spec_file = folder / "spec.yaml"
    if not spec_file.exists():
        return []
    spec = yaml.safe_load(spec_file.read_text()) or {}
    notes = [Paragraph(f"Study `{spec.get('name', folder.name)}`.")]
    notes += [Paragraph(str(spec["notes"]))] if spec.get("notes") else []
    if spec.get("overrides"):
        changed = ", ".join(f"{k} = {v}" for k, v in spec["overrides"].items())
        notes.append(Paragraph(f"**Run with {changed} from the command line**, in place of the spec's values above."))
    return notes


def compute_section(folder: Path, runs: list[Any]) -> Section:
    """What the study's runs cost (wall and core hours per arch and rule) and, for a grid, what is left."""
    spec_file = folder / "spec.yaml"
    spec = (yaml.safe_load(spec_file.read_text()) or {}) if spec_file.exists() else {}
    blocks: list[Any] = [cost_table(runs)]
    if spec.get("grid") and "random" not in spec:
        blocks.append(Paragraph(remaining_cost(runs, spec)))
    blocks.append(Paragraph(COST_NOTE))
    return Section("Compute", blocks)


def study_sections(folder: Path, results: list[dict[str, Any]], n_boot: int = N_BOOT) -> list[Section]:
    """The claim test, the sensitivity figure and statistics, and every configuration; writes results.csv."""
    write_results_csv(results, folder / "results.csv")
    sections: list[Section] = []
    tests = claim_tests(results, n_boot)
    if tests:
        untrained = untrained_by_backprop(results)
        caution = (
            [Paragraph("Caution: at this budget backprop itself does not train " + "; ".join(untrained) + ". There "
                       "a dense curve lying higher says that the dense net trains within the budget, not that it is "
                       "less sensitive.")]
            if untrained
            else []
        )  # fmt: skip
        sentences = [Paragraph(s) for s in claim_sentences(tests)]
        note = Paragraph(BOOTSTRAP_NOTE.format(n_boot=n_boot))
        blocks = [*caution, *sentences, claim_table(tests), note]
        sections.append(Section("Does our data support the claim? (dense − plain, per rule)", blocks))
    figure = Figure(SENSITIVITY, plot_sensitivity(results, folder / "sensitivity.png"))
    sections.append(Section(SENSITIVITY, [curve_table(results, n_boot), figure]))
    settings = varying_settings(results)
    after = "after `iterations` optimizer steps, " if "iterations" in settings else ""
    intro = (
        f"Every configuration of each (arch, rule), best first; the settings that vary: {', '.join(settings)}. "
        f"Accuracy: test accuracy {after}mean over seeds (and its standard deviation over them). All values, one "
        "row per seed, are in `results.csv`."
    )
    sections.append(Section("Every configuration", [Paragraph(intro), configuration_table(results)]))
    return sections
