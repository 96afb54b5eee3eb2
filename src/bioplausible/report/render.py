"""A :class:`~bioplausible.analysis.document.Document` rendered to Markdown (figures as PNG files beside it) and to
one self-contained HTML page (figures embedded as base64 data URIs, no scripts, no external assets)."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from ..analysis.document import Block, Document, Figure, Paragraph, Table

STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}"
    "th,td{border:1px solid #bbb;padding:0.25em 0.6em;text-align:left}th{background:#eee}"
    "img{max-width:100%;height:auto}code{background:#f3f3f3;padding:0 0.2em}"
)


def relative(figure: Figure, folder: Path) -> str:
    """The figure's path as the Markdown beside it refers to it."""
    try:
        return figure.path.resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        return figure.path.as_posix()


def markdown(document: Document, folder: Path) -> str:
    parts = [f"# {document.title}\n"]
    for section in document.sections:
        parts.append(f"## {section.heading}\n")
        for block in section.blocks:
            parts.append(markdown_block(block, folder) + "\n")
    return "\n".join(parts)


def markdown_block(block: Block, folder: Path) -> str:
    if isinstance(block, Table):
        return block.markdown()
    if isinstance(block, Figure):
        return f"![{block.title}]({relative(block, folder)})"
    return block.text


def inline_html(text: str) -> str:
    """A paragraph's text as HTML: escaped, with ```code``` and ``**bold**`` marks."""
    escaped = html.escape(" ".join(text.split()))
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)


def html_block(block: Block) -> str:
    if isinstance(block, Paragraph):
        return f"<p>{inline_html(block.text)}</p>"
    if isinstance(block, Table):
        head = "".join(f"<th>{html.escape(h)}</th>" for h in block.headers)
        rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in block.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    data = base64.b64encode(block.path.read_bytes()).decode("ascii")
    return f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block.title)}"></figure>'


def html_page(document: Document) -> str:
    body = [f"<h1>{html.escape(document.title)}</h1>"]
    for section in document.sections:
        body.append(f"<h2>{html.escape(section.heading)}</h2>")
        body += [html_block(block) for block in section.blocks]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(document.title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
