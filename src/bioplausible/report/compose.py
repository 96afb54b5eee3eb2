"""A report of a folder of runs (or a study folder), built once from the runs loaded once: ``report.md`` with its
PNG figures beside it, and ``report.html``, one self-contained page.

What it shows is read from the runs and the declarations, never from a rule's or architecture's name: the
results table (labels from ``describe``, the published number beside ours), a study's sensitivity sections, the
figures the runs' architectures and rules declare (``figures``), the learning curves, and every probe the runs
logged, drawn from its declared spec. The folder's lock is held while writing: a second writer is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from ..analysis.document import Document, Figure, Paragraph, Section, Table
from ..analysis.figures import first_seen, plot_learning_curves, plot_probe, probe_file
from ..analysis.results import results_from_runs
from ..analysis.runs import Loaded, Run, load_runs, registered
from ..errors import ConfigError, FolderBusy
from ..papers import published_for
from ..registry import ARCHS, RULES
from ..runs import atomic_write
from .render import html_page, markdown
from .study import compute_section, is_study, study_notes, study_sections
from .summary import results_rows

MAX_PANELS = 12  # per-layer probe figures show at most this many runs: the best of each (arch, rule)
RESULTS = "Results (ours beside the papers')"


@dataclass(frozen=True)
class WrittenReport:
    """What ``write_report_files`` wrote: the page, the Markdown file, and the results table it holds."""

    page: Path
    markdown: Path
    results: Table
    notes: list[str]  # what a reader of the printed table must also know (runs not finished)


@contextmanager
def holding(folder: Path, wait_s: float = 0) -> Iterator[bool]:
    """Hold ``folder``'s lock (the one runs hold) while writing, waiting up to ``wait_s`` seconds for another
    holder; yields whether it had to wait. FolderBusy if the lock is still held after that."""
    lock = FileLock(folder / ".lock", thread_local=False)
    waited = False
    try:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            waited = True
            lock.acquire(timeout=wait_s)
    except Timeout:
        raise FolderBusy(f"{folder} is in use by another process (a run or a report writing it); wait for it to "
                          "finish and run the report again") from None  # fmt: skip
    try:
        yield waited
    finally:
        lock.release()


def write_report(folder: str | Path, wait_s: float = 0) -> Path:
    """Write ``report.md``, its PNG figures and ``report.html`` into ``folder``; returns the HTML path. Waits up
    to ``wait_s`` seconds for another process writing the folder (FolderBusy after that)."""
    return write_report_files(folder, wait_s).page


def write_report_files(folder: str | Path, wait_s: float = 0) -> WrittenReport:
    """As ``write_report``; also returns the results table (what ``bioplausible report`` prints)."""
    folder = Path(folder)
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise ConfigError(f"{folder} {what}: give the folder that holds the run folders (e.g. results/mnist-fc)")
    loaded = load_runs(folder)
    if not loaded.runs:
        problems = "".join(f"; {p}" for p in loaded.problems)
        raise ConfigError(f"no run folders (with summary.json) under {folder}{problems}")
    with holding(folder, wait_s) as waited:
        if waited:  # another writer went first (a study's other worker): read the runs as they are now
            loaded = load_runs(folder)
        document, results = build_report(folder, loaded)
        text, page = markdown(document, folder), html_page(document)
        atomic_write(folder / "report.md", lambda f: f.write(text.encode()))
        atomic_write(folder / "report.html", lambda f: f.write(page.encode()))
    notes = [*loaded.problems, *unfinished_note(loaded.runs, folder)]  # a folder left out is said where it is read
    return WrittenReport(folder / "report.html", folder / "report.md", results, notes)


def build_report(folder: Path, loaded: Loaded) -> tuple[Document, Table]:
    """The report's document (its figures are written into ``folder`` as it is built) and its results table."""
    runs, study = loaded.runs, is_study(folder)
    # a study, or a folder of searches and seeds: one figure line or panel per (arch, rule), its best run
    pick_best = study or len({figure_key(r) for r in runs}) < len(runs)
    shown = representative_runs(runs) if pick_best else [r for r in runs if r.metrics]
    document = Document(f"Report: {folder.resolve().name}")
    document.add("Study", *study_notes(folder))
    notes = [*loaded.problems, *unfinished_note(runs, folder), *warned_note(runs, folder)]
    document.add("Notes", *(Paragraph(p) for p in notes))
    results = results_rows(runs)
    if not study or any(published_for(r.config, r.summary) for r in runs):  # a study lists its configurations instead
        document.add(RESULTS, results)
    if study:
        records = results_from_runs(runs)
        if records:
            document.sections += study_sections(folder, records)
        document.sections.append(compute_section(folder, runs))
    document.sections += declared_figures(runs, folder, ARCHS, "arch")
    if shown:
        title = "best run of each (arch, rule)" if pick_best else ""
        document.add(
            "Learning curves",
            Figure("Learning curves", plot_learning_curves(shown, folder / "learning_curves.png", title)),
        )
    for spec in first_seen([r.probes for r in shown]):
        path = plot_probe(shown, spec, folder / probe_file(spec))
        if path:
            document.add(spec.title or spec.kind, Figure(spec.title or spec.kind, path))
    document.sections += declared_figures(runs, folder, RULES, "rule")
    return document, results


