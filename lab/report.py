"""One HTML report per run: every case, its verdict, figures, plots and evidence."""

from __future__ import annotations

import html
import json
import os
import time
from pathlib import Path
from typing import Any

from lab.results import Case

_STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 1200px; color: #222; }
h2 { border-top: 1px solid #ccc; padding-top: 1em; }
.passed { color: #17803d; } .failed, .error { color: #b3261e; } .skipped { color: #8a6d00; }
table { border-collapse: collapse; } td, th { padding: 2px 10px; text-align: left; vertical-align: top; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; white-space: pre-wrap; }
"""


def _rel(path: Path, base: Path) -> str:
    return html.escape(os.path.relpath(path, base))


def _scalar(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, (dict, list)):
        return html.escape(json.dumps(value, default=str))
    return html.escape(str(value))


def _grid(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """Rows of the same kind as a table: a row per item, a column per key."""
    columns = list(dict.fromkeys(k for _, row in rows for k in row))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = [
        f"<tr><th>{html.escape(label)}</th>"
        + "".join(f"<td>{_scalar(row.get(c, ''))}</td>" for c in columns)
        + "</tr>"
        for label, row in rows
    ]
    return "<table class='figure'><tr><th></th>" + head + "</tr>" + "".join(body) + "</table>"


def _value(value: object) -> str:
    """A figure as it reads best: a table for rows of the same kind (a mapping of mappings,
    a list of mappings), a list of key: value for a flat mapping, else the value itself."""
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        return _grid([(str(k), v) for k, v in value.items()])
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return _grid([(str(i + 1), v) for i, v in enumerate(value)])
    if isinstance(value, dict) and value:
        items = "".join(f"<li>{html.escape(str(k))}: {_scalar(v)}</li>" for k, v in value.items())
        return f"<ul class='figure'>{items}</ul>"
    return _scalar(value)


def _links_table(links: dict[str, list[dict[str, Any]]]) -> str:
    """The impaired links of a case: each setting and from when it held."""
    rows = [
        "<table><tr><th>impaired link</th><th>from (s into the case)</th><th>direction: impairment</th></tr>"
    ]
    for link, settings in links.items():
        for setting in settings:
            directions = "; ".join(f"{d}: {v}" for d, v in setting.items() if d != "from")
            rows.append(
                f"<tr><td>{html.escape(link)}</td><td>{setting['from']:g}</td><td>{html.escape(directions)}</td></tr>"
            )
    return "\n".join([*rows, "</table>"])


def write_report(run: Path, cases: list[Case], title: str = "sessionlab report") -> Path:
    """Write `run/report.html` (and `run/summary.json`); returns the report's path."""
    counts: dict[str, int] = {}
    for case in cases:
        counts[case.verdict] = counts.get(case.verdict, 0) + 1
    summary = ", ".join(f"{n} {v}" for v, n in sorted(counts.items())) or "no cases"
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Run <code>{html.escape(run.name)}</code>, written "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}: {summary}.</p>",
        "<table><tr><th>case</th><th>verdict</th><th>time (s)</th></tr>",
    ]
    for case in cases:
        parts.append(
            f"<tr><td><a href='#{html.escape(case.name)}'>{html.escape(case.title or case.name)}</a></td>"
            f"<td class='{case.verdict}'>{case.verdict}</td><td>{case.duration:.1f}</td></tr>"
        )
    parts.append("</table>")
    for case in cases:
        parts.append(
            f"<h2 id='{html.escape(case.name)}'>{html.escape(case.title or case.name)} "
            f"<span class='{case.verdict}'>[{case.verdict}]</span></h2>"
        )
        parts.append(f"<p><code>{html.escape(case.name)}</code></p>")
        if case.message:
            parts.append(f"<pre>{html.escape(case.message)}</pre>")
        if case.figures:
            parts.append("<table>")
            for key, value in case.figures.items():
                parts.append(f"<tr><th>{html.escape(key)}</th><td>{_value(value)}</td></tr>")
            parts.append("</table>")
        if case.links:
            parts.append(_links_table(case.links))
        for caption, path in case.plots:
            if path.exists():
                parts.append(
                    f"<figure><img src='{_rel(path, run)}' alt='{html.escape(caption)}'>"
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>"
                )
        if case.evidence:
            parts.append(
                "<p>Evidence: "
                + ", ".join(
                    f"<a href='{_rel(p, run)}'>{html.escape(w)}</a>" for w, p in case.evidence if p.exists()
                )
                + "</p>"
            )
    parts.append("</body></html>")
    path = run / "report.html"
    path.write_text("\n".join(parts))
    (run / "summary.json").write_text(json.dumps([c.to_dict() for c in cases], indent=2, default=str))
    return path
