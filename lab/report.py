"""One HTML report per run: every case, its verdict, figures, plots and evidence.

The page is one self-contained file (plots and topology drawings embedded), so it reads the
same from a mail attachment; captures and logs stay beside it in the run folder, linked.
"""

from __future__ import annotations

import base64
import html
import json
import os
import platform
import socket
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.report_values import render
from lab.results import (
    RUN_FILE,
    SUMMARY_FILE,
    TOPOLOGY_DATA,
    TOPOLOGY_DRAWING,
    Case,
    git_state,
    mark_latest,
    repetition_number,
)
from lab.series import JUNIT_FILE, counts

if TYPE_CHECKING:
    from lab.series import Series

FAILED = ("failed", "error")  # the verdicts the summary's filter keeps
_ROOT = Path(__file__).resolve().parent.parent

_STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 1200px; color: #222; }
h2 { border-top: 2px solid #999; padding-top: 1em; } h3 { border-top: 1px solid #ddd; padding-top: 0.8em; }
.passed { color: #17803d; } .failed, .error { color: #b3261e; } .skipped { color: #8a6d00; }
table { border-collapse: collapse; } td, th { padding: 2px 10px; text-align: left; vertical-align: top; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; white-space: pre-wrap; }
table.facts th { color: #555; font-weight: normal; } th { white-space: nowrap; }
img.topology { max-width: 760px; }
table.summary tr:nth-child(even) { background: #f7f7f7; }
td.reason { color: #b3261e; max-width: 40em; }
table.figure, ul.figure, ol.figure { margin: 0; } ul.figure, ol.figure { padding-left: 1.2em; }
table.figure td, table.figure th { border-bottom: 1px solid #eee; }
label.filter { display: inline-block; margin: 0.5em 0; padding: 2px 8px; background: #f1f1f1; }
#only-failed:checked ~ table.summary tr.ok { display: none; }
#only-flaky:checked ~ div.flakes tr.steady { display: none; }
div.flakes { overflow-x: auto; } table.flakes td, table.flakes th { border-bottom: 1px solid #eee; }
table.flakes td.cell { text-align: center; white-space: nowrap; } span.margin { color: #555; font-size: 90%; }
table.flakes tr.flaky { background: #fff4e0; } span.flaky { color: #a34a00; font-weight: bold; }
body:has(#only-failed:checked) section.ok, body:has(#only-failed:checked) .module.ok { display: none; }
"""


# report.html#failed opens with the filter on (a link to a run's failures; the screenshot check)
_FILTER_FROM_ADDRESS = (
    "if (location.hash === '#failed') document.getElementById('only-failed').checked = true;"
)


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


def _embedded(path: Path, caption: str, kind: str = "plot") -> str:
    """A PNG inside the page (a data URI), with its caption."""
    data = base64.b64encode(path.read_bytes()).decode()
    return (
        f"<figure><img class='{kind}' src='data:image/png;base64,{data}' alt='{html.escape(caption)}'>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _where(runner: dict[str, str]) -> str:
    """A case's worker, and its host's address and SSH port when it ran over SSH."""
    ssh = runner.get("ssh", "").split()
    return runner.get("worker", "") + (f" ({ssh[2]} port {ssh[3]})" if len(ssh) == 4 else "")


def module_of(case: Case) -> str:
    """The scenario module a case belongs to (`test_s1_idle_timeout`)."""
    return case.name.split(".", 1)[0]


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
        f"<section class='case {'bad' if case.verdict in FAILED else 'ok'}'>",
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
            parts.append(f"<tr><th>{html.escape(key)}</th><td>{render(value)}</td></tr>")
        parts.append("</table>")
    if case.links:
        parts.append(_links_table(case.links))
    parts += [_embedded(path, caption) for caption, path in case.plots if path.exists()]
    kept = [(w, p) for w, p in case.evidence if p.exists()]
    # A ruleset or daemon configuration a device loaded has the configuration it was
    # rendered from as TOML beside it (to redo by hand with topo's per-node options)
    kept += [
        (f"{w}: as TOML, for topo", p.with_suffix(".toml"))
        for w, p in list(kept)
        if p.suffix in (".nft", ".cfg", ".conf") and p.with_suffix(".toml").exists()
    ]
    if kept:
        links = ", ".join(f"<a href='{_rel(p, run)}'>{html.escape(w)}</a>" for w, p in kept)
        parts.append(f"<p>Evidence (files beside this report): {links}</p>")
    return [*parts, "</section>"]


def reason(case: Case) -> str:
    """A failed case's reason in one line (`message_reason` of its message)."""
    return message_reason(case.message)


def message_reason(message: str) -> str:
    """A failure message's first line that says something (pytest's `AssertionError: ...`
    prefix dropped), cut to 200 characters: the reason shown for a failed case. In a
    traceback, its first error line (`E   ...`), not the source or arguments above it."""
    lines = message.splitlines()
    errors = [line for line in lines if line.startswith("E   ")]
    for line in errors or lines:
        line = line.strip()
        line = (line.removeprefix("E").strip() if line.startswith("E ") else line).removeprefix(
            "AssertionError: "
        )
        if line and line != "assert False":
            return line if len(line) <= 200 else line[:199] + "\u2026"
    return ""


def _stamp(when: datetime) -> str:
    """A moment with its offset and zone name: `2026-12-02 01:23:19 +0000 (UTC)`."""
    return when.strftime("%Y-%m-%d %H:%M:%S %z") + (f" ({when.tzname()})" if when.tzname() else "")


def run_facts(run: Path, ended: datetime | None = None) -> dict[str, str]:
    """What ran, where and when: from `run.json` when `run` wrote one, else what can be told
    now (the commit checked out at report time, the start from the run folder's name)."""
    try:
        meta = json.loads((run / RUN_FILE).read_text())
        meta = meta if isinstance(meta, dict) else {}
    except (OSError, ValueError):
        meta = {}
    started = "unknown"
    if meta.get("started"):
        try:
            started = _stamp(datetime.fromisoformat(str(meta["started"])))
        except ValueError:
            started = str(meta["started"])
    else:
        try:  # a run folder is named by its local start time (lab.results.new_run)
            named = datetime.strptime(run.name[:15], "%Y%m%d-%H%M%S").astimezone()
            started = _stamp(named) + ", from the run folder's name"
        except ValueError:
            pass
    if meta.get("commit"):
        commit = str(meta["commit"]) + (" with uncommitted changes" if meta.get("dirty") else "")
    else:
        now, dirty = git_state(_ROOT)
        commit = (
            (
                now[:7]
                + (" with uncommitted changes" if dirty else "")
                + ", checked out when the report was written"
            )
            if now
            else "unknown"
        )
    uname = platform.uname()
    facts = {
        "command": str(meta.get("command") or "unknown (the run wrote no run.json)"),
        "commit": commit,
        "kernel": f"{uname.system} {uname.release} ({uname.machine})",
        "machine": f"{socket.gethostname()}, {os.cpu_count() or '?'} CPUs",
        "started": started,
        "ended (report written)": _stamp(ended or datetime.now().astimezone()),
    }
    if meta.get("repetition"):  # a repeated run's repetition (lab.series)
        facts["repetition"] = f"{meta['repetition']} of at most {meta.get('of', '?')}"
    return facts


def _fact(key: str, value: str) -> str:
    return f"<code>{html.escape(value)}</code>" if key == "command" else html.escape(value)


def _summary(cases: list[Case]) -> list[str]:
    """The table a colleague reads first: every case, its verdict and, when it failed, why."""
    parts = [
        "<input type='checkbox' id='only-failed'>"
        "<label class='filter' for='only-failed'>show failed cases only</label>",
        "<table class='summary'><tr><th>scenario module</th><th>case</th><th>verdict</th>"
        "<th>time (s)</th><th>reason</th></tr>",
    ]
    for case in cases:
        bad = case.verdict in FAILED
        parts.append(
            f"<tr class='{'bad' if bad else 'ok'}'><td>{html.escape(module_of(case))}</td>"
            f"<td><a href='#{html.escape(case.name)}'>{html.escape(case.title or case.name)}</a></td>"
            f"<td class='{case.verdict}'>{case.verdict}</td><td>{case.duration:.1f}</td>"
            f"<td class='reason'>{html.escape(reason(case)) if bad else ''}</td></tr>"
        )
    return [*parts, "</table>"]


def write_report(run: Path, cases: list[Case], title: str = "sessionlab report") -> Path:
    """Write `run/report.html` and `run/summary.json`, then point `latest` at the run (a run
    killed before this has no report and leaves `latest` where it was); the report's path."""
    counts: dict[str, int] = {}
    for case in cases:
        counts[case.verdict] = counts.get(case.verdict, 0) + 1
    summary = ", ".join(f"{n} {v}" for v, n in sorted(counts.items())) or "no cases"
    total = sum(c.duration for c in cases)
    facts = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{_fact(k, v)}</td></tr>" for k, v in run_facts(run).items()
    )
    failed = [c for c in cases if c.verdict in FAILED]
    repetition = repetition_number(run)
    named = run.name if repetition is None else f"{run.parent.name}/{run.name}"
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Run <code>{html.escape(named)}</code>: <b>{summary}</b>; {total:.0f} s in cases.</p>",
    ]
    if repetition is not None:
        parts.append(
            f"<p>Repetition {repetition} of a repeated run: "
            "<a href='../report.html'>the series' report</a> (every repetition, the flake table).</p>"
        )
    parts.append(f"<table class='facts'>{facts}</table>")
    if failed:
        parts.append(
            "<p class='failed'>Failed: "
            + ", ".join(f"<a href='#{html.escape(c.name)}'>{html.escape(c.name)}</a>" for c in failed)
            + "</p>"
        )
    parts += _summary(cases)
    modules: dict[str, list[Case]] = {}
    for case in cases:
        modules.setdefault(module_of(case), []).append(case)
    for module, mine in modules.items():
        ok = "ok" if all(c.verdict not in FAILED for c in mine) else "bad"
        parts.append(f"<div class='module {ok}'><h2 id='{html.escape(module)}'>{html.escape(module)}</h2>")
        drawing = _topology_drawing(run / f"{module}-lab")
        if drawing is not None:
            parts.append(
                _embedded(drawing, f"{module}: the lab's topology, device roles and addresses", "topology")
            )
        parts.append("</div>")
        for case in mine:
            parts += _case_section(case, run)
    parts.append(f"<script>{_FILTER_FROM_ADDRESS}</script></body></html>")
    path = run / "report.html"
    path.write_text("\n".join(parts))
    (run / SUMMARY_FILE).write_text(json.dumps([c.to_dict() for c in cases], indent=2, default=str))
    if repetition is None:  # a repetition's report: `latest` points at its series once written
        mark_latest(run)
    return path


def _margin(value: float | None) -> str:
    return "\u2014" if value is None else f"{value:.2f} s"


def _flake_table(series: Series) -> list[str]:
    """Cases by repetitions: each cell the verdict (linked to the case in that repetition's
    report) and the case's smallest client timeout margin there; a flaky case marked."""
    numbers = [r.number for r in series.repetitions]
    parts = [
        "<input type='checkbox' id='only-flaky'>"
        "<label class='filter' for='only-flaky'>show flaky and failed cases only</label>",
        "<div class='flakes'><table class='flakes'><tr><th>scenario module</th><th>case</th>"
        + "".join(f"<th><a href='rep-{n}/report.html'>rep-{n}</a></th>" for n in numbers)
        + "<th>smallest margin</th><th>flaky</th><th>first failure</th></tr>",
    ]
    for row in series.rows:
        steady = not row.flaky and row.verdict not in FAILED
        cells = []
        for n in numbers:
            cell = row.cells.get(n)
            if cell is None:
                cells.append("<td class='cell'>\u2014</td>")
                continue
            folder = cell.path.split("/", 1)[0]
            cells.append(
                f"<td class='cell {cell.verdict}'><a class='{cell.verdict}' "
                f"href='{html.escape(folder)}/report.html#{html.escape(row.name)}'>{cell.verdict}</a>"
                f"<br><span class='margin'>{_margin(cell.margin)}</span></td>"
            )
        first = row.first_failure()
        why = f"rep-{first[0]}: {message_reason(first[1].message)}" if first else ""
        parts.append(
            f"<tr class='{'steady' if steady else 'flaky' if row.flaky else 'bad'}'>"
            f"<td>{html.escape(row.name.split('.', 1)[0])}</td>"
            f"<td>{html.escape(row.title or row.name)}</td>{''.join(cells)}"
            f"<td>{_margin(row.margin)}</td>"
            f"<td>{'<span class=flaky>flaky</span>' if row.flaky else ''}</td>"
            f"<td class='reason'>{html.escape(why)}</td></tr>"
        )
    return [*parts, "</table></div>"]


def write_series_report(series: Series, title: str = "sessionlab report") -> Path:
    """A repeated run's own report.html (each repetition has its full one in its folder): what
    ran, the series in a line, each repetition with its verdicts, report and JUnit file, and
    the flake table; then summary.json and repetitions.json (`Series.write`), and `latest`
    pointed at the run."""
    from lab.traffic import MIN_MARGIN

    run = series.run
    facts = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{_fact(k, v)}</td></tr>" for k, v in run_facts(run).items()
    )
    asked = f"until a repetition fails, at most {series.most}" if series.until_fail else f"{series.most}"
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}: repeated run</h1>",
        f"<p>Run <code>{html.escape(run.name)}</code>: <b>{html.escape(series.line())}</b> "
        f"(repetitions asked: {html.escape(asked)}).</p>",
        f"<table class='facts'>{facts}</table>",
        "<h2>Repetitions</h2><table class='summary'><tr><th>repetition</th><th>verdicts</th>"
        "<th>time in cases (s)</th><th>ended</th><th>report</th><th>JUnit XML</th></tr>",
    ]
    for rep in series.repetitions:
        mine = [r.cells[rep.number] for r in series.rows if rep.number in r.cells]
        counted = counts([c.verdict for c in mine])
        shown = ", ".join(f"<span class='{v}'>{n} {v}</span>" for v, n in counted.items()) or "no cases"
        name = html.escape(rep.folder.name)
        report = (
            f"<a href='{name}/report.html'>report</a>" if (rep.folder / "report.html").exists() else "none"
        )
        junit = (
            f"<a href='{name}/{JUNIT_FILE}'>{JUNIT_FILE}</a>"
            if (rep.folder / JUNIT_FILE).exists()
            else "none"
        )
        parts.append(
            f"<tr><td>{name}</td><td>{shown}</td><td>{sum(c.duration for c in mine):.0f}</td>"
            f"<td>{html.escape(rep.ended)}</td><td>{report}</td><td>{junit}</td></tr>"
        )
    parts += [
        "</table>",
        "<h2>Flake table</h2>",
        "<p>Each case's verdict in each repetition and its smallest client timeout margin there "
        "(its client loads' slowest completed wait, taken from their timeout; a case fails below "
        f"{MIN_MARGIN:g} s; \u2014: the case noted no client load). A case is flaky when its verdicts "
        "differ across the repetitions it finished in.</p>",
        *_flake_table(series),
        # report.html#failed opens with the filter on, as a plain run's report does
        f"<script>{_FILTER_FROM_ADDRESS.replace('only-failed', 'only-flaky')}</script>",
        "</body></html>",
    ]
    path = run / "report.html"
    path.write_text("\n".join(parts))
    series.write()
    mark_latest(run)
    return path
