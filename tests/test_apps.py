"""The lab apps and their wrappers in lab.traffic, run for real on loopback (no root).

Every node of the `Loopback` lab is this machine: addresses are 127.0.0.1, servers listen
on ports the kernel picks, clients bind free ports. Every wait is bounded.
"""

from __future__ import annotations

import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TypeVar

import pytest

from lab.apps.echo_server import push_delay
from lab.apps.events import abort
from lab.errors import ConfigError, LabError
from lab.events import read_records
from lab.procs import Proc, Supervisor
from lab.traffic import (
    IdleProbe,
    SessionLoad,
    bulk_outcome,
    bulk_series,
    finish_sessions,
    listening_ports,
    run_probes,
    run_sessions,
    run_sessions_from,
    server_events,
    start_bulk_receiver,
    start_bulk_sender,
    start_echo_server,
    start_sessions,
)

ROOT = Path(__file__).resolve().parent.parent
HERE = "127.0.0.1"
T = TypeVar("T")
# /proc/net/tcp state codes (include/net/tcp_states.h)
TCP_STATES = {
    "01": "ESTABLISHED",
    "02": "SYN_SENT",
    "03": "SYN_RECV",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "06": "TIME_WAIT",
    "07": "CLOSE",
    "08": "CLOSE_WAIT",
    "09": "LAST_ACK",
    "0A": "LISTEN",
    "0B": "CLOSING",
}


class Loopback(Supervisor):
    """What lab.traffic needs of a Lab, with every node this machine: the lab's own
    process supervision, commands run here, unprivileged, every address is 127.0.0.1."""

    def __init__(self, logs: Path):
        super().__init__(
            logs, f"sltest{random.getrandbits(24):06x}", lambda node: partial(subprocess.Popen, cwd=ROOT)
        )

    def ip(self, node: str) -> str:
        return HERE


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[Loopback]:
    lab = Loopback(tmp_path)
    yield lab
    lab.close()


@pytest.fixture
def echo(loop: Loopback) -> tuple[Proc, int]:
    """An echo server on a port the kernel picked: the process and the port."""
    proc = start_echo_server(loop, "server", [0], "echo")
    return proc, listening_ports(proc)[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HERE, 0))
        return int(sock.getsockname()[1])


def free_block(n: int) -> int:
    """The first of `n` consecutive ports below the ephemeral range that nothing holds."""

    def bindable(port: int) -> bool:
        with socket.socket() as sock:
            try:
                sock.bind(("0.0.0.0", port))
            except OSError:
                return False
        return True

    for _ in range(100):
        first = random.randrange(20000, 32000 - n)
        if all(bindable(p) for p in range(first, first + n)):
            return first
    pytest.skip(f"no {n} consecutive free ports found")


def tcp_states(port: int) -> list[str]:
    """The states of every IPv4 TCP socket of this namespace with `port` at either end."""
    states = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, remote, state = line.split()[1:4]
        if port in (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16)):
            states.append(TCP_STATES.get(state, state))
    return states


def poll(check: Callable[[], T], done: Callable[[T], bool], timeout: float = 3.0) -> T:
    """`check()` until `done` holds for its value or `timeout` s passed; the last value."""
    deadline = time.monotonic() + timeout
    value = check()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.02)
        value = check()
    return value


