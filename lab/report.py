"""One HTML report per run: every case, its verdict, figures, plots and evidence.

The page is one self-contained file (plots and topology drawings embedded), so it reads the
same from a mail attachment; captures and logs stay beside it in the run folder, linked.
"""

from __future__ import annotations

import base64
import html
import json
import os
import time
from pathlib import Path
from typing import Any

from lab.results import TOPOLOGY_DATA, TOPOLOGY_DRAWING, Case, mark_latest

_STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 1200px; color: #222; }
h2 { border-top: 2px solid #999; padding-top: 1em; } h3 { border-top: 1px solid #ddd; padding-top: 0.8em; }
.passed { color: #17803d; } .failed, .error { color: #b3261e; } .skipped { color: #8a6d00; }
table { border-collapse: collapse; } td, th { padding: 2px 10px; text-align: left; vertical-align: top; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; white-space: pre-wrap; }
"""


def _rel(path: Path, base: Path) -> str:
    return html.escape(os.path.relpath(path, base))


def _topology_drawing(lab_dir: Path) -> Path | None:
    """The lab's drawing, drawn from the description its lab wrote at its start (once: a
    second report of the same run reuses it); None when the lab wrote none."""
    drawing = lab_dir / TOPOLOGY_DRAWING
    data = lab_dir / TOPOLOGY_DATA
    if not drawing.exists() and data.exists():
        from lab.plot import topology_figure

        described = json.loads(data.read_text())
        topology_figure(described, drawing, described["title"])
    return drawing if drawing.exists() else None


def _embedded(path: Path, caption: str) -> str:
    """A PNG inside the page (a data URI), with its caption."""
    data = base64.b64encode(path.read_bytes()).decode()
    return (
        f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(caption)}'>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _where(runner: dict[str, str]) -> str:
    """A case's worker, and its host's address and SSH port when it ran over SSH."""
    ssh = runner.get("ssh", "").split()
    return runner.get("worker", "") + (f" ({ssh[2]} port {ssh[3]})" if len(ssh) == 4 else "")


def module_of(case: Case) -> str:
    """The scenario module a case belongs to (`test_s1_idle_timeout`)."""
    return case.name.split(".", 1)[0]


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


def _case_section(case: Case, run: Path) -> list[str]:
    parts = [
        f"<h3 id='{html.escape(case.name)}'>{html.escape(case.title or case.name)} "
        f"<span class='{case.verdict}'>[{case.verdict}]</span></h3>",
        f"<p><code>{html.escape(case.name)}</code>, {case.duration:.1f} s"
        + (f", ran on {html.escape(_where(case.runner))}" if case.runner else "")
        + "</p>",
    ]
    if case.message:
        parts.append(f"<pre>{html.escape(case.message)}</pre>")
    if case.figures:
        parts.append("<table>")
        for key, value in case.figures.items():
            parts.append(f"<tr><th>{html.escape(key)}</th><td>{_value(value)}</td></tr>")
        parts.append("</table>")
    if case.links:
        parts.append(_links_table(case.links))
    parts += [_embedded(path, caption) for caption, path in case.plots if path.exists()]
    kept = [(w, p) for w, p in case.evidence if p.exists()]
    if kept:
        links = ", ".join(f"<a href='{_rel(p, run)}'>{html.escape(w)}</a>" for w, p in kept)
        parts.append(f"<p>Evidence (files beside this report): {links}</p>")
    return parts


def write_report(run: Path, cases: list[Case], title: str = "sessionlab report") -> Path:
    """Write `run/report.html` and `run/summary.json`, then point `latest` at the run (a run
    killed before this has no report and leaves `latest` where it was); the report's path."""
    counts: dict[str, int] = {}
    for case in cases:
        counts[case.verdict] = counts.get(case.verdict, 0) + 1
    summary = ", ".join(f"{n} {v}" for v, n in sorted(counts.items())) or "no cases"
    total = sum(c.duration for c in cases)
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Run <code>{html.escape(run.name)}</code>, written "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}: {summary}; {total:.0f} s in cases.</p>",
        "<table><tr><th>scenario module</th><th>case</th><th>verdict</th><th>time (s)</th></tr>",
    ]
    modules: dict[str, list[Case]] = {}
    for case in cases:
        modules.setdefault(module_of(case), []).append(case)
    for module, mine in modules.items():
        for case in mine:
            parts.append(
                f"<tr><td>{html.escape(module)}</td>"
                f"<td><a href='#{html.escape(case.name)}'>{html.escape(case.title or case.name)}</a></td>"
                f"<td class='{case.verdict}'>{case.verdict}</td><td>{case.duration:.1f}</td></tr>"
            )
    parts.append("</table>")
    for module, mine in modules.items():
        parts.append(f"<h2 id='{html.escape(module)}'>{html.escape(module)}</h2>")
        drawing = _topology_drawing(run / f"{module}-lab")
        if drawing is not None:
            parts.append(_embedded(drawing, f"{module}: the lab's topology, device roles and addresses"))
        for case in mine:
            parts += _case_section(case, run)
    parts.append("</body></html>")
    path = run / "report.html"
    path.write_text("\n".join(parts))
    (run / "summary.json").write_text(json.dumps([c.to_dict() for c in cases], indent=2, default=str))
    mark_latest(run)
    return path
