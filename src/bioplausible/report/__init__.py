"""Reports built only from run folders: tables with the papers' numbers beside ours, figures of every declared
probe and of what the rules and architectures declare, as Markdown and one self-contained HTML page."""

from ..analysis.document import Table
from ..papers import PUBLISHED, published_for
from .compose import build_report, write_report, write_report_files
from .plots import plot_learning_curves
from .summary import find_runs, results_rows, results_table
from .tables import markdown_table

__all__ = [
    "PUBLISHED",
    "Table",
    "build_report",
    "find_runs",
    "markdown_table",
    "plot_learning_curves",
    "published_for",
    "results_rows",
    "results_table",
    "write_report",
    "write_report_files",
]
