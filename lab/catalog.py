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

    def pytest_collection_finish(self, session: Any) -> None:
        self.items = list(session.items)


def collect(paths: list[Path] | None = None, keyword: str | None = None) -> list[CaseInfo]:
    """The cases in `paths` (default: every suite), optionally only those `keyword` (a
    pytest -k expression) selects, in run order."""
    import pytest

    targets = [str(p) for p in (paths or [p for group in suites().values() for p in group])]
    argv = [*targets, "--collect-only", "-q", "-p", "no:cacheprovider", "--rootdir", str(ROOT)]
    if keyword:
        argv += ["-k", keyword]
    collector = _Collector()
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = pytest.main(argv, plugins=[collector])
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        last = [line for line in out.getvalue().splitlines() if line.strip()][-1:] or ["no output"]
        raise ConfigError(f"collecting the cases failed: {last[0]}")
    found = []
    for item in collector.items:
        module = item.path.stem
        function = getattr(item, "function", None)
        doc = ((function.__doc__ if function else None) or "").strip().splitlines()
        rel = item.path.relative_to(ROOT).as_posix()
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
    """What to hand pytest for `run` targets: suite names (`s5`), module names
    (`test_s5_firewall`), case names (`test_session_log`, every case of that name), node
    ids (`testcases/test_s5_firewall.py::test_session_log`) or a lab suite file of one's
    own (`my_cases.py[::case]`). Unknown ones are an error naming each."""
    known = suites()
    if not targets:
        return [str(p) for group in known.values() for p in group]
    modules = {p.stem: p for p in sorted(SUITES_DIR.glob("test_*.py"))}  # the harness's own too
    out: list[str] = []
    cases: list[CaseInfo] | None = None
    unknown = []
    for target in targets:
        if target in known:
            out += [str(p) for p in known[target]]
        elif target.removesuffix(".py") in modules:
            out.append(str(modules[target.removesuffix(".py")]))
        elif target.split("::", 1)[0].endswith(".py") and Path(target.split("::", 1)[0]).is_file():
            out.append(str(Path(target).resolve()) if "::" not in target else target)  # a suite of one's own
        else:
            if cases is None:
                cases = collect(list(modules.values()))
            hits = [c.nodeid for c in cases if target in (c.nodeid, c.name, c.name.split("[")[0])]
            hits += [c.nodeid for c in cases if c.nodeid.endswith(target) and c.nodeid not in hits]
            if hits:
                out += [str(ROOT / h) for h in hits]
            else:
                unknown.append(target)
    if unknown:
        raise ConfigError(
            f"unknown suite or case {', '.join(unknown)} (suites: {', '.join(known)}; "
            "`sessionlab list` shows the cases)"
        )
    return list(dict.fromkeys(out))
