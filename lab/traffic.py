"""Real traffic between lab hosts: idle probes, echo servers, sessions, bulk transfers,
hand-made segments. Each runs one app of `lab/apps` (JSON lines, see `lab.apps.events`).

Every client takes a source port (or a first port), so a case can keep its flows inside
its own port block; 0 lets the kernel pick.
"""

from __future__ import annotations

import json
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from lab.errors import CommandError, ConfigError, LabError
from lab.wait import wait_until

if TYPE_CHECKING:
    from lab.net import Lab
    from lab.procs import Proc


def app_argv(name: str, *args: str) -> list[str]:
    """The command line of the lab app `name` (a module of lab.apps)."""
    return [sys.executable, "-m", f"lab.apps.{name}", *args]


def listening(count: int = 1) -> str:
    """A regex for an app's log once it has logged `count` listening events."""
    return rf'(?s)(?:"event": "listening".*?){{{count}}}'


@dataclass(frozen=True)
class IdleProbe:
    """One idle probe to run: which service, how long idle, and how it keeps alive.

    `push`: the server speaks first after the idle period (the service direction);
    `sport`: the client's source port (0: the kernel picks)."""

    port: int
    idle: float
    app_timeout: float = 3.0
    tcp_keepalive: int = 0  # TCP keepalive period (s); 0: off
    heartbeat: float = 0.0  # application heartbeat period (s); 0: off
    label: str = ""
    sport: int = 0
    push: bool = False

    def argv(self, server: str) -> list[str]:
        argv = app_argv(
            "tcp_probe",
            "--server",
            server,
            "--port",
            str(self.port),
            "--idle",
            str(self.idle),
            "--app-timeout",
            str(self.app_timeout),
        )
        if self.sport:
            argv += ["--sport", str(self.sport)]
        if self.tcp_keepalive:
            argv += ["--tcp-keepalive", str(self.tcp_keepalive)]
        if self.heartbeat:
            argv += ["--heartbeat", str(self.heartbeat)]
        if self.push:
            argv += ["--push"]
        return argv


@dataclass
class ProbeResult:
    """What the application behind a probe experienced."""

    probe: IdleProbe
    outcome: str  # delivered / hung / reset
    learned_after: float  # seconds from the start of idle until the application knew
    client: str  # address:port of the client socket
    sport: int
    wall_start: float
    raw: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The probe's settings and its result, flat (`sport`: the port actually used)."""
        return {**asdict(self.probe), **{k: v for k, v in asdict(self).items() if k != "probe"}}


def run_probes(lab: Lab, client: str, server: str, probes: list[IdleProbe]) -> list[ProbeResult]:
    """Run probes from `client` to the address `server`, all at once; results in order."""
    sports = [p.sport for p in probes if p.sport]
    twice = sorted({p for p in sports if sports.count(p) > 1})
    if twice:
        raise ConfigError([f"probes share source port {p}" for p in twice])

    def one(probe: IdleProbe) -> ProbeResult:
        budget = probe.idle + 2 * probe.app_timeout + 10
        out = lab.run(client, probe.argv(server), timeout=budget)
        try:
            raw = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise LabError(f"probe {probe} printed no result: {out.strip()[-300:]}") from None
        return ProbeResult(
            probe,
            raw["outcome"],
            raw["learned_after"],
            raw["client"],
            int(raw["client"].rsplit(":", 1)[1]),
            raw["wall_start"],
            raw,
        )

    with ThreadPoolExecutor(max_workers=max(1, len(probes))) as pool:
        return list(pool.map(one, probes))


def start_echo_server(lab: Lab, node: str, ports: list[int], name: str) -> Proc:
    """A line echo server on `ports` (it also answers `push <s>` with `pushed` after s
    seconds), up when it has logged listening on every one."""
    argv = app_argv("echo_server")
    for port in ports:
        argv += ["--port", str(port)]
    return lab.start(node, argv, name, ready=listening(len(ports)))


def server_events(proc: Proc, peer: str | None = None) -> list[dict[str, Any]]:
    """The events an app logged (the echo server's, say), optionally only those of one
    client address:port."""
    text = proc.output()
    # A server still writing may have its last line half out: only whole lines count.
    lines = text.splitlines() if text.endswith("\n") else text.splitlines()[:-1]
    events = [json.loads(line) for line in lines if line.startswith("{")]
    return [e for e in events if "event" in e and (peer is None or e.get("peer") == peer)]


def listening_ports(proc: Proc) -> list[int]:
    """The ports a server app listens on, as it logged them (the kernel's pick for 0)."""
    return [e["port"] for e in server_events(proc) if e["event"] == "listening"]