def read_line(sock: socket.socket) -> bytes:
    """One line (the socket's timeout bounds the wait)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        assert chunk, f"closed after {data!r}"
        data += chunk
    return data[:-1]


def client(port: int) -> socket.socket:
    return socket.create_connection((HERE, port), timeout=5)


def peer_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()
    return f"{host}:{port}"


# --- the echo server --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "delay"),
    [
        (b"push 0.3", 0.3),
        (b"push 2", 2.0),
        (b"push", None),
        (b"push x", None),
        (b"push -1", None),
        (b"hi", None),
    ],
)
def test_push_line(line, delay):
    assert push_delay(line) == delay


def test_echo_server_echoes_at_once_and_pushes_later(echo):
    proc, port = echo
    with client(port) as sock:
        sock.sendall(b"hello\n")
        assert read_line(sock) == b"hello"
        asked = time.monotonic()
        sock.sendall(b"push 0.3\nnow\n")
        assert read_line(sock) == b"now", "a line after `push` is echoed at once"
        assert time.monotonic() - asked < 0.25
        assert read_line(sock) == b"pushed"
        after = time.monotonic() - asked
        assert 0.28 <= after <= 1.0, f"`pushed` came {after:.3f}s after `push 0.3`"
        events = server_events(proc, peer_of(sock))
    pushes = [e for e in events if e["event"] == "push"]
    asked_at = next(e["t"] for e in events if e["event"] == "recv" and e["data"] == "push 0.3")
    assert len(pushes) == 1 and pushes[0]["port"] == port, events
    assert 0.28 <= pushes[0]["t"] - asked_at <= 1.0, events


def test_echo_server_on_sigterm_resets_its_connections_and_exits_0(loop, echo):
    proc, port = echo
    with client(port) as sock:
        sock.sendall(b"hello\n")
        assert read_line(sock) == b"hello"
        assert loop.stop(proc) == 0, proc.output()
        with pytest.raises(ConnectionResetError):
            sock.recv(100)
        me = peer_of(sock)
    assert [e["event"] for e in server_events(proc, me)][-1] == "abort", proc.output()


# --- abort ------------------------------------------------------------------------------


def test_abort_leaves_no_connection_state():
    with socket.socket() as listener:
        listener.bind((HERE, 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        # A plain close for comparison: the closing end waits in FIN_WAIT2 / TIME_WAIT.
        closed = client(port)
        closed_port = closed.getsockname()[1]
        served, _ = listener.accept()
        closed.close()
        states = poll(lambda: tcp_states(closed_port), lambda s: "FIN_WAIT2" in s)
        assert "FIN_WAIT2" in states, f"a plain close should leave FIN_WAIT2: {states}"
        served.close()
        # abort: RST, and nothing is left of the connection on either end.
        aborted = client(port)
        aborted_port = aborted.getsockname()[1]
        with listener.accept()[0] as other:
            other.settimeout(5)
            other.sendall(b"x")
            abort(aborted)
            with pytest.raises(ConnectionResetError):
                other.recv(10)
            states = poll(lambda: tcp_states(aborted_port), lambda s: not s)
            assert states == [], f"sockets left after abort: {states}"


# --- tcp_probe --------------------------------------------------------------------------


def test_probe_push_is_delivered_with_and_without_heartbeat(loop, echo):
    proc, port = echo
    probes = [
        IdleProbe(port, 0.3, app_timeout=1.0, push=True),
        IdleProbe(port, 0.5, app_timeout=1.0, heartbeat=0.1, push=True),
    ]
    plain, beating = run_probes(loop, "client", HERE, probes)
    for r in (plain, beating):
        assert r.outcome == "delivered", r.raw
        assert r.probe.idle - 0.02 <= r.learned_after <= r.probe.idle + 0.5, r.raw
        seen = [(e["event"], e.get("data")) for e in server_events(proc, r.client)]
        assert ("recv", f"push {r.probe.idle}") in seen and ("push", None) in seen, seen
    assert plain.raw["heartbeats"] == 0
    assert beating.raw["heartbeats"] >= 3, beating.raw


def test_probe_without_push_is_delivered(loop, echo):
    _, port = echo
    (r,) = run_probes(loop, "client", HERE, [IdleProbe(port, 0.2, app_timeout=1.0)])
    assert r.outcome == "delivered" and r.raw["phase"] == "after idle", r.raw
    assert 0.18 <= r.raw["sent_after"] <= 0.5, r.raw


def test_probe_binds_its_source_port(loop, echo):
    _, port = echo
    sport = free_port()
    (r,) = run_probes(loop, "client", HERE, [IdleProbe(port, 0.1, 1.0, sport=sport)])
    assert r.client.endswith(f":{sport}") and r.sport == sport, r.raw
    assert r.outcome == "delivered", r.raw


def test_probes_of_a_round_run_in_one_process_each_with_its_own_result(loop, echo):
    """A round is one process per app (`--batch`): each probe's result, in order; a probe
    that fails names itself and what it exited with."""
    _, port = echo
    probes = [IdleProbe(port, 0.3, 1.0, sport=free_port()), IdleProbe(port, 0.1, 1.0, push=True)]
    started = time.monotonic()
    slow, quick = run_probes(loop, "client", HERE, probes)
    assert time.monotonic() - started < 2.5  # at once, not one after the other
    assert (slow.probe, quick.probe) == tuple(probes) and slow.sport == probes[0].sport
    assert slow.outcome == quick.outcome == "delivered", (slow.raw, quick.raw)
    assert slow.learned_after > quick.learned_after, (slow.raw, quick.raw)
    with pytest.raises(LabError, match=r"probe IdleProbe\(port=1, .* printed no result: ConnectionRefused"):
        run_probes(loop, "client", HERE, [IdleProbe(port, 0.1, 1.0), IdleProbe(1, 0.1, 0.5)])


def test_probes_may_not_share_a_source_port(loop):
    with pytest.raises(ConfigError, match="share source port 20000"):
        run_probes(loop, "client", HERE, [IdleProbe(80, 1, sport=20000), IdleProbe(81, 1, sport=20000)])


def test_probe_that_hangs_aborts_its_connection(loop):
    """A server that never pushes: the probe reports hung at idle + app timeout, then resets."""
    with socket.socket() as listener:
        listener.bind((HERE, 0))
        listener.listen(1)
        listener.settimeout(5)
        port = listener.getsockname()[1]
        probe = IdleProbe(port, 0.2, app_timeout=0.5, push=True)
        proc = loop.start("client", probe.argv(HERE), "probe")
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(5)
            assert read_line(conn) == b"hello"
            conn.sendall(b"hello\n")
            assert read_line(conn) == b"push 0.2"
            with pytest.raises(ConnectionResetError):
                conn.recv(100)  # nothing comes until the probe gives up and aborts
        assert proc.popen.wait(5) == 0, proc.output()
    raw = read_records(proc.output())[-1]
    assert raw["outcome"] == "hung" and raw["phase"] == "after idle", raw
    assert 0.68 <= raw["learned_after"] <= 2.0, raw


# --- tcp_sessions -----------------------------------------------------------------------


def test_sessions_from_clients_use_disjoint_port_ranges(loop, echo):
    """Two clients on one address: only disjoint source ports let every session open."""
    _, port = echo
    first = free_block(10)
    records = run_sessions_from(
        loop,
        ["a", "b"],
        [f"{HERE}:{port}"],
        10,
        concurrency=4,
        timeout=2.0,
        first_port=first,
    )
    assert all(r["data_ok"] for r in records), records
    assert sorted(r["sport"] for r in records) == list(range(first, first + 10)), records
    # each client's load returned how close its slowest wait came to the timeout
    assert [m["load"] for m in records.margins] == ["tcp_sessions on a", "tcp_sessions on b"]
    # both clients share one address, so the slowest of all their waits is one client's
    # (rounded to the millisecond: on loopback it can round to 0)
    slowest = max(max(r["connect_time"], r["echo_time"]) for r in records)
    assert max(m["slowest wait (s)"] for m in records.margins) == round(slowest, 3), records.margins
    assert records.margin == min(records.margins, key=lambda m: m["margin (s)"])
    for m in records.margins:
        assert m["client timeout (s)"] == 2.0 and m["completed"] == 5, m
        assert 0 <= m["slowest wait (s)"] <= round(slowest, 3), m
        assert m["margin (s)"] == round(2.0 - m["slowest wait (s)"], 3), m


def test_failed_session_is_aborted(loop):
    """A service that accepts and never answers: the session times out and leaves nothing."""
    with socket.socket() as listener:
        listener.bind((HERE, 0))
        listener.listen(4)  # the kernel completes the handshake; no one reads
        sport = free_block(1)
        records = run_sessions(
            loop,
            "client",
            [f"{HERE}:{listener.getsockname()[1]}"],
            1,
            timeout=0.3,
            first_port=sport,
        )
        (r,) = records
        assert r["opened"] and not r["data_ok"] and r["error"] == "timeout", r
        assert records.margins == [] and records.margin is None  # nothing completed: no margin
        states = poll(lambda: tcp_states(sport), lambda s: not s)
        assert states == [], f"the failed session left {states}"


def test_paced_sessions_held_and_reset(loop, echo):
    """--rate paces the starts; --hold keeps each session open idle; --end reset aborts it."""
    _, port = echo
    first = free_block(4)
    load = SessionLoad(
        [f"{HERE}:{port}"], 4, concurrency=4, timeout=2.0, first_port=first, rate=10, hold=0.3, reset=True
    )
    proc = start_sessions(loop, "client", load, "paced")
    records = finish_sessions(loop, proc, load)
    assert all(r["data_ok"] and r["held"] for r in records), records
    assert records.margin is not None and records.margin["load"] == "paced", records.margins
    starts = sorted(r["wall_start"] for r in records)
    assert 0.25 <= starts[-1] - starts[0] <= 1.0, (
        f"4 sessions at 10/s started over {starts[-1] - starts[0]:.2f} s"
    )
    assert all(r["elapsed"] >= 0.3 for r in records), records
    server = echo[0]
    ends = {e["peer"] for e in server_events(server) if e["event"] == "error"}
    assert {f"{HERE}:{p}" for p in range(first, first + 4)} <= ends, "the server saw no reset of each session"


# --- bulk -------------------------------------------------------------------------------


def test_bulk_transfer_completes_from_its_source_port(loop):
    receiver = start_bulk_receiver(loop, "server", 0, "bulk-rx", interval=0.05)
    port = listening_ports(receiver)[0]
    sport = free_port()
    sender = start_bulk_sender(
        loop,
        "client",
        HERE,
        port,
        "bulk-tx",
        duration=0.3,
        sport=sport,
        rate=1_000_000,
    )
    connected = server_events(sender)[0]
    assert connected["event"] == "connected" and connected["client"].endswith(f":{sport}"), connected
    sender.wait_for_output(r'"event": "done"', 10)
    outcome = bulk_outcome(sender)
    assert outcome is not None and outcome["outcome"] == "completed", sender.output()
    assert receiver.popen.wait(5) == 0, receiver.output()
    series = bulk_series(receiver)
    close = [e for e in server_events(receiver) if e["event"] == "close"]
    assert len(series) >= 3 and all(isinstance(b, int) for _, b in series), series
    assert close and close[0]["total"] == outcome["sent"], receiver.output()
    assert sum(b for _, b in series) <= outcome["sent"]


def test_bulk_receiver_stopped_mid_transfer_breaks_and_resets_it(loop):
    receiver = start_bulk_receiver(loop, "server", 0, "bulk-rx", interval=0.05)
    port = listening_ports(receiver)[0]
    sender = start_bulk_sender(loop, "client", HERE, port, "bulk-tx", duration=10)
    poll(lambda: bulk_series(receiver), lambda s: sum(b for _, b in s) > 0)
    assert loop.stop(receiver) == 0, receiver.output()
    assert server_events(receiver)[-1]["event"] == "abort", receiver.output()
    sender.wait_for_output(r'"event": "done"', 5)
    outcome = bulk_outcome(sender)
    assert outcome is not None and outcome["outcome"] == "broken", sender.output()
    assert sender.popen.wait(5) == 0, sender.output()


def test_every_app_runs_as_a_module():
    for name in ("echo_server", "tcp_probe", "tcp_sessions", "bulk", "craft"):
        done = subprocess.run(
            [sys.executable, "-m", f"lab.apps.{name}", "--help"], cwd=ROOT, capture_output=True, timeout=30
        )
        assert done.returncode == 0, (name, done.stderr)


def test_real_ftp_clients_command_lines():
    from lab.errors import ConfigError
    from lab.traffic import ftp_tool_argv

    ports = range(15000, 15010)
    url = "ftp://10.0.3.10/file.bin"
    port = ftp_tool_argv("curl", "PORT", url, "/tmp/out", ports, 5, "10.0.1.10")
    assert (
        port[-1] == url and "--disable-eprt" in port and port[port.index("-P") + 1] == "10.0.1.10:15000-15009"
    )
    assert "-P" not in ftp_tool_argv("curl", "EPSV", url, "/tmp/out", ports, 5, "10.0.1.10")
    lftp = ftp_tool_argv("lftp", "PASV", url, "/tmp/out", ports, 5, "10.0.1.10")
    assert lftp[0] == "lftp" and lftp[-1] == "ftp://10.0.3.10"
    assert "set ftp:passive-mode on" in lftp[2] and "get file.bin -o /tmp/out" in lftp[2]
    with pytest.raises(ConfigError, match="lftp: no FTP mode 'EPSV'"):
        ftp_tool_argv("lftp", "EPSV", url, "/tmp/out", ports, 5, "10.0.1.10")


def test_timeout_margin_of_sessions_and_requests():
    """The slowest completed wait against the timeout; failures and loads without a
    completion give none; thin margins are named."""
    from lab.traffic import thin_margins, timeout_margin

    sessions = [
        {"timeout": 3.0, "data_ok": True, "connect_time": 0.01, "echo_time": 2.4},
        {"timeout": 3.0, "data_ok": True, "connect_time": 1.02, "echo_time": 0.01},
        {"timeout": 3.0, "data_ok": False, "connect_time": 0.01, "error": "timeout"},
    ]
    margin = timeout_margin("s", sessions)
    assert margin == {
        "load": "s",
        "client timeout (s)": 3.0,
        "completed": 2,
        "slowest wait (s)": 2.4,
        "margin (s)": 0.6,
    }
    requests = [{"timeout": 1.0, "ok": True, "elapsed": 0.02}, {"timeout": 1.0, "ok": False, "elapsed": 1.0}]
    assert timeout_margin("r", requests)["margin (s)"] == 0.98
    assert timeout_margin("none", sessions[2:]) is None
    assert thin_margins([margin], least=0.5) == []
    assert thin_margins([margin], least=0.75) == ["s: slowest wait 2.4 s of a 3 s timeout"]


def test_records_carry_margins_to_the_case(tmp_path):
    """A load's records return its margin; the case notes every non-empty one and hands
    back the first records; the plugin reads them from the case."""
    from lab.results import Case
    from lab.traffic import Records

    fast = Records.measured("fast", [{"timeout": 2.0, "ok": True, "elapsed": 0.5}])
    failed = Records.measured("failed", [{"timeout": 2.0, "ok": False, "elapsed": 2.0}])
    both = Records([*fast, *failed], [*fast.margins, *failed.margins, fast.margin])
    assert fast.margin == {
        "load": "fast",
        "client timeout (s)": 2.0,
        "completed": 1,
        "slowest wait (s)": 0.5,
        "margin (s)": 1.5,
    }
    assert (
        failed.margin is None
        and failed.margins == []
        and list(failed) == [{"timeout": 2.0, "ok": False, "elapsed": 2.0}]
    )
    assert len(both) == 2 and both.margins == [fast.margin, fast.margin]
    case = Case("c", tmp_path)
    assert case.note_load(fast, failed) is fast
    assert case.note_load(failed) is failed
    assert case.margins == [fast.margin]
