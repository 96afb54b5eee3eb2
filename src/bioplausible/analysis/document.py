"""A report as typed data: sections of paragraphs, tables and figures, rendered to Markdown and HTML by
:mod:`bioplausible.report` (nothing is written as Markdown and parsed back).

A paragraph's text may hold two inline marks, ``**bold**`` and ```code```, which both renderers understand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Table:
    """Rows of cells (any values, shown with ``str``) under ``headers``."""

    headers: tuple[str, ...]
    rows: tuple[tuple[object, ...], ...]

    @classmethod
    def of(cls, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> Table:
        return cls(tuple(headers), tuple(tuple(r) for r in rows))

    def cells(self) -> list[list[str]]:
        """Header and rows as text."""
        return [list(self.headers)] + [[str(c) for c in row] for row in self.rows]

    def markdown(self) -> str:
        """A Markdown table whose columns are padded so it also reads well in a terminal."""
        cells = self.cells()
        widths = [max(len(r[i]) for r in cells) for i in range(len(self.headers))]
        lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
        lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.markdown()


@dataclass(frozen=True)
class Figure:
    """A PNG written beside the report."""

    title: str
    path: Path


Block = Paragraph | Table | Figure


@dataclass
class Section:
    heading: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Document:
    title: str
    sections: list[Section] = field(default_factory=list)

    def add(self, heading: str, *blocks: Block | None) -> None:
        """A section of the blocks given (None ones left out); nothing when all are None."""
        kept = [b for b in blocks if b is not None]
        if kept:
            self.sections.append(Section(heading, kept))
