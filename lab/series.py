"""A repeated run (`sessionlab run --repeat N`, `--until-fail`) as data: its repetitions'
cases side by side (the flake table), the series' summary, one JUnit file of them all.

A repeated run is one run folder; each repetition is a whole run folder of its own inside
it, `<run>/rep-<i>/` (its cases, its labs' folders, report.html, summary.json, junit.xml,
run.json), so nothing of one repetition overwrites another's and each reads (and compares,
`report --compare RUN/rep-1 RUN/rep-2`) as a plain run. The run folder itself holds the
series: run.json, report.html with the flake table, summary.json (each case's worst verdict
and its repetitions) and repetitions.json (the series as data).

A case is flaky when its verdicts differ across the repetitions it finished in ("not run":
a repetition interrupted before the case ended does not count). A cell's margin is the
case's smallest client timeout margin in that repetition (`lab.traffic.timeout_margin`,
written by the plugin as the figure "client timeout margins"): how close its slowest
completed wait came to its client's timeout; None when the case noted no client load.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.results import CASE_FILE, SUMMARY_FILE

MARGINS_FIGURE = "client timeout margins"  # as lab.pytest_plugin names it
JUNIT_FILE = "junit.xml"  # in each repetition's folder
SERIES_FILE = "repetitions.json"  # in a repeated run's folder: the series as data
DEFAULT_UNTIL_FAIL = 10  # --until-fail without --repeat: at most this many repetitions
MAX_REPEAT = 100  # --repeat's bound: each repetition keeps its captures (MBs per module)
# Most severe first: a case's verdict over the series is the first of these it had
SEVERITY = ("error", "failed", "passed", "skipped", "not run")


def smallest_margin(figures: dict[str, Any]) -> float | None:
    """A case's smallest client timeout margin (s) from its figures; None without one."""
    margins = figures.get(MARGINS_FIGURE)
    if not isinstance(margins, list):
        return None
    found = [
        m["margin (s)"]
        for m in margins
        if isinstance(m, dict) and isinstance(m.get("margin (s)"), (int, float))
    ]
    return float(min(found)) if found else None


def worst(verdicts: list[str]) -> str:
    """The most severe of some verdicts (`SEVERITY`); an unknown one counts as an error."""
    known = [v if v in SEVERITY else "error" for v in verdicts]
    return min(known, key=SEVERITY.index) if known else "not run"


@dataclass(frozen=True)
class Cell:
    """One case in one repetition."""

    verdict: str
    margin: float | None  # its smallest client timeout margin (s), None without a client load
    duration: float
    path: str  # its folder, relative to the run folder (rep-2/<case>)
    message: str = ""


@dataclass
class Row:
    """One case across the repetitions (by number); a repetition it did not run in has none."""

    name: str
    title: str
    cells: dict[int, Cell] = field(default_factory=dict)

    def finished(self) -> list[str]:
        return [c.verdict for c in self.cells.values() if c.verdict != "not run"]

    @property
    def flaky(self) -> bool:
        """Its verdicts differ across the repetitions it finished in."""
        return len(set(self.finished())) > 1

    @property
    def verdict(self) -> str:
        """Its worst verdict over the series (`worst`)."""
        return worst(self.finished() or [c.verdict for c in self.cells.values()])

    @property
    def margin(self) -> float | None:
        """Its smallest client timeout margin over the series."""
        found = [c.margin for c in self.cells.values() if c.margin is not None]
        return min(found) if found else None

    def first_failure(self) -> tuple[int, Cell] | None:
        return next(((n, c) for n, c in sorted(self.cells.items()) if c.verdict in ("failed", "error")), None)


@dataclass
class Repetition:
    """One repetition: its number, folder and how it ended."""

    number: int
    folder: Path
    ended: str = "interrupted"  # "finished", "interrupted", or why pytest stopped it early

    def cases(self) -> list[dict[str, Any]]:
        """Its cases as data: its summary.json (written at its end, an interrupted one's too),
        else (killed) its cases' case.json files."""
        summary = self.folder / SUMMARY_FILE
        try:
            if summary.is_file():
                found = json.loads(summary.read_text())
                return [c for c in found if isinstance(c, dict) and "name" in c]
            return [json.loads(p.read_text()) for p in sorted(self.folder.glob(f"*/{CASE_FILE}"))]
        except (OSError, ValueError):
            return []