def send_segment(lab: Lab, node: str, src: str, dst: str, sport: int, dport: int, flags: str = "A") -> None:
    """Send one hand-made TCP segment from `node` (an out-of-state ACK, say)."""
    lab.run(
        node,
        app_argv(
            "craft",
            "--src",
            src,
            "--dst",
            dst,
            "--sport",
            str(sport),
            "--dport",
            str(dport),
            "--flags",
            flags,
        ),
    )


MIN_MARGIN = 0.5  # s: a completed exchange's slowest wait stays this far inside its timeout


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


def _noted(lab: Lab, load: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records, their load's timeout margin noted in the lab for the running case."""
    margin = timeout_margin(load, records)
    if margin is not None:
        lab.margins.append(margin)
    return records


def run_sessions(
    lab: Lab,
    client: str,
    servers: list[str],
    count: int,
    concurrency: int = 8,
    timeout: float = 2.0,
    first_port: int = 0,
) -> list[dict[str, Any]]:
    """`count` short TCP sessions from `client` to `servers` (address:port, round robin);
    with `first_port`, session i uses source port first_port + i."""
    load = SessionLoad(servers, count, concurrency, timeout, first_port)
    return _noted(
        lab, f"tcp_sessions on {client}", sessions_records(lab.run(client, load.argv(), timeout=load.budget))
    )


@dataclass(frozen=True)
class SessionLoad:
    """Short TCP sessions (`tcp_sessions`): `count` of them to `servers` (address:port,
    round robin), session i from source port first_port + i; started at `rate` per second
    (0: as fast as `concurrency` allows); each held open idle `hold` seconds after its
    echo, then closed (FIN) or, with `reset`, aborted (RST)."""

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
            "tcp_sessions",
            "--count",
            str(self.count),
            "--concurrency",
            str(self.concurrency),
            "--timeout",
            str(self.timeout),
            "--first-port",
            str(self.first_port),
            "--rate",
            str(self.rate),
            "--hold",
            str(self.hold),
            "--end",
            "reset" if self.reset else "close",
        )
        for server in self.servers:
            argv += ["--server", server]
        return argv

    @property
    def budget(self) -> float:
        """Seconds the load may take at most."""
        paced = self.count / self.rate if self.rate else 0.0
        waves = self.count / max(1, self.concurrency)
        return paced + waves * (self.timeout + self.hold + 1) + 30


def sessions_records(output: str) -> list[dict[str, Any]]:
    """The records of a `tcp_sessions` run, one per session."""
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def start_sessions(lab: Lab, client: str, load: SessionLoad, name: str) -> Proc:
    """A `SessionLoad` in the background (beside an attack); `finish_sessions` collects it."""
    return lab.start(client, load.argv(), name)


def finish_sessions(lab: Lab, proc: Proc, load: SessionLoad) -> list[dict[str, Any]]:
    """Wait for a started `SessionLoad` to end; its records."""
    wait_until(lambda: not proc.running(), load.budget, f"{proc.name} to end")
    code = lab.stop(proc)
    if code != 0:
        raise LabError(f"{proc.name} exited {code}: {proc.output()[-300:]}")
    return _noted(lab, proc.name, sessions_records(proc.output()))


