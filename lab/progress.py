"""Live progress of a run for a person at a terminal: case n/N, elapsed time and each
verdict as it ends, then a summary table per suite (a pytest plugin drawn with rich)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from lab.catalog import suite_of
from lab.deaths import run_again, worker_crash

if TYPE_CHECKING:
    from lab.series import Series

STYLE = {"passed": "green", "failed": "bold red", "error": "bold red", "skipped": "yellow"}


@dataclass
class Outcome:
    nodeid: str
    suite: str
    verdict: str
    seconds: float
    reason: str = ""
    label: str = ""  # as shown: the node id, or file::case for a suite of one's own


@dataclass(eq=False)  # a pytest plugin: pluggy keeps plugins in sets
class RunProgress:
    """Counts cases as pytest reports them; `outcomes` is the run as data."""

    console: Console
    outcomes: list[Outcome] = field(default_factory=list)
    total: int = 0
    started: float = field(default_factory=time.monotonic)
    _progress: Progress | None = None
    _task: Any = None
    _by_id: dict[str, Outcome] = field(default_factory=dict)
    _durations: dict[str, float] = field(default_factory=dict)
    _crashed: dict[str, str] = field(default_factory=dict)  # node id -> xdist's crash message
    uncollected: list[tuple[str, str]] = field(default_factory=list)  # (file, pytest's error)
    tag: str = ""  # before each line: a repeated run's repetition (`2/3 `)
    stopped: str = ""  # why pytest stopped the session early (left --pause-on-fail's prompt)

    # --- pytest hooks -------------------------------------------------------------------
    def pytest_collection_finish(self, session: Any) -> None:
        self.total = len(session.items)
        self._progress = Progress(
            TextColumn("{task.description}", style="bold", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self._task = self._progress.add_task("running", total=self.total)
        self._progress.start()

    def pytest_collectreport(self, report: Any) -> None:
        """A suite that cannot be imported (with the terminal plugin off, nothing else says)."""
        if report.failed:
            self.uncollected.append((report.nodeid, report.longreprtext))

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        """pytest-xdist: the controller collects nothing itself; each worker reports all."""
        self.total = len(ids)
        if self._progress is not None:
            self._progress.update(self._task, total=self.total)

    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=nodeid.split("::")[-1][:60])

    def pytest_runtest_logreport(self, report: Any) -> None:
        # Every phase counts: setup (the lab's build), call and teardown.
        self._durations[report.nodeid] = self._durations.get(report.nodeid, 0.0) + report.duration
        verdict, crash_message = None, worker_crash(report)
        if report.when == "setup" and (report.failed or report.skipped):
            verdict = "error" if report.failed else "skipped"
        elif report.when == "call":
            verdict = "passed" if report.passed else ("skipped" if report.skipped else "failed")
        elif report.when == "teardown" and report.failed:
            verdict = "error"
        elif crash_message:  # pytest-xdist: its worker died in it
            verdict = "failed"
        if verdict is None:
            return
        reason = ""
        crash = getattr(report.longrepr, "reprcrash", None)
        if crash is not None:
            reason = crash.message.splitlines()[0] if crash.message else ""
        elif isinstance(report.longrepr, tuple):  # a skip: (file, line, reason)
            reason = str(report.longrepr[2])
        elif crash_message:
            reason = self._crashed[report.nodeid] = crash_message
        outcome = self._by_id.get(report.nodeid)
        if outcome is not None and report.nodeid in self._crashed and verdict != "failed":
            # xdist runs the case again on the worker that replaces the dead one
            reason, verdict = run_again(self._crashed[report.nodeid], verdict), "failed"
        if outcome is not None:  # a case that passed, then erred in teardown (or ran again)
            outcome.verdict, outcome.reason = verdict, reason
        else:
            # A file outside the rootdir (a suite of one's own) has an empty path in its id.
            path = report.nodeid.split("::")[0] or report.location[0]
            module = path.rsplit("/", 1)[-1].removesuffix(".py")
            name = report.nodeid if report.nodeid.split("::")[0] else path.rsplit("/", 1)[-1] + report.nodeid
            outcome = Outcome(report.nodeid, suite_of(module), verdict, 0.0, reason, name)
            self._by_id[report.nodeid] = outcome
            self.outcomes.append(outcome)
        self._line(outcome)

    @contextlib.contextmanager
    def suspended(self) -> Iterator[None]:
        """The live display off while something else has the terminal (a prompt opened by
        `--pause-on-fail`), back on after."""
        live = self._progress is not None and self._progress.live.is_started
        if live and self._progress is not None:
            self._progress.stop()
        try:
            yield
        finally:
            if live and self._progress is not None:
                self._progress.start()

    def pytest_sessionfinish(self, session: Any) -> None:
        if self._progress is not None:
            self._progress.stop()
        stopped = getattr(session, "shouldfail", None) or getattr(session, "shouldstop", None)
        self.stopped = str(stopped or "")
        for outcome in self.outcomes:
            outcome.seconds = self._durations.get(outcome.nodeid, 0.0)

    # --- output ------------------------------------------------------------------------
    def _line(self, outcome: Outcome) -> None:
        done = len(self.outcomes)
        elapsed = time.monotonic() - self.started
        style = STYLE.get(outcome.verdict, "")
        # Text, never markup: a case's id or a failure's message may hold [brackets]
        text = Text.assemble(
            f"{self.tag}[{done:>3}/{self.total}] {elapsed:6.0f}s ",
            (f"{outcome.verdict:<7}", style),
            f" {(outcome.label or outcome.nodeid).removeprefix('testcases/')}",
        )
        if outcome.reason and outcome.verdict != "passed":
            text.append(f"\n{' ' * len(self.tag)}            {outcome.reason[:200]}")
        self.console.print(text, highlight=False)
        if self._progress is not None:
            self._progress.advance(self._task)

    def summary(self) -> Table:
        """Per suite: cases passed, failed (and errors), skipped, time."""
        table = Table(title="sessionlab run")
        for column in ("suite", "passed", "failed", "skipped", "time (s)"):
            table.add_column(column, justify="left" if column == "suite" else "right")
        suites: dict[str, list[Outcome]] = {}
        for outcome in self.outcomes:
            suites.setdefault(outcome.suite, []).append(outcome)
        for suite, mine in [*suites.items(), ("all", self.outcomes)]:
            failed = sum(o.verdict in ("failed", "error") for o in mine)
            table.add_row(
                suite,
                str(sum(o.verdict == "passed" for o in mine)),
                Text(str(failed), style="bold red" if failed else ""),
                str(sum(o.verdict == "skipped" for o in mine)),
                f"{sum(o.seconds for o in mine):.0f}",
                end_section=suite == list(suites)[-1],
            )
        return table


def verdict_counts(outcomes: list[Outcome]) -> str:
    """`4 passed, 1 failed`: a repetition's verdicts in a line."""
    found: dict[str, int] = {}
    for outcome in outcomes:
        found[outcome.verdict] = found.get(outcome.verdict, 0) + 1
    return ", ".join(f"{n} {v}" for v, n in sorted(found.items())) or "no cases"


