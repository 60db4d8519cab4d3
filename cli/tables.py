"""Plain-text tables for terminals and summary files.

Example:
    >>> print(format_table([{"label": "1", "n": 3}], ["label", "n"]))
    label  n
        1  3
"""
from __future__ import annotations

from typing import Sequence


def format_table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """Right-aligned columns with a header line; one line per row."""
    width = {c: max([len(c)] + [len(str(r[c])) for r in rows]) for c in columns}
    lines = ["  ".join(c.rjust(width[c]) for c in columns)]
    lines += ["  ".join(str(r[c]).rjust(width[c]) for c in columns) for r in rows]
    return "\n".join(lines)