def run_sessions_from(
    lab: Lab,
    clients: list[str],
    servers: list[str],
    count: int,
    concurrency: int = 8,
    timeout: float = 2.0,
    first_port: int = 0,
) -> list[dict[str, Any]]:
    """`count` sessions in all, spread over `clients` that run at once; each record names
    its client. With `first_port`, the sessions use the ports first_port .. first_port +
    count - 1, each client a disjoint sub-range of them: the clients' addresses differ, so
    shared ports would not collide, but then the block a case owns is exactly `count`
    ports, whichever client a flow came from."""
    share = [count // len(clients) + (1 if i < count % len(clients) else 0) for i in range(len(clients))]
    firsts = [first_port + sum(share[:i]) if first_port else 0 for i in range(len(clients))]

    def one(item: tuple[str, int, int]) -> list[dict[str, Any]]:
        client, n, first = item
        records = run_sessions(lab, client, servers, n, concurrency, timeout, first)
        return [{**r, "client": lab.ip(client)} for r in records]

    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        parts = pool.map(one, zip(clients, share, firsts, strict=True))
        return [r for part in parts for r in part]


def start_bulk_receiver(lab: Lab, node: str, port: int, name: str, interval: float = 0.1) -> Proc:
    """A bulk receiver on `port` logging the bytes of every `interval` (see `bulk_series`),
    up when it listens. On stop it aborts (RST) a transfer still open."""
    argv = app_argv("bulk", "receive", "--port", str(port), "--interval", str(interval))
    return lab.start(node, argv, name, ready=listening())


def start_bulk_sender(
    lab: Lab,
    node: str,
    server: str,
    port: int,
    name: str,
    duration: float,
    sport: int = 0,
    user_timeout: float = 3.0,
    rate: float = 2_500_000,
) -> Proc:
    """A bulk sender streaming `rate` bytes/s to `server`:`port` for `duration` s from
    source port `sport`, up when connected. A path that stops carrying it breaks it within
    `user_timeout` s (TCP_USER_TIMEOUT); its `done` event says `completed` or `broken`."""
    argv = app_argv(
        "bulk",
        "send",
        "--server",
        server,
        "--port",
        str(port),
        "--sport",
        str(sport),
        "--duration",
        str(duration),
        "--user-timeout",
        str(user_timeout),
        "--rate",
        str(rate),
    )
    return lab.start(node, argv, name, ready=r'"event": "connected"')


def bulk_series(proc: Proc) -> list[tuple[float, int]]:
    """The bulk receiver's throughput: (wall time, bytes received in the interval ending then)."""
    return [(e["t"], e["bytes"]) for e in server_events(proc) if e["event"] == "bytes"]


def bulk_outcome(proc: Proc) -> dict[str, Any] | None:
    """The bulk sender's `done` event (outcome completed / broken, bytes sent), None before."""
    done = [e for e in server_events(proc) if e["event"] == "done"]
    return done[-1] if done else None


@dataclass(frozen=True)
class FtpDownload:
    """One FTP download to run: mode (PORT, EPRT, PASV, EPSV), the file, the ports the
    client uses (control source port; data: where it listens or binds), a NOOP period
    during the transfer (0: none), and a hold between announcing a data port and using it."""

    mode: str
    file: str
    sport: int
    data_port: int
    port: int = 21
    timeout: float = 5.0
    noop: float = 0.0
    label: str = ""
    hold: float = 0.0

    def argv(self, server: str) -> list[str]:
        return app_argv(
            "ftp_client",
            "--hold",
            str(self.hold),
            "--server",
            server,
            "--port",
            str(self.port),
            "--mode",
            self.mode,
            "--file",
            self.file,
            "--sport",
            str(self.sport),
            "--data-port",
            str(self.data_port),
            "--timeout",
            str(self.timeout),
            "--noop",
            str(self.noop),
        )


def run_ftp(lab: Lab, client: str, server: str, downloads: list[FtpDownload]) -> list[dict[str, Any]]:
    """Run the downloads at once from `client`; each one's result record (ftp_client) with
    its events (`events`) and its download (`download`)."""

    def one(download: FtpDownload) -> dict[str, Any]:
        out = lab.run(client, download.argv(server), timeout=6 * download.timeout + 60)
        record = _ftp_record(out)
        if record is None:
            raise LabError(f"ftp_client {download.mode} on {client} reported nothing: {out[-300:]}")
        return {**record, "download": asdict(download)}

    with ThreadPoolExecutor(max_workers=max(1, len(downloads))) as pool:
        return list(pool.map(one, downloads))


def start_ftp(lab: Lab, client: str, server: str, download: FtpDownload, name: str) -> Proc:
    """Start one download in the background (owned by the case); `finish_ftp` waits for
    it and reads its record."""
    return lab.start(client, download.argv(server), name)


def finish_ftp(lab: Lab, proc: Proc, timeout: float) -> dict[str, Any]:
    """Wait (at most `timeout` s) for a download started with `start_ftp` to end, reap it
    (an app that ended as it should is no crash), and return its record and events."""
    lab.wait(lambda: not proc.running(), timeout, f"{proc.name} to end")
    code = lab.stop(proc)
    record = _ftp_record(proc.output())
    if code != 0 or record is None:
        raise LabError(f"{proc.name} exited {code}: {proc.output()[-300:]}")
    return record


def _ftp_record(output: str) -> dict[str, Any] | None:
    """The ftp_client's result record (its last non-event line) with its events, or None."""
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    records = [x for x in lines if "event" not in x]
    return {**records[-1], "events": [x for x in lines if "event" in x]} if records else None


FTP_TOOLS = ("curl", "lftp")


def ftp_tool_argv(
    tool: str, mode: str, url: str, out: str, data_ports: range, timeout: float, address: str
) -> list[str]:
    """The command line of a real FTP client downloading `url` to `out` in `mode`: curl
    (PORT, EPRT, PASV, EPSV) or lftp (PORT, PASV). In active mode it announces `address`
    and a port of `data_ports`; every other port it takes is an ephemeral one."""
    active = f"{data_ports.start}-{data_ports.stop - 1}"
    if tool == "curl":
        argv = ["curl", "-sS", "--max-time", f"{timeout:g}", "-o", out, "-w", "%{response_code}"]
        argv += {
            # curl takes no "-" (the control session's address) with a port range
            "PORT": ["--disable-eprt", "-P", f"{address}:{active}"],
            "EPRT": ["-P", f"{address}:{active}"],
            "PASV": ["--disable-epsv"],
            "EPSV": [],
        }[mode]
        return [*argv, url]
    if tool == "lftp" and mode in ("PORT", "PASV"):
        settings = [
            f"set ftp:passive-mode {'on' if mode == 'PASV' else 'off'}",
            "set ftp:prefer-epsv off",
            f"set ftp:port-range {active}",
            f"set net:timeout {timeout:g}",
            "set net:max-retries 1",
            "set net:persist-retries 0",
            f"get {url.rsplit('/', 1)[1]} -o {out}",
            "bye",
        ]
        return ["lftp", "-e", "; ".join(settings), url.rsplit("/", 1)[0]]
    raise ConfigError(f"{tool}: no FTP mode {mode!r} (curl: PORT, EPRT, PASV, EPSV; lftp: PORT, PASV)")


def run_ftp_tool(
    lab: Lab, client: str, tool: str, mode: str, url: str, out: str, data_ports: range, timeout: float
) -> dict[str, Any]:
    """Run one download with curl or lftp on `client`; its exit code and what it printed."""
    argv = ftp_tool_argv(tool, mode, url, out, data_ports, timeout, lab.ip(client))
    try:
        text = lab.run(client, argv, timeout=4 * timeout + 30)
        code = 0
    except CommandError as exc:
        text, code = exc.output, exc.rc
    return {"tool": tool, "mode": mode, "exit": code, "output": text.strip()[-300:], "argv": argv}


# --- HTTP through balancers -------------------------------------------------------------
def start_http_server(lab: Lab, node: str, name: str, port: int = 80, tls: str | None = None) -> Proc:
    """A real server on `node` answering as `name` (see lab.apps.http_server), HTTPS with
    the PEM `tls`; ready when it listens. Ended with the case."""
    argv = app_argv("http_server", "--name", name, "--port", str(port)) + (["--tls", tls] if tls else [])
    return lab.start(node, argv, f"http-{name}", ready=listening())


def http_log(proc: Proc) -> list[dict[str, Any]]:
    """The requests a server saw (its `request` events), in order."""
    return _events(proc, "request")


def _events(proc: Proc, name: str) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in proc.output().splitlines() if line.startswith("{")]
    return [r for r in rows if r.get("event") == name]