MANY_ROWS = 20  # a flake table longer than this shows its flaky and failed cases only
SHORT = {"passed": "P", "failed": "F", "error": "E", "skipped": "s", "not run": "-"}


def series_table(series: Series) -> Table:
    """A repeated run's flake table for the terminal: per case its verdict and smallest
    client timeout margin in each repetition (up to 8 repetitions; beyond, one letter per
    repetition: P passed, F failed, E error, s skipped, - not run), its smallest margin and
    whether it is flaky; the series in a line as the title. Of more than MANY_ROWS cases,
    only the flaky and failed ones (the report has them all)."""
    numbers = [r.number for r in series.repetitions]
    wide = len(numbers) <= 8
    table = Table(title=series.line())
    longest = max((len(r.name) for r in series.rows), default=4)
    table.add_column("case", overflow="fold", min_width=min(longest, 44))
    for n in numbers if wide else []:
        table.add_column(f"rep-{n}", justify="center")
    if not wide:
        table.add_column(f"rep-{numbers[0]}..rep-{numbers[-1]}")
    table.add_column("min margin (s)", justify="right")
    table.add_column("flaky")
    shown = series.rows
    if len(shown) > MANY_ROWS:  # a whole suite's: the flaky and failed cases only
        shown = [r for r in series.rows if r.flaky or r.verdict in ("failed", "error")]
        table.caption = (
            f"{len(series.rows) - len(shown)} more cases, neither flaky nor failed: see the report"
        )
    for row in shown:
        cells: list[Text | str] = []
        for n in numbers if wide else []:
            cell = row.cells.get(n)
            margin = "" if cell is None or cell.margin is None else f" {cell.margin:.2f}"
            cells.append(Text(cell.verdict, STYLE.get(cell.verdict, "")) + margin if cell else "-")
        if not wide:
            cells.append(
                "".join(SHORT.get(row.cells[n].verdict, "?") if n in row.cells else " " for n in numbers)
            )
        margin = "" if row.margin is None else f"{row.margin:.2f}"
        table.add_row(row.name, *cells, margin, Text("flaky", "bold yellow") if row.flaky else "")
    return table
