"""What every client load shares: its app's command line, its records with their timeout
margin (returned to the case, which notes them: `Case.note_load`), and one way to run it
to completion or start it in the background and finish it later.

A load (`Load`: `SessionLoad`, `HttpLoad`) is a frozen dataclass naming its `app`, with
`argv()`, `budget()` (the seconds it may take at most) and `parse(output)` (its records);
`run_load` runs any of them. `FtpDownload` and `IdleProbe` name their server only when they
run (`argv(server)`, so one list serves any server) and have a `budget()` too. Every client
started in the background is collected by the one `finish_load`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from lab.errors import CommandError, LabError
from lab.wait import wait_until

if TYPE_CHECKING:
    from lab.net import Lab
    from lab.procs import Proc

T = TypeVar("T")
MIN_MARGIN = 0.5  # s: a completed exchange's slowest wait stays this far inside its timeout


def app_argv(name: str, *args: str) -> list[str]:
    """The command line of the lab app `name` (a module of lab.apps)."""
    return [sys.executable, "-m", f"lab.apps.{name}", *args]


def run_batch(lab: Lab, node: str, server: str, probes: Sequence[Any]) -> list[str]:
    """Probes (each with `argv(server)`, `app_argv`'s, and `budget()`) run from `node` all
    at once, within the longest budget: one process per app (its `--batch`,
    lab.apps.events.run_probe), each probe in a thread of its own. The output of each
    probe, in order: its result line, or the error it ended with (which its reader then
    names as printing no result)."""
    import json
    from concurrent.futures import ThreadPoolExecutor

    from lab.events import read_json_lines

    argvs = [probe.argv(server) for probe in probes]
    timeout = max((probe.budget() for probe in probes), default=1.0)
    groups: dict[tuple[str, ...], list[int]] = {}
    for index, argv in enumerate(argvs):
        groups.setdefault(tuple(argv[:3]), []).append(index)  # python -m lab.apps.<name>

    def one(head: tuple[str, ...], members: list[int]) -> dict[int, str]:
        batch = json.dumps([argvs[i][3:] for i in members])
        out = lab.run(node, [*head, "--batch", batch], timeout=timeout)
        rows = [row for row in read_json_lines(out) if "batch" in row and "event" not in row]
        return {
            members[int(row.pop("batch"))]: (row.get("batch_error") or json.dumps(row)) + "\n" for row in rows
        }

    found: dict[int, str] = {}
    with ThreadPoolExecutor(max(1, len(groups))) as pool:  # the apps at once too
        for outputs in pool.map(lambda group: one(*group), groups.items()):
            found.update(outputs)
    return [found.get(i, "the probe's process printed nothing of it") for i in range(len(argvs))]


def cli_options(**values: object) -> list[str]:
    """Command-line options in the order given: `first_port=0` -> ["--first-port", "0"]."""
    return [part for name, value in values.items() for part in (f"--{name.replace('_', '-')}", str(value))]


def field_options(load: object, *names: str) -> list[str]:
    """`cli_options` of a load's fields `names`, in that order."""
    return cli_options(**{name: getattr(load, name) for name in names})


def listening(count: int = 1) -> str:
    """A regex for an app's log once it has logged `count` listening events."""
    return rf'(?s)(?:"event": "listening".*?){{{count}}}'


def timeout_margin(load: str, records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """How close a client load's completed exchanges came to their client timeout (every
    connect and every reply wait is bounded by it): the slowest such wait and what was
    left. A load that completed none has no margin (its failures are the case's subject)."""
    timeout, waits = None, []
    for r in records:
        timeout = r.get("timeout", timeout)
        if r.get("data_ok"):  # tcp_sessions: the connect and the echo are each one wait
            waits.append(max(r.get("connect_time", 0.0), r.get("echo_time", 0.0)))
        elif r.get("ok"):  # http_client: connect + request + response, at least the slowest wait
            waits.append(r["elapsed"])
    if timeout is None or not waits:
        return None
    slowest = max(waits)
    return {
        "load": load,
        "client timeout (s)": timeout,
        "completed": len(waits),
        "slowest wait (s)": round(slowest, 3),
        "margin (s)": round(timeout - slowest, 3),
    }


def thin_margins(margins: list[dict[str, Any]], least: float = MIN_MARGIN) -> list[str]:
    """The loads whose slowest completed wait came within `least` seconds of the timeout."""
    return [
        f"{m['load']}: slowest wait {m['slowest wait (s)']:g} s of a {m['client timeout (s)']:g} s timeout"
        for m in margins
        if m["margin (s)"] < least
    ]


class Records(list[dict[str, Any]]):
    """A client load's records (one per session or request) and the timeout margins of the
    loads that made them (`margins`: one per load that completed an exchange; several when
    the records gather loads of several clients). The case notes them (`Case.note_load`)
    and the plugin fails it when one is thin."""

    def __init__(self, records: Iterable[dict[str, Any]] = (), margins: Iterable[dict[str, Any] | None] = ()):
        super().__init__(records)
        self.margins: list[dict[str, Any]] = [m for m in margins if m is not None]

    @classmethod
    def measured(cls, load: str, records: list[dict[str, Any]]) -> Records:
        """`records` of the load named `load`, with its timeout margin."""
        return cls(records, [timeout_margin(load, records)])

    @property
    def margin(self) -> dict[str, Any] | None:
        """The tightest margin of the records' loads; None when none completed an exchange."""
        return min(self.margins, key=lambda m: m["margin (s)"], default=None)


class Load(Protocol):
    """A client load: its app (a module of lab.apps), the app's command line, how long it
    may take at most (s), and its records read from the app's output."""

    app: ClassVar[str]

    def argv(self) -> list[str]: ...

    def budget(self) -> float: ...

    def parse(self, output: str) -> list[dict[str, Any]]: ...


def run_load(lab: Lab, client: str, load: Load) -> Records:
    """Run `load` on `client` to its end; its records and margin (load named "<app> on
    <client>"). An app that fails is a LabError naming it."""
    name = f"{load.app} on {client}"
    try:
        out = lab.run(client, load.argv(), timeout=load.budget())
    except CommandError as exc:
        raise LabError(f"{name} exited {exc.rc}: {exc.output[-300:]}") from None
    return Records.measured(name, load.parse(out))


def start_load(lab: Lab, client: str, argv: list[str], name: str) -> Proc:
    """A client app in the background (beside an attack, a failover), owned by the case;
    `finish_load` collects it."""
    return lab.start(client, argv, name)


def finish_load(lab: Lab, proc: Proc, timeout: float, parse: Callable[[str], T]) -> T:
    """Wait (at most `timeout` s) for a client started with `start_load` to end, reap it
    (an app that ended as it should is no crash) and read its output with `parse`."""
    wait_until(lambda: not proc.running(), timeout, f"{proc.name} to end")
    code = lab.stop(proc)
    if code != 0:
        raise LabError(f"{proc.name} exited {code}: {proc.output()[-300:]}")
    return parse(proc.output())


def finish_measured(
    lab: Lab, proc: Proc, timeout: float, parse: Callable[[str], list[dict[str, Any]]]
) -> Records:
    """`finish_load` for a load with a timeout margin: its records, the load named after the process."""
    return finish_load(lab, proc, timeout, lambda output: Records.measured(proc.name, parse(output)))
