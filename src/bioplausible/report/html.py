"""The report's entry points under their historical module name: ``write_report(folder)`` writes ``report.md``,
its figures and the self-contained ``report.html`` (see :mod:`bioplausible.report.compose`)."""

from .compose import representative_runs, write_report, write_report_files
from .render import html_page

__all__ = ["html_page", "representative_runs", "write_report", "write_report_files"]