def unfinished_note(runs: list[Run], folder: Path) -> list[str]:
    """A note naming the runs (by path under ``folder``) whose summary says ``running``: still training, or
    stopped (killed) before their last epoch, with how far each got."""
    unfinished = [r for r in runs if r.summary.get("status") == "running"]
    if not unfinished:
        return []
    names = ", ".join(f"{run_name(r, folder)} ({progress(r)})" for r in unfinished)
    again = ("run the study's command again to continue them" if is_study(folder)
             else "`bioplausible train ... --resume` with the same settings continues a stopped run")  # fmt: skip
    return [
        f"Not finished (status running: still training, or stopped before the end): {names}. Their numbers are "
        f"those of their last finished epoch; {again}."
    ]


def warned_note(runs: list[Run], folder: Path) -> list[str]:
    """One note per run that was warned about while training (summary.json's ``warnings``: an EP net gone dead, an
    unsettled phase, ...): its status cell says "warned", this says why."""
    warned = [(run_name(r, folder), r.summary["warnings"]) for r in runs if r.summary.get("warnings")]
    return [
        f"{'This run' if name == '.' else 'Run ' + name} was warned about while training: " + " ".join(warnings)
        for name, warnings in warned
    ]


def run_name(run: Run, folder: Path) -> str:
    try:
        return run.path.resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        return str(run.path)


def progress(run: Run) -> str:
    """How far an unfinished run got: steps of a step budget, else epochs."""
    if run.config.get("max_steps"):
        return f"{run.summary.get('steps')} of {run.config['max_steps']} steps"
    return f"{run.summary.get('epochs')} of {run.config.get('epochs')} epochs"


def figure_key(run: Run) -> tuple[str, str]:
    """What a figure tells runs apart by: the labels the architecture and the rule declare."""
    return run.arch_label, run.rule_label


def representative_runs(runs: list[Run]) -> list[Run]:
    """The best run with metrics of each (arch label, rule label), by final test accuracy; at most MAX_PANELS."""
    best: dict[tuple, Run] = {}
    for run in runs:
        if not run.metrics:
            continue
        key = figure_key(run)
        accuracy = run.summary.get("test_accuracy") or 0.0
        if key not in best or accuracy > (best[key].summary.get("test_accuracy") or 0.0):
            best[key] = run
    return [best[k] for k in sorted(best)][:MAX_PANELS]


def declared_figures(runs: list[Run], folder: Path, registry, owner: str) -> list[Section]:
    """The figures each architecture (``owner="arch"``) or rule of the runs declares, each drawn from that owner's
    runs; in the order of the owners' names, a figure declared by several owners once."""
    by_owner: dict[str, list[Run]] = {}
    for run in runs:
        by_owner.setdefault(getattr(run, owner), []).append(run)
    drawn: dict[Callable, list[Run]] = {}
    for name in sorted(by_owner):
        for figure in getattr(registered(registry, name), "figures", ()):
            drawn.setdefault(figure, []).extend(by_owner[name])
    sections = []
    for figure, owned in drawn.items():
        for title, path in figure(owned, folder):
            sections.append(Section(title, [Figure(title, Path(path))]))
    return sections
