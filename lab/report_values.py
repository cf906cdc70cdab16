"""A figure's value as HTML a colleague reads: words and tables, never JSON or Python literals.

None reads as an em dash, booleans as yes/no, an empty list or mapping as "none", a list of
plain values as comma-separated text; rows of the same kind (a mapping of mappings, a list
of mappings) as a table, any other mapping as a list of key: value, nesting as nesting.
"""

from __future__ import annotations

import html
from typing import Any

NONE = "\u2014"  # what None reads as
EMPTY = "none"  # what an empty list or mapping reads as


def _plain(value: object) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def scalar(value: object) -> str:
    """One plain value as text (escaped): 3 significant digits for a float, yes/no, an em dash."""
    if value is None:
        return NONE
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}"
    return html.escape(str(value))


def grid(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """Rows of the same kind as a table: a row per item, a column per key (a key a row lacks
    stays blank)."""
    columns = list(dict.fromkeys(k for _, row in rows for k in row))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = [
        f"<tr><th>{html.escape(label)}</th>"
        + "".join(f"<td>{render(row[c]) if c in row else ''}</td>" for c in columns)
        + "</tr>"
        for label, row in rows
    ]
    return "<table class='figure'><tr><th></th>" + head + "</tr>" + "".join(body) + "</table>"


def render(value: object) -> str:
    """A figure as it reads best (see the module's docstring)."""
    if _plain(value):
        return scalar(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else list(value)
        if not items:
            return EMPTY
        if all(_plain(v) for v in items):
            return ", ".join(scalar(v) for v in items)
        if all(isinstance(v, dict) and v for v in items):
            return grid([(str(n + 1), v) for n, v in enumerate(items)])
        return "<ol class='figure'>" + "".join(f"<li>{render(v)}</li>" for v in items) + "</ol>"
    if isinstance(value, dict):
        if not value:
            return EMPTY
        if all(isinstance(v, dict) and v for v in value.values()):
            return grid([(str(k), v) for k, v in value.items()])
        pairs = "".join(f"<li>{html.escape(str(k))}: {render(v)}</li>" for k, v in value.items())
        return f"<ul class='figure'>{pairs}</ul>"
    return html.escape(str(value))
