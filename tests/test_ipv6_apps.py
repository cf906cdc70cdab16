"""The echo server and the idle probe over IPv6, run for real on loopback (::1, no root):
the server takes each port in both families, one socket each, and logs each peer as the
probe logs its own end."""

from __future__ import annotations

import socket

import pytest

from lab.errors import ConfigError
from lab.events import read_records
from lab.procs import Proc
from lab.traffic import IdleProbe, listening_ports, run_probes, server_events, start_echo_server
from tests.test_apps import HERE, Loopback, free_port, loop, read_line  # noqa: F401  (loop: a fixture)

HERE6 = "::1"


@pytest.fixture
def echo(loop: Loopback) -> tuple[Proc, int]:  # noqa: F811
    proc = start_echo_server(loop, "server", [0], "echo")
    return proc, listening_ports(proc)[0]


def test_echo_server_listens_on_both_families_and_logs_each_peer(echo):
    proc, port = echo
    (listening,) = [e for e in server_events(proc) if e["event"] == "listening"]
    assert listening["families"] == ["ipv4", "ipv6"], listening
    peers = {}
    for family, address in ((socket.AF_INET, HERE), (socket.AF_INET6, HERE6)):
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect((address, port))
            sock.sendall(b"hello\n")
            assert read_line(sock) == b"hello"
            local = sock.getsockname()
            peers[family] = f"{local[0]}:{local[1]}"
    # An IPv4 peer as before (not ::ffff:127.0.0.1: its own socket), an IPv6 one unbracketed.
    assert peers[socket.AF_INET].startswith("127.0.0.1:") and peers[socket.AF_INET6].startswith("::1:")
    for peer in peers.values():
        events = [e["event"] for e in server_events(proc, peer)]
        assert events[:2] == ["accept", "recv"], (peer, proc.output())


def test_probe_over_ipv6_delivers_and_binds_its_source_port(loop, echo):  # noqa: F811
    _, port = echo
    sport = free_port()
    (r,) = run_probes(loop, "client", HERE6, [IdleProbe(port, 0.2, 1.0, sport=sport)])
    assert r.outcome == "delivered" and r.raw["server"] == f"::1:{port}", r.raw
    assert r.client == f"::1:{sport}" and r.sport == sport, r.raw


def test_probe_over_ipv6_that_hangs(loop):  # noqa: F811
    """A server that never answers after idle: hung at idle + the app timeout, over IPv6 too."""
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as listener:
        listener.bind((HERE6, 0))
        listener.listen(1)
        listener.settimeout(5)
        port = listener.getsockname()[1]
        probe = IdleProbe(port, 0.1, app_timeout=0.5)
        proc = loop.start("client", probe.argv(HERE6), "probe6")
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(5)
            assert read_line(conn) == b"hello"
            conn.sendall(b"hello\n")
            assert read_line(conn) == b"after-idle"
            with pytest.raises(ConnectionResetError):
                conn.recv(100)  # nothing comes back until the probe gives up and aborts
        assert proc.popen.wait(5) == 0, proc.output()
    raw = read_records(proc.output())[-1]
    assert raw["outcome"] == "hung" and raw["phase"] == "after idle", raw
    assert raw["client"].startswith("::1:") and 0.58 <= raw["learned_after"] <= 2.0, raw


def test_a_probe_server_that_is_no_address_is_one_line():
    with pytest.raises(ConfigError, match=r"probe server 'fd00:1:2::10/64' is not an IPv4 or IPv6 address"):
        run_probes(None, "client", "fd00:1:2::10/64", [IdleProbe(8080, 1)])  # type: ignore[arg-type]
