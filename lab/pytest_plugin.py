"""pytest plugin: the results folder, a `case` per test, the `lab` of a scenario module,
and the run's HTML report.

A scenario module names its topology (`LAB_TOPOLOGY = "s1"`); the `lab` fixture builds it
once per module and removes it afterwards, failed tests or not.

With pytest-xdist (`-n 2 --dist loadscope`: a module and its lab stay on one worker), the
workers write their cases into the controller's run folder and the controller writes the
one report from the cases' case.json files, in the order they finished.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.deaths import deaths_message, run_again, worker_crash
from lab.errors import ProcessDied
from lab.isolation import PortBlocks, foreign_flows
from lab.results import CASE_FILE, Case, new_run, safe_name
from lab.traffic import MIN_MARGIN, thin_margins

_CASES = pytest.StashKey[list[Case]]()
_RUN = pytest.StashKey[Path]()
_ITEM_CASE = pytest.StashKey[Case]()
_PORTS = pytest.StashKey[PortBlocks]()
_LAB = pytest.StashKey[Any]()  # the lab the running module built, while it is up
_FAILED = pytest.StashKey[str]()  # how and why a case failed (one line), for --pause-on-fail
_MADE = pytest.StashKey[bool]()  # the plugin made the run folder (plain pytest): it settles it
_DIED = pytest.StashKey[str]()  # what died during a case, said in its failed call's report


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sessionlab")
    group.addoption(
        "--results-root", default="results", help="folder that holds run folders (default: results)"
    )
    group.addoption("--run-dir", default=None, help="write this run here instead of a new run folder")
    group.addoption(
        "--pause-on-fail",
        action="store_true",
        help="when a case fails, open Mininet's prompt on its lab as the failure left it "
        "(before the case's cleanup); leaving ends the run and removes the lab, as topo does",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ports(n): the case needs a block of n TCP ports (default 500)")
    config.stash[_CASES] = []
    config.stash[_PORTS] = PortBlocks()
    workers = config.getoption("numprocesses", None) if config.pluginmanager.has_plugin("xdist") else None
    if config.getoption("--pause-on-fail") and workers:
        raise pytest.UsageError("--pause-on-fail needs the terminal: it runs without -n (pytest-xdist)")


def _worker(config: pytest.Config) -> bool:
    """Whether this is a pytest-xdist worker (the controller writes the report)."""
    return hasattr(config, "workerinput")


def _run_dir(config: pytest.Config) -> Path:
    if _RUN not in config.stash:
        shared = getattr(config, "workerinput", {}).get("sessionlab_run_dir")
        explicit = shared or config.getoption("--run-dir")
        if explicit:
            path = Path(explicit)
            path.mkdir(parents=True, exist_ok=True)
        else:
            path = new_run(Path(config.getoption("--results-root")))
            config.stash[_MADE] = True
        config.stash[_RUN] = path
    return config.stash[_RUN]


@pytest.fixture(scope="session")
def run_dir(pytestconfig: pytest.Config) -> Path:
    """This run's results folder."""
    return _run_dir(pytestconfig)


@pytest.fixture
def case(request: pytest.FixtureRequest, run_dir: Path) -> Case:
    """This test's output folder; what it records goes into the report."""
    item = request.node
    name = safe_name(f"{item.module.__name__.rsplit('.', 1)[-1]}.{item.name}")
    doc = (item.function.__doc__ or "").strip().splitlines()
    title = doc[0] if doc else item.name
    callspec = getattr(item, "callspec", None)
    if callspec is not None:
        title += f" [{callspec.id}]"  # parametrized cases share a docstring
    wanted = item.get_closest_marker("ports")  # @pytest.mark.ports(N): a case that needs more
    ports = request.config.stash[_PORTS].take(int(wanted.args[0]) if wanted else None)
    result = Case(name=name, path=run_dir / name, title=title, ports=ports)
    worker = getattr(request.config, "workerinput", {}).get("workerid")
    if worker:  # under pytest-xdist: which worker, and over which SSH connection if any
        result.runner = {"worker": worker, "ssh": os.environ.get("SSH_CONNECTION", "")}
    result.path.mkdir(parents=True, exist_ok=True)
    item.stash[_ITEM_CASE] = result
    request.config.stash[_CASES].append(result)
    return result


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest, run_dir: Path) -> Iterator[Any]:
    """The module's lab network, built from its LAB_TOPOLOGY; removed after the module."""
    from lab import topology
    from lab.net import Lab

    module = request.module
    name = getattr(module, "LAB_TOPOLOGY", None)
    if name is None:
        raise pytest.UsageError(f"{module.__name__} uses the lab fixture but sets no LAB_TOPOLOGY")
    topo = topology.load(name, **getattr(module, "LAB_TOPOLOGY_PARAMS", {}))
    controller = topology.controller_for(name, **getattr(module, "LAB_CONTROLLER_PARAMS", {}))
    folder = _lab_folder(run_dir / f"{safe_name(module.__name__.rsplit('.', 1)[-1])}-lab")
    with Lab(topo, folder, controller=controller) as running:
        request.config.stash[_LAB] = running
        try:
            yield running
        finally:
            del request.config.stash[_LAB]


