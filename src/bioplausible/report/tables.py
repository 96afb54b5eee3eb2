"""Plain-text tables (the Markdown form of :class:`~bioplausible.analysis.document.Table`)."""

from __future__ import annotations

from collections.abc import Sequence

from ..analysis.document import Table


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table whose columns are padded so it also reads well in a terminal."""
    return Table.of(headers, rows).markdown()
