"""Live progress of a run for a person at a terminal: case n/N, elapsed time and each
verdict as it ends, then a summary table per suite (a pytest plugin drawn with rich)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from lab.catalog import suite_of

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
    uncollected: list[tuple[str, str]] = field(default_factory=list)  # (file, pytest's error)

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
        verdict = None
        if report.when == "setup" and (report.failed or report.skipped):
            verdict = "error" if report.failed else "skipped"
        elif report.when == "call":
            verdict = "passed" if report.passed else ("skipped" if report.skipped else "failed")
        elif report.when == "teardown" and report.failed:
            verdict = "error"
        if verdict is None:
            return
        reason = ""
        crash = getattr(report.longrepr, "reprcrash", None)
        if crash is not None:
            reason = crash.message.splitlines()[0] if crash.message else ""
        elif isinstance(report.longrepr, tuple):  # a skip: (file, line, reason)
            reason = str(report.longrepr[2])
        outcome = self._by_id.get(report.nodeid)
        if outcome is not None:  # a case that passed, then erred in teardown
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
        for outcome in self.outcomes:
            outcome.seconds = self._durations.get(outcome.nodeid, 0.0)

    # --- output ------------------------------------------------------------------------
    def _line(self, outcome: Outcome) -> None:
        done = len(self.outcomes)
        elapsed = time.monotonic() - self.started
        style = STYLE.get(outcome.verdict, "")
        # Text, never markup: a case's id or a failure's message may hold [brackets]
        text = Text.assemble(
            f"[{done:>3}/{self.total}] {elapsed:6.0f}s ",
            (f"{outcome.verdict:<7}", style),
            f" {(outcome.label or outcome.nodeid).removeprefix('testcases/')}",
        )
        if outcome.reason and outcome.verdict != "passed":
            text.append(f"\n            {outcome.reason[:200]}")
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
