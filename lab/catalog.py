"""The lab suites and their cases, as the CLI lists and runs them.

A suite is a scenario (`s1`...): the modules `testcases/test_<suite>.py` and
`testcases/test_<suite>_*.py`, one rule for every scenario however many modules its
sub-scenarios take (S4: L4 in the kernel and in the switch, L7, redundancy, scale). A case is one
collected test, named by its pytest node id; its description is its docstring's first line.
Cases are found by pytest's own collection, so what is listed is exactly what runs.
"""

from __future__ import annotations

import contextlib
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
SUITES_DIR = ROOT / "testcases"


@dataclass(frozen=True)
class CaseInfo:
    """A collected case: its node id (`testcases/test_s1_idle_timeout.py::test_x[...]`),
    suite, module, test name and one-line description."""

    nodeid: str
    suite: str
    module: str
    name: str
    description: str


_SCENARIO_MODULE = re.compile(r"test_(s[0-9]+)(?:_\w*)?")


def suite_of(module: str) -> str:
    """A module's suite: `s1` for test_s1_idle_timeout (and every other test_s1_* module),
    `harness` for the harness's own modules."""
    found = _SCENARIO_MODULE.fullmatch(module)
    return found.group(1) if found else "harness"


def suites(directory: Path = SUITES_DIR) -> dict[str, list[Path]]:
    """Scenario suite name (s1, ...) -> its modules (see `suite_of`), in name order."""
    found: dict[str, list[Path]] = {}
    for path in sorted(directory.glob("test_s*.py")):
        suite = suite_of(path.stem)
        if suite != "harness":
            found.setdefault(suite, []).append(path)
    return found


class _Collector:
    """A pytest plugin that keeps the collected items."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.broken: list[str] = []  # modules that could not be collected

    def pytest_collection_finish(self, session: Any) -> None:
        self.items = list(session.items)

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            self.broken.append(report.nodeid or "a module outside the checkout")


def collect(
    paths: list[Path] | None = None, keyword: str | None = None, broken: list[str] | None = None
) -> list[CaseInfo]:
    """The cases in `paths` (default: every suite), optionally only those `keyword` (a
    pytest -k expression) selects, in run order. A module that cannot be collected is an
    error, or, given `broken`, listed there and the others' cases returned."""
    import pytest

    targets = [str(p) for p in (paths or [p for group in suites().values() for p in group])]
    argv = [*targets, "--collect-only", "-q", "-p", "no:cacheprovider", "--rootdir", str(ROOT)]
    if keyword:
        argv += ["-k", keyword]
    collector = _Collector()
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = pytest.main(argv, plugins=[collector])
    if broken is not None and collector.broken:
        broken += collector.broken
    elif code not in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        last = [line for line in out.getvalue().splitlines() if line.strip()][-1:] or ["no output"]
        raise ConfigError(f"collecting the cases failed: {last[0]}")
    found = []
    for item in collector.items:
        module = item.path.stem
        function = getattr(item, "function", None)
        doc = ((function.__doc__ if function else None) or "").strip().splitlines()
        # a suite of one's own may lie outside the checkout: named by its full path
        rel = item.path.relative_to(ROOT).as_posix() if item.path.is_relative_to(ROOT) else str(item.path)
        found.append(
            CaseInfo(
                nodeid=f"{rel}::{item.name}",
                suite=suite_of(module),
                module=module,
                name=item.name,
                description=doc[0] if doc else item.name,
            )
        )
    return found


def check_keyword(expression: str) -> None:
    """Refuse a malformed -k expression in one line, before anything starts."""
    if not expression.strip():
        raise ConfigError("-k '': an empty expression selects every case (leave -k out to run them all)")
    try:
        from _pytest.mark.expression import Expression
    except ImportError:  # pytest moved it: its own error will have to do
        return
    try:
        Expression.compile(expression)
    except Exception as exc:  # pytest's ParseError
        message = str(exc).split(" (<pytest match expression>")[0]
        raise ConfigError(f"malformed -k expression {expression!r}: {message}") from None


def resolve(targets: list[str]) -> list[str]:
    """What to hand pytest for `run` targets, each matched exactly: a suite name (`s5`), a
    module name (`test_s5_firewall`), a node id (`testcases/test_s5_firewall.py::test_x`,
    its [params] optional), a case name with or without its [params] (refused when cases of
    that name are in several modules: the candidates are named) or a lab suite file of
    one's own (`my_cases.py[::case]`). Every unknown or ambiguous target is named."""
    known = suites()
    if not targets:
        return [str(p) for group in known.values() for p in group]
    modules = {p.stem: p for p in sorted(SUITES_DIR.glob("test_*.py"))}  # the harness's own too
    out: list[str] = []
    cases: list[CaseInfo] | None = None
    unknown: list[str] = []
    problems: list[str] = []
    broken: list[str] = []
    for target in targets:
        file, sep, name = target.partition("::")
        path = _suite_file(file)
        if target in known:
            out += [str(p) for p in known[target]]
        elif target.removesuffix(".py") in modules:
            out.append(str(modules[target.removesuffix(".py")]))
        elif path is not None and not sep:
            out.append(str(path))  # a suite of one's own
        elif path is not None:
            hits = _named(collect([path]), name)
            if hits:
                out += [f"{path}::{c.name}" for c in hits]
            else:
                problems.append(f"no case {name!r} in {file}")
        elif sep:
            problems.append(f"{target}: no such file {file}")
        else:
            if cases is None:  # a module that cannot be imported hides only its own cases
                cases = collect(list(modules.values()), broken=broken)
            hits = _named(cases, target)
            places = list(dict.fromkeys(c.nodeid.split("::", 1)[0] for c in hits))
            if len(places) > 1:
                ids = list(dict.fromkeys(c.nodeid if "[" in target else c.nodeid.split("[")[0] for c in hits))
                problems.append(f"case {target} is in {len(places)} modules: name one of {', '.join(ids)}")
            elif hits:
                out += [str(ROOT / c.nodeid) for c in hits]
            else:
                unknown.append(target)
    if unknown:
        problems.insert(
            0,
            f"unknown suite or case {', '.join(unknown)} (suites: {', '.join(known)}; "
            "`sessionlab list` shows the cases)"
            + (f"; {', '.join(broken)} could not be collected (`run` it to see why)" if broken else ""),
        )
    if problems:
        raise ConfigError(problems)
    return list(dict.fromkeys(out))


def _suite_file(file: str) -> Path | None:
    """A target's `.py` file: as given (from here), else in the checkout; None if neither."""
    if not file.endswith(".py"):
        return None
    for path in (Path(file), ROOT / file):
        if path.is_file():
            return path.resolve()
    return None


def _named(cases: list[CaseInfo], name: str) -> list[CaseInfo]:
    """The cases called exactly `name`: with its [params], or every variant without."""
    return [c for c in cases if name in (c.name, c.name.split("[")[0])]
