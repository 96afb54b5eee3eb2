"""Reports built only from run folders: tables and PNG figures."""

from .plots import plot_learning_curves
from .tables import markdown_table

__all__ = ["markdown_table", "plot_learning_curves"]
