"""Reports built only from run folders: tables with the papers' numbers beside ours, and PNG figures."""

from .papers import PUBLISHED, published_for
from .plots import plot_learning_curves
from .summary import find_runs, results_table
from .tables import markdown_table

__all__ = ["PUBLISHED", "find_runs", "markdown_table", "plot_learning_curves", "published_for", "results_table"]
