"""Short TCP sessions (`tcp_sessions`): one record per session, from one client or spread
over several at once, run to completion or started beside an attack and finished later."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypedDict, Unpack

from lab.events import read_records
from lab.traffic.load import Records, app_argv, field_options, finish_measured, run_load, start_load

if TYPE_CHECKING:
    from lab.net import Lab
    from lab.procs import Proc


@dataclass(frozen=True)
class SessionLoad:
    """Short TCP sessions (`tcp_sessions`): `count` of them to `servers` (address:port,
    round robin), session i from source port first_port + i; started at `rate` per second
    (0: as fast as `concurrency` allows); each held open idle `hold` seconds after its
    echo, then closed (FIN) or, with `reset`, aborted (RST)."""

    app: ClassVar[str] = "tcp_sessions"
    servers: list[str]
    count: int
    concurrency: int = 8
    timeout: float = 2.0
    first_port: int = 0
    rate: float = 0.0
    hold: float = 0.0
    reset: bool = False

    def argv(self) -> list[str]:
        argv = app_argv(
            self.app,
            *field_options(self, "count", "concurrency", "timeout", "first_port", "rate", "hold"),
            "--end",
            "reset" if self.reset else "close",
        )
        for server in self.servers:
            argv += ["--server", server]
        return argv

    def budget(self) -> float:
        """Seconds the load may take at most."""
        paced = self.count / self.rate if self.rate else 0.0
        waves = self.count / max(1, self.concurrency)
        return paced + waves * (self.timeout + self.hold + 1) + 30

    def parse(self, output: str) -> list[dict[str, Any]]:
        return sessions_records(output)


def sessions_records(output: str) -> list[dict[str, Any]]:
    """The records of a `tcp_sessions` run, one per session."""
    return read_records(output)


def run_sessions(
    lab: Lab,
    client: str,
    servers: list[str],
    count: int,
    concurrency: int = 8,
    timeout: float = 2.0,
    first_port: int = 0,
    rate: float = 0.0,
) -> Records:
    """`count` short TCP sessions from `client` to `servers` (address:port, round robin);
    with `first_port`, session i uses source port first_port + i; with `rate`, started at
    that pace (at most `concurrency` open at once)."""
    return run_load(lab, client, SessionLoad(servers, count, concurrency, timeout, first_port, rate))


def start_sessions(lab: Lab, client: str, load: SessionLoad, name: str) -> Proc:
    """A `SessionLoad` in the background (beside an attack); `finish_sessions` collects it."""
    return start_load(lab, client, load.argv(), name)


def finish_sessions(lab: Lab, proc: Proc, load: SessionLoad) -> Records:
    """Wait for a started `SessionLoad` to end; its records and margin."""
    return finish_measured(lab, proc, load.budget(), load.parse)


class SessionOptions(TypedDict, total=False):
    """`run_sessions`' options, which `run_sessions_from` passes on to each client's (`rate`:
    each client's own)."""

    concurrency: int
    timeout: float
    first_port: int
    rate: float


def run_sessions_from(
    lab: Lab, clients: list[str], servers: list[str], count: int, **options: Unpack[SessionOptions]
) -> Records:
    """`count` sessions in all, spread over `clients` that run at once (with `run_sessions`'
    options); each record names its client, and each client's load has its margin. With
    `first_port`, the sessions use the ports first_port .. first_port + count - 1, each
    client a disjoint sub-range of them: the clients' addresses differ, so shared ports
    would not collide, but then the block a case owns is exactly `count` ports, whichever
    client a flow came from."""
    first_port = options.get("first_port", 0)
    share = [count // len(clients) + (1 if i < count % len(clients) else 0) for i in range(len(clients))]
    firsts = [first_port + sum(share[:i]) if first_port else 0 for i in range(len(clients))]

    def one(item: tuple[str, int, int]) -> Records:
        client, n, first = item
        each = options.copy()
        each["first_port"] = first
        return run_sessions(lab, client, servers, n, **each)

    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        parts = list(pool.map(one, zip(clients, share, firsts, strict=True)))
    return Records(
        [{**r, "client": lab.ip(client)} for client, part in zip(clients, parts, strict=True) for r in part],
        [m for part in parts for m in part.margins],
    )
