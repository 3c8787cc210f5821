"""Plain-text tables for the terminal, with stored values made safe to print.

Cells come from the store: contact ids, provider error texts, key and segment names.
A control or invisible character in one would reach the terminal raw: an escape
sequence retitles the window or rewrites the screen, a line break forges a row, a
bidirectional override reverses what is read. Every cell is escaped (`\\x1b`,
`\\n`, `\\u202e`), so the table shows what is stored and nothing runs.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence

from ..store.identity import UNPRINTABLE


def printable(value: object) -> str:
    """`value` as text, its control and invisible characters written as escapes."""
    text = str(value)
    if all(unicodedata.category(c) not in UNPRINTABLE for c in text):
        return text
    return "".join(_escape(c) if unicodedata.category(c) in UNPRINTABLE else c for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}" if char not in "\t\n\r" else repr(char)[1:-1]
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def render_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Columns padded to their widest cell, two spaces apart, every cell `printable`."""
    table = [[printable(c) for c in header]] + [[printable(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    )