@dataclass(frozen=True)
class HttpLoad:
    """HTTP requests from one client to `server`:`port`: `count` of them, each a new
    connection from source port `first_port` + i (or all over one, `keepalive`), started
    `rate` per second (0: as fast as `concurrency` allows)."""

    server: str
    count: int
    first_port: int
    port: int = 80
    path: str = "/"
    rate: float = 0.0
    concurrency: int = 4
    timeout: float = 2.0
    keepalive: bool = False
    headers: tuple[str, ...] = ()

    def argv(self) -> list[str]:
        argv = app_argv(
            "http_client",
            "--server",
            self.server,
            "--port",
            str(self.port),
            "--path",
            self.path,
            "--count",
            str(self.count),
            "--rate",
            str(self.rate),
            "--concurrency",
            str(self.concurrency),
            "--timeout",
            str(self.timeout),
            "--first-port",
            str(self.first_port),
        )
        for header in self.headers:
            argv += ["--header", header]
        return argv + (["--keepalive"] if self.keepalive else [])

    def budget(self) -> float:
        """How long the whole load may take (s), generously."""
        paced = self.count / self.rate if self.rate else 0.0
        return paced + self.count * (self.timeout + 0.5) / max(1, self.concurrency) + 30


def http_records(output: str) -> list[dict[str, Any]]:
    """The http_client's records (one per request, in start order); raises without its
    closing line (it was cut short)."""
    rows = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    if not rows or not rows[-1].get("done"):
        raise LabError(f"http_client ended early: {output.strip()[-300:]}")
    return sorted((r for r in rows if "i" in r), key=lambda r: r["i"])