def _lab_folder(first: Path) -> Path:
    """The folder of a module's lab: `<module>-lab`, claimed by creating it; where it is
    taken (the cases of a module split over workers, each building the lab, or one worker
    building it again: testcases/scheduling.py's BY_CASE) `<module>-lab-<worker>-<n>`."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    candidates = [first, *(first.with_name(f"{first.name}-{worker}-{n}") for n in range(1, 1000))]
    for folder in candidates:
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            continue
    raise pytest.UsageError(f"no free lab folder beside {first}")


@pytest.fixture(autouse=True)
def _lab_case_hygiene(request: pytest.FixtureRequest) -> Iterator[None]:
    """Around a test that uses the lab: its devices start with empty tables and counters;
    at its end the processes it started are stopped and its sockets aborted, their logs
    kept in its case folder, the client loads' margins it noted (`Case.note_load`) written
    as a figure; it fails when a process the lab owns died unasked, when a noted load came
    within MIN_MARGIN of its timeout, or when its evidence shows a flow of another case.

    A process that died is named with its exit and the last lines of its log (in the
    case's failure when the case failed, else in its teardown's). When it was the lab's
    rather than the case's (the controller, what the build or a module fixture started),
    the lab is removed at once and the module's next case gets a new one."""
    running = request.getfixturevalue("lab") if "lab" in request.fixturenames else None
    if running is None:
        yield
        return
    result: Case | None = request.getfixturevalue("case") if "case" in request.fixturenames else None
    earlier = running.idle_deaths()
    if earlier:
        note = _retire_lab(request)
        pytest.fail(f"before the case, {deaths_message(earlier)}{note}", pytrace=False)
    mark = running.begin_case()
    started = time.time()
    yield
    deaths = running.case_deaths()  # before the case's processes are stopped on purpose
    running.end_case(mark, result.ports if result is not None else None)
    if result is not None:
        result.links = running.links_during(started, time.time())
        if result.links:
            result.path.mkdir(parents=True, exist_ok=True)
            (result.path / "links.json").write_text(json.dumps(result.links, indent=1))
            result.keep(result.path / "links.json", "impaired links during the case")
        folder = result.path / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        logs = {p.log_path: p.name for p in running.procs[mark:]}
        logs.update({d.log_path: d.name for d in deaths})  # the lab's own dead too
        for path, name in logs.items():
            if path.exists():
                copy = folder / path.name
                shutil.copyfile(path, copy)
                result.keep(copy, f"log: {name}")
    margins = result.margins if result is not None else []
    if result is not None and margins:
        result.figure("client timeout margins", margins)
    if deaths:
        lab_wide = any(d.lab_wide for d in deaths)
        note = _retire_lab(request) if lab_wide else ""
        said = request.node.stash.get(_DIED, None) is not None  # in the case's own failure
        if not said or note not in ("", f"\n{_REBUILT}"):
            pytest.fail(deaths_message(deaths) + note, pytrace=False)
        return
    thin = thin_margins(margins)
    if thin:
        pytest.fail(
            f"a client load came within {MIN_MARGIN:g} s of its timeout (a slower run fails): "
            + "; ".join(thin),
            pytrace=False,
        )
    if result is not None and result.ports:
        alien = foreign_flows(result.path, result.ports)
        if alien:
            named = "; ".join(f"{f}: {', '.join(flows[:3])}" for f, flows in alien.items())
            pytest.fail(
                f"case evidence holds flows of another case (ports {result.ports.start}-"
                f"{result.ports.stop - 1} are this case's): {named}",
                pytrace=False,
            )


_REBUILT = "(the lab's process, not the case's: the lab is removed with this case; the next gets a new one)"