@dataclass
class Series:
    """A repeated run: its repetitions and cases; `most` is the cap asked for."""

    run: Path
    most: int
    until_fail: bool
    repetitions: list[Repetition]
    stopped: str = ""  # why it ended before `most` repetitions, if it did
    rows: list[Row] = field(default_factory=list)

    @classmethod
    def read(
        cls, run: Path, most: int, until_fail: bool, repetitions: list[Repetition], stopped: str = ""
    ) -> Series:
        series = cls(run, most, until_fail, repetitions, stopped)
        series.rows = flake_rows([(r.number, r.folder, r.cases()) for r in repetitions], run)
        return series

    @property
    def flaky(self) -> list[Row]:
        return [r for r in self.rows if r.flaky]

    def failed_repetitions(self) -> list[int]:
        return sorted({n for r in self.rows for n, c in r.cells.items() if c.verdict in ("failed", "error")})

    def line(self) -> str:
        """`3 repetitions, 1 case flaky` and which repetitions failed, for the top of the report."""
        n, k = len(self.repetitions), len(self.flaky)
        text = f"{n} repetition{'' if n == 1 else 's'}, {k} case{'' if k == 1 else 's'} flaky"
        text += f" (of {len(self.rows)})"
        bad = self.failed_repetitions()
        text += (
            f"; failed in repetition{'' if len(bad) == 1 else 's'} {', '.join(map(str, bad))}" if bad else ""
        )
        return text + (f"; {self.stopped}" if self.stopped else "")

    def summary(self) -> list[dict[str, Any]]:
        """summary.json of the run folder: a plain run's list of cases (name, title, verdict:
        the worst over the series, message, duration: the sum), each with `flaky`, its
        smallest margin and its repetitions; no figures (each repetition's summary has them)."""
        entries = []
        for row in self.rows:
            first = row.first_failure()
            entries.append(
                {
                    "name": row.name,
                    "title": row.title,
                    "verdict": row.verdict,
                    "flaky": row.flaky,
                    "smallest margin (s)": row.margin,
                    "message": first[1].message if first else "",  # its first failure's
                    "failed in": [
                        n for n, c in sorted(row.cells.items()) if c.verdict in ("failed", "error")
                    ],
                    "duration": round(sum(c.duration for c in row.cells.values()), 2),
                    "repetitions": [
                        {
                            "repetition": n,
                            "verdict": c.verdict,
                            "smallest margin (s)": c.margin,
                            "duration": c.duration,
                            "path": c.path,
                        }
                        for n, c in sorted(row.cells.items())
                    ],
                }
            )
        return entries

    def data(self) -> dict[str, Any]:
        """repetitions.json: the series as data."""
        return {
            "summary": self.line(),
            "repetitions": len(self.repetitions),
            "at most": self.most,
            "until fail": self.until_fail,
            "stopped": self.stopped,
            "flaky": [r.name for r in self.flaky],
            "failed repetitions": self.failed_repetitions(),
            "each": [
                {
                    "repetition": r.number,
                    "folder": r.folder.name,
                    "ended": r.ended,
                    "verdicts": counts(
                        [c.verdict for row in self.rows for n, c in row.cells.items() if n == r.number]
                    ),
                    "report": f"{r.folder.name}/report.html",
                    "junit": f"{r.folder.name}/{JUNIT_FILE}",
                }
                for r in self.repetitions
            ],
            "cases": {
                row.name: {str(n): [c.verdict, c.margin] for n, c in sorted(row.cells.items())}
                for row in self.rows
            },
        }

    def write(self) -> None:
        """summary.json and repetitions.json in the run folder."""
        (self.run / SUMMARY_FILE).write_text(json.dumps(self.summary(), indent=2, default=str))
        (self.run / SERIES_FILE).write_text(json.dumps(self.data(), indent=2, default=str))


def counts(verdicts: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for verdict in verdicts:
        found[verdict] = found.get(verdict, 0) + 1
    return dict(sorted(found.items()))


def flake_rows(repetitions: list[tuple[int, Path, list[dict[str, Any]]]], run: Path) -> list[Row]:
    """The flake table's rows: every case (in the order of the repetition it first finished
    in), its cell per repetition from that repetition's case data (summary.json entries or
    case.json, as the plugin writes them)."""
    rows: dict[str, Row] = {}
    for number, folder, cases in repetitions:
        for case in cases:
            name = str(case["name"])
            row = rows.setdefault(name, Row(name, str(case.get("title") or name)))
            row.cells[number] = Cell(
                verdict=str(case.get("verdict", "not run")),
                margin=smallest_margin(case.get("figures") or {}),
                duration=float(case.get("duration") or 0.0),
                path=str((folder / name).relative_to(run)) if folder.is_relative_to(run) else name,
                message=str(case.get("message") or ""),
            )
    return list(rows.values())


def is_series(run: Path) -> bool:
    """Whether a run folder holds a repeated run (its repetitions.json)."""
    return (run / SERIES_FILE).is_file()


def read_series(run: Path) -> Series | None:
    """A repeated run read back from its folder (its repetitions.json and repetitions)."""
    try:
        data = json.loads((run / SERIES_FILE).read_text())
        reps = [
            Repetition(int(e["repetition"]), run / str(e["folder"]), str(e.get("ended", "")))
            for e in data["each"]
        ]
        return Series.read(
            run, int(data["at most"]), bool(data["until fail"]), reps, str(data.get("stopped", ""))
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def merge_junit(parts: list[tuple[int, Path]], target: Path) -> Path:
    """One JUnit XML of all repetitions (`--junitxml PATH` with --repeat): each repetition's
    test suites, named `rep-<i>` (the cases keep their names: a CI system's history of a
    case stays one), under one <testsuites>. A repetition that wrote none is left out."""
    merged = ET.Element("testsuites", name="sessionlab repetitions")
    for number, path in parts:
        try:
            root = ET.parse(path).getroot()
        except (OSError, ET.ParseError):
            continue
        for suite in [root] if root.tag == "testsuite" else root.findall("testsuite"):
            suite.set("name", f"rep-{number}")
            merged.append(suite)
    ET.indent(merged)
    partial = target.with_name(f".{target.name}.part")
    ET.ElementTree(merged).write(partial, encoding="utf-8", xml_declaration=True)
    partial.replace(target)
    return target
