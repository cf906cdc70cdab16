"""The UDP lifetime probe and the UDP echo server, run for real on loopback (no root), and
their wrappers in lab.traffic.udp.

Every node is this machine (127.0.0.1, no lab network); the server listens on ports the
kernel picks; warm-ups are short so the file runs in seconds. Every wait is bounded.
"""

from __future__ import annotations

import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from lab.errors import ConfigError
from lab.procs import Proc, Supervisor
from lab.traffic import listening_ports
from lab.traffic.udp import UdpProbe, run_udp_probes, start_udp_server, udp_datagrams

ROOT = Path(__file__).resolve().parent.parent
HERE = "127.0.0.1"
QUICK = {"app_timeout": 1.0, "warmup": 0.5, "interval": 0.1}  # a bidirectional probe in about 2 s


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[Supervisor]:
    """What lab.traffic.udp needs of a Lab (run, start): the lab's own process supervision,
    with every node this machine, unprivileged."""
    lab = Supervisor(
        tmp_path, f"sltest{random.getrandbits(24):06x}", lambda node: partial(subprocess.Popen, cwd=ROOT)
    )
    yield lab
    lab.close()


def datagrams(proc: Proc, peer: str) -> list[tuple[str, int, str]]:
    """What the server logged of one client: (recv / send, service port, text)."""
    return [(e["event"], e["port"], e["data"]) for e in udp_datagrams(proc, peer)]


@pytest.fixture
def server(loop: Supervisor) -> tuple[Proc, list[int]]:
    """A UDP server on two ports the kernel picked: the process and its ports."""
    proc = start_udp_server(loop, "server", [0, 0], "udp-server")
    return proc, listening_ports(proc)


def silent_port() -> socket.socket:
    """A UDP socket bound on loopback that never answers (no ICMP either)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HERE, 0))
    return sock


def closed_port() -> int:
    """A UDP port nothing listens on (the kernel answers ICMP port unreachable)."""
    with silent_port() as sock:
        return int(sock.getsockname()[1])


def test_outbound_and_bidirectional_are_delivered(loop, server):
    proc, (first, second) = server
    probes = [UdpProbe(first, 0.3, "outbound", **QUICK), UdpProbe(second, 0.3, "bidirectional", **QUICK)]
    outbound, both = run_udp_probes(loop, "client", HERE, probes)
    for r in (outbound, both):
        assert r.outcome == "delivered", r.raw
        assert r.probe.idle - 0.02 <= r.learned_after <= r.probe.idle + 0.5, r.raw
        assert r.client == f"{HERE}:{r.sport}" and r.raw["mode"] == r.probe.mode, r.raw
        seen = datagrams(proc, r.client)
        assert ("recv", r.probe.port, "push 0.3") in seen and seen[-1] == ("send", r.probe.port, "pushed"), (
            seen
        )
    # Outbound: one datagram in, one out, nothing before the push is answered.
    assert [e for e, _, _ in datagrams(proc, outbound.client)] == ["recv", "send"]
    assert outbound.raw["echoes_sent"] == 0, outbound.raw
    # Bidirectional: every echo of the warm-up answered at once, then the push.
    assert both.raw["echoes_sent"] >= 4 and both.raw["echoes_answered"] == both.raw["echoes_sent"], both.raw
    echoes = [e for e in udp_datagrams(proc, both.client) if e["data"].startswith("echo")]
    assert len(echoes) == 2 * both.raw["echoes_sent"], echoes
    assert all(e["to"] == HERE for e in udp_datagrams(proc) if e["event"] == "recv")


def test_probe_binds_its_source_port(loop, server):
    _, (port, _) = server
    with silent_port() as taken:
        sport = taken.getsockname()[1]
    (r,) = run_udp_probes(
        loop, "client", HERE, [UdpProbe(port, 0.1, "outbound", app_timeout=1.0, sport=sport)]
    )
    assert r.outcome == "delivered" and r.sport == sport, r.raw


def test_closed_port_is_no_path_at_once(loop):
    """ICMP port unreachable: the server never took the request, in either mode."""
    port = closed_port()
    probes = [UdpProbe(port, 5, "outbound", **QUICK), UdpProbe(port, 5, "bidirectional", **QUICK)]
    started = time.monotonic()
    results = run_udp_probes(loop, "client", HERE, probes)
    assert time.monotonic() - started < 3, results
    for r in results:
        assert r.outcome == "no-path" and r.raw["error"] == "ECONNREFUSED", r.raw


def test_silent_port_is_lost_or_no_path_within_budget(loop):
    """Nobody answers and nothing refuses: outbound waits idle + app timeout and reports
    lost; bidirectional gets no echo back in its warm-up and reports no-path."""
    with silent_port() as sock:
        port = sock.getsockname()[1]
        probes = [UdpProbe(port, 0.5, "outbound", **QUICK), UdpProbe(port, 0.5, "bidirectional", **QUICK)]
        started = time.monotonic()
        outbound, both = run_udp_probes(loop, "client", HERE, probes)
        assert time.monotonic() - started < max(p.budget() for p in probes), (outbound, both)
        sock.settimeout(0)
        heard = []
        while True:
            try:
                heard.append(sock.recv(100))
            except BlockingIOError:
                break
    assert outbound.outcome == "lost" and 1.4 <= outbound.learned_after <= 2.5, outbound.raw
    assert both.outcome == "no-path" and both.raw["echoes_answered"] == 0, both.raw
    assert b"push 0.5" in heard and b"echo 0" in heard, heard
    assert heard.count(b"push 0.5") == 1, heard  # bidirectional never pushed


def test_wrapper_command_lines_and_budgets():
    out = UdpProbe(5000, 30, "outbound", sport=40000)
    argv = out.argv("10.0.2.10")
    assert argv[:3] == [sys.executable, "-m", "lab.apps.udp_probe"]
    assert argv[3:] == [
        *("--server", "10.0.2.10", "--port", "5000", "--sport", "40000"),
        *("--idle", "30", "--mode", "outbound", "--app-timeout", "2.0"),
    ]
    assert out.budget() == 30 + 2.0 + 10
    both = UdpProbe(5000, 30, "bidirectional", warmup=3, interval=0.25)
    assert both.argv("10.0.2.10")[-4:] == ["--warmup", "3", "--interval", "0.25"]
    assert both.budget() == 3 + 30 + 2.0 + 10


def test_bad_probes_are_refused_all_at_once(loop):
    probes = [
        UdpProbe(5000, 1, "outbound", sport=20000),
        UdpProbe(5001, 1, "bidirectional", sport=20000),
        UdpProbe(5002, 1, "both"),
    ]
    with pytest.raises(ConfigError) as info:
        run_udp_probes(loop, "client", HERE, probes)
    text = str(info.value)
    assert "share source port 20000" in text and "mode 'both'" in text, text


def test_udp_apps_run_as_modules():
    for name in ("udp_probe", "udp_server"):
        done = subprocess.run(
            [sys.executable, "-m", f"lab.apps.{name}", "--help"], cwd=ROOT, capture_output=True, timeout=30
        )
        assert done.returncode == 0, (name, done.stderr)