def _retire_lab(request: pytest.FixtureRequest) -> str:
    """Remove the module's lab now (its fixture's teardown: every process by PID, the
    network), so that the next case of the module that asks for `lab` gets a new one, and
    the module fixtures built on it are made again; what to add to the failure. pytest has
    no public call that ends a module-scoped fixture early; `FixtureDef.finish` is what
    pytest itself calls to end a fixture whose parameter changed (it runs the dependent
    fixtures' teardown first)."""
    try:
        request._get_active_fixturedef("lab").finish(request)  # type: ignore[arg-type]
    except Exception as exc:  # the death is the news; the removal's own error goes beside it
        return f"\n(a process of the lab's, not the case's; removing the lab then failed: {exc})"
    return f"\n{_REBUILT}"


def _death_report(item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport) -> None:
    """A case that failed while a lab process died: its report says so first (the failure
    is likely that death's consequence), unless the failure is that death's ProcessDied."""
    running = item.config.stash.get(_LAB, None)
    if running is None or "lab" not in getattr(item, "fixturenames", ()):
        return
    deaths = running.case_deaths()
    if not deaths:
        return
    text = deaths_message(deaths) + (f"\n{_REBUILT}" if any(d.lab_wide for d in deaths) else "")
    item.stash[_DIED] = text
    raised = call.excinfo.value if call.excinfo is not None else None
    said = {getattr(d, "pid", None) for d in raised.deaths} if isinstance(raised, ProcessDied) else set()
    if call.excinfo is not None and {d.pid for d in deaths} <= said:
        # the case stopped at the wait that noticed: where it waited, not the traceback again
        frames = call.excinfo.traceback.cut(path=item.path)
        where = "\n".join(f"  {f.path}:{f.lineno + 1} in {f.name}" for f in frames)
        report.longrepr = f"{text}\n\nthe case stopped at the wait that noticed it:\n{where}"
        return
    report.longrepr = f"{text}\n\nand the case failed (probably because of it):\n{report.longreprtext}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    if report.failed and report.when == "call":
        _death_report(item, call, report)
    if report.failed and report.when in ("setup", "call"):
        died = item.stash.get(_DIED, "") if report.when == "call" else ""
        item.stash[_FAILED] = ("failed: " if report.when == "call" else "erred in its setup: ") + (
            died.splitlines()[0][:300] if died else _one_line(report)
        )
    result = item.stash.get(_ITEM_CASE, None)
    if result is not None:
        result.phases[report.when] = report.duration
    # saved after the call and after the teardown (its time), or where the case ended
    if result is not None and (report.when in ("call", "teardown") or report.failed or report.skipped):
        if report.when == "call":
            result.duration = report.duration
        if report.failed:
            result.verdict = "failed" if report.when == "call" else "error"
            result.message = _message(report, item.stash.get(_DIED, "") if report.when == "call" else "")
        elif report.skipped:
            result.verdict = "skipped"
        elif result.verdict == "not run":
            result.verdict = "passed"
        result.save()
    return report


def _message(report: pytest.TestReport, died: str, limit: int = 3000) -> str:
    """A failed report's text for case.json, at most `limit` characters: its end (where the
    error is), and, when a lab process died during the case, what died first."""
    text = str(report.longrepr) if report.longrepr else ""
    if not died or not text.startswith(died) or len(text) <= limit:
        return text[-limit:]
    return f"{died}\n...\n{text[-max(0, limit - len(died) - 5) :]}"


def _one_line(report: pytest.TestReport) -> str:
    """Why a case failed, in one line: the assertion's or exception's first line."""
    crash = getattr(report.longrepr, "reprcrash", None)
    lines = (crash.message if crash is not None else report.longreprtext).strip().splitlines()
    return (lines[0] if crash is not None else lines[-1]).strip()[:300] if lines else "no message"


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    """With --pause-on-fail, a case that failed (or erred in its setup) opens the prompt
    on its lab before its fixtures' teardown stops its processes and flushes its tables."""
    why = item.stash.get(_FAILED, None)
    running = item.config.stash.get(_LAB, None)
    uses_lab = "lab" in getattr(item, "fixturenames", ())
    if why is not None and running is not None and uses_lab and item.config.getoption("--pause-on-fail"):
        _pause(item, running, why)
    return (yield)