def run_http(lab: Lab, loads: dict[str, HttpLoad]) -> dict[str, list[dict[str, Any]]]:
    """Run each client's load at once (client node -> load); each client's records."""

    def one(item: tuple[str, HttpLoad]) -> tuple[str, list[dict[str, Any]]]:
        client, load = item
        try:
            out = lab.run(client, load.argv(), timeout=load.budget())
        except CommandError as exc:
            raise LabError(f"http_client on {client} exited {exc.rc}: {exc.output[-300:]}") from None
        return client, _noted(lab, f"http_client on {client}", http_records(out))

    with ThreadPoolExecutor(max_workers=max(1, len(loads))) as pool:
        return dict(pool.map(one, loads.items()))


def start_http(lab: Lab, client: str, load: HttpLoad, name: str) -> Proc:
    """Start one client's load in the background (owned by the case); `finish_http` reads it."""
    return lab.start(client, load.argv(), name)


def finish_http(lab: Lab, proc: Proc, timeout: float) -> list[dict[str, Any]]:
    lab.wait(lambda: not proc.running(), timeout, f"{proc.name} to end")
    code = lab.stop(proc)
    if code != 0:
        raise LabError(f"{proc.name} exited {code}: {proc.output()[-300:]}")
    return _noted(lab, proc.name, http_records(proc.output()))


def curl(lab: Lab, node: str, url: str, ports: range, *options: str, timeout: float = 5.0) -> dict[str, Any]:
    """One request with curl from `node`, its local port from `ports`: what curl reports
    (`-w %{json}`: http_code, size_download, exitcode, ...) and the response's headers
    (lower-case names; the last response's when curl follows redirects)."""
    argv = ["curl", "-sS", "--max-time", f"{timeout:g}", "--local-port", f"{ports.start}-{ports.stop - 1}"]
    argv += ["-o", "/dev/null", "-D", "-", "-w", "\\n%{json}\\n", *options, url]
    try:
        out = lab.run(node, argv, timeout=timeout + 10)
    except CommandError as exc:
        out = exc.output
    lines = out.splitlines()
    report = next((json.loads(line) for line in reversed(lines) if line.startswith("{")), None)
    if report is None:
        raise LabError(f"curl on {node} reported nothing: {out.strip()[-300:]}")
    headers: dict[str, str] = {}
    for line in lines:
        if line.startswith("HTTP/"):
            headers = {}  # a new response (after a redirect or a 100)
        elif ":" in line and not line.startswith("{"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return {**report, "headers": headers}


# --- load from a real generator --------------------------------------------------------
_WRK_TOTAL = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m)")
_WRK_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_WRK_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def parse_wrk(text: str) -> dict[str, Any]:
    """wrk's summary as data: requests, seconds, requests/s, socket errors, non-2xx/3xx."""
    total = _WRK_TOTAL.search(text)
    if total is None:
        raise LabError(f"wrk printed no summary: {text.strip()[-300:]}")
    requests, seconds = int(total[1]), float(total[2]) * _WRK_UNITS[total[3]]
    errors = _WRK_ERRORS.search(text)
    non2xx = _WRK_NON2XX.search(text)
    socket_errors = (
        dict(zip(("connect", "read", "write", "timeout"), map(int, errors.groups()), strict=True))
        if errors
        else {}
    )
    return {
        "requests": requests,
        "seconds": seconds,
        "requests_per_s": requests / seconds if seconds else 0.0,
        "socket_errors": socket_errors,
        "non_2xx": int(non2xx[1]) if non2xx else 0,
    }


def run_wrk(
    lab: Lab,
    node: str,
    url: str,
    seconds: float,
    connections: int,
    ports: range,
    headers: tuple[str, ...] = (),
) -> dict[str, Any]:
    """wrk (one thread) from `node` for `seconds` with `connections` kept open; its
    connections take their source ports from `ports` (the node's ephemeral range, for the
    run). With "Connection: close" in `headers` every request is a new connection."""
    first, last = ports.start, ports.stop - 1
    lab.run(node, ["sysctl", "-qw", f"net.ipv4.ip_local_port_range={first} {last}"])
    try:
        argv = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds:g}s", "--timeout", "2s"]
        for header in headers:
            argv += ["-H", header]
        out = lab.run(node, [*argv, url], timeout=seconds + 30)
    finally:
        lab.run(node, ["sysctl", "-qw", "net.ipv4.ip_local_port_range=32768 60999"])
    return {**parse_wrk(out), "connections": connections, "url": url}