def _pause(item: pytest.Item, running: Any, why: str) -> None:
    """The prompt on `running`, the terminal given back by pytest's capture and the live
    progress for the while. Leaving ends the run as `-x` does (the cases' teardown and the
    lab's removal run; exit 1); Ctrl-C at the prompt (or a hangup) interrupts it (130)."""
    from lab.interactive import Hangup, at_the_terminal, serve
    from lab.progress import RunProgress

    config = item.config
    capture = config.pluginmanager.getplugin("capturemanager")
    shown = [p for p in config.pluginmanager.get_plugins() if isinstance(p, RunProgress)]
    nodes = " ".join(n if r == n else f"{n} (as {r})" for n, r in running.names.items())
    # A suite file outside the checkout has no path in its node id: name the file.
    shown_id = item.nodeid if item.nodeid.split("::")[0] else f"{item.path.name}{item.nodeid}"
    banner = "\n".join(
        [
            f"case {shown_id} {why}",
            f"lab {running.tag} is as the failure left it; nodes: {nodes}",
            "Ctrl-D, `exit` or Ctrl-C at the prompt: the run ends here (as `-x` would) "
            "and the lab is removed, as `topo` does.",
        ]
    )
    with contextlib.ExitStack() as stack:
        if capture is not None:
            capture.suspend(in_=True)
            stack.callback(capture.resume)
        for plugin in shown:
            stack.enter_context(plugin.suspended())
        stack.enter_context(at_the_terminal())
        try:
            interrupted = serve(running, banner)
        except Hangup:
            interrupted = True
    if interrupted:
        raise KeyboardInterrupt(f"left the prompt of {item.nodeid} with Ctrl-C")
    item.session.shouldfail = f"left the prompt after {item.nodeid} failed (--pause-on-fail)"


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist, on the controller: every worker writes into this run's folder; one on
    another host (an SSH gateway) into the same run's folder in its checkout (`chdir`),
    fetched from there when the run ends."""
    run = _run_dir(node.config)
    spec = node.gateway.spec
    here = spec.popen and not spec.chdir
    node.workerinput["sessionlab_run_dir"] = str(run) if here else f"{spec.chdir}/results/{run.name}"


def pytest_sessionstart(session: pytest.Session) -> None:
    _FINISHED.clear()
    _CRASHED.clear()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """On an xdist controller: the order cases finish in, for the report."""
    if report.when == "teardown":
        _FINISHED.setdefault(report.nodeid, None)
    elif crash := worker_crash(report):
        _CRASHED[report.nodeid] = crash


_FINISHED: dict[str, None] = {}
_CRASHED: dict[str, str] = {}  # node id -> xdist's "worker 'gw1' crashed while running ..."


def cases_in(run: Path, nodeids: list[str]) -> list[Case]:
    """The cases of these node ids that wrote their case.json into `run`, in that order."""
    folders = [run / _case_name(nodeid) for nodeid in nodeids]
    return [Case.load(folder) for folder in folders if (folder / CASE_FILE).exists()]


def _case_name(nodeid: str) -> str:
    """The case folder of a node id, as the `case` fixture names it."""
    path, _, name = nodeid.partition("::")
    return safe_name(f"{Path(path).stem}.{name.rsplit('::', 1)[-1]}")


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if _worker(config):
        return
    try:
        _write_report(session)
    finally:
        if config.stash.get(_MADE, False):
            # A run folder of plain pytest's making: kept and older runs pruned as
            # `sessionlab run` does (lab.results.settle), removed when no case ran.
            from lab.results import settle

            settle(_run_dir(config))


def mark_crashed(cases: list[Case], crashed: dict[str, str]) -> None:
    """Cases whose pytest-xdist worker died in them (node id -> xdist's message) and that
    ran again on the replacement: failed, as pytest's exit status counts them, with the
    second run's verdict in the message."""
    by_name = {_case_name(nodeid): text for nodeid, text in crashed.items()}
    for case in cases:
        if case.name in by_name:
            case.message, case.verdict = run_again(by_name[case.name], case.verdict), "failed"


def _write_report(session: pytest.Session) -> None:
    config = session.config
    cases = config.stash.get(_CASES, [])
    if not cases and _FINISHED and _RUN in config.stash:  # the workers ran them
        cases = cases_in(_run_dir(config), list(_FINISHED))
    if not cases:
        return
    mark_crashed(cases, _CRASHED)
    from lab.report import write_report

    path = write_report(_run_dir(session.config), cases)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"sessionlab report: {path}")
