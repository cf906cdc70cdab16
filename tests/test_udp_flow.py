"""S1-UDP's parts without a lab: the UDP flow app against the UDP echo server on loopback
(no root), its wrapper, the capture reader of UDP datagrams, masquerade's port choice in
the policy and the ruleset.

Every node is this machine (127.0.0.1); the server listens on ports the kernel picks; the
flows are short so the file runs in seconds. Every wait is bounded.
"""

from __future__ import annotations

import random
import shutil
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import pytest

from lab.config import FirewallPolicy
from lab.errors import ConfigError
from lab.procs import Proc, Supervisor
from lab.render.nftables import render_ruleset
from lab.traffic import listening_ports
from lab.traffic.udp import (
    Datagram,
    UdpFlow,
    capture_datagrams,
    datagram_of,
    run_udp_probes,
    start_udp_server,
    udp_datagrams,
)

ROOT = Path(__file__).resolve().parent.parent
HERE = "127.0.0.1"
QUICK = {"app_timeout": 0.6, "warmup": 0.5, "interval": 0.1}


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[Supervisor]:
    """What lab.traffic.udp needs of a Lab (run, start), every node this machine."""
    lab = Supervisor(
        tmp_path, f"sltest{random.getrandbits(24):06x}", lambda node: partial(subprocess.Popen, cwd=ROOT)
    )
    yield lab
    lab.close()


@pytest.fixture
def server(loop: Supervisor) -> tuple[Proc, int]:
    proc = start_udp_server(loop, "server", [0], "udp-server")
    return proc, listening_ports(proc)[0]


def texts(proc: Proc, client: str, event: str) -> list[str]:
    return [e["data"] for e in udp_datagrams(proc, client) if e["event"] == event]


def test_each_refresh_sends_what_it_says(loop, server):
    proc, port = server
    flows = [UdpFlow(port, 0.2, refresh, **QUICK) for refresh in ("none", "inside", "replied-once", "both")]
    none, inside, once, both = run_udp_probes(loop, "client", HERE, flows)
    for r in (none, inside, once, both):
        assert r.outcome == "delivered" and 0.18 <= r.learned_after <= 0.7, r.raw
        assert (
            texts(proc, r.client, "recv")[-1] == "push 0.2" and texts(proc, r.client, "send")[-1] == "pushed"
        )
    assert texts(proc, none.client, "recv") == ["push 0.2"]
    # Inside: keeps only, none answered; replied-once: one echo answered, then keeps.
    assert texts(proc, inside.client, "send") == ["pushed"] and inside.raw["keeps_sent"] >= 4, inside.raw
    assert all(t.startswith("keep") for t in texts(proc, inside.client, "recv")[:-1])
    assert texts(proc, once.client, "recv")[0] == "echo 0" and texts(proc, once.client, "send") == [
        "echo 0",
        "pushed",
    ]
    assert once.raw["echoes_answered"] == 1 and once.raw["keeps_sent"] >= 3, once.raw
    assert both.raw["echoes_sent"] >= 4 and both.raw["keeps_sent"] == 0, both.raw
    assert len(texts(proc, both.client, "send")) == both.raw["echoes_sent"] + 1


def test_keepalives_and_the_resend_go_out_while_waiting(loop, server):
    proc, port = server
    flow = UdpFlow(port, 1.0, "replied-once", 0.6, warmup=0.0, keepalive=0.3, resend_after=0.5)
    (r,) = run_udp_probes(loop, "client", HERE, [flow])
    assert r.outcome == "delivered" and r.raw["resent"], r.raw
    assert 0.48 <= r.raw["resend_answered_after"] <= 0.9, r.raw
    keeps = [t for t in texts(proc, r.client, "recv") if t.startswith("keep")]
    assert len(keeps) == r.raw["keepalives"] == 3, (keeps, r.raw)  # at 0.3, 0.6, 0.9 s
    assert "echo again" in texts(proc, r.client, "send")


def test_what_comes_while_refreshed_from_inside_is_kept_as_unasked(loop):
    """Behind a NAT another host's answer can reach a flow kept from inside: its log says so."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer, ThreadPoolExecutor(1) as pool:
        peer.bind((HERE, 0))
        peer.settimeout(5)
        flow = UdpFlow(peer.getsockname()[1], 0.1, "inside", 0.3, warmup=1.0, interval=0.1)
        future = pool.submit(run_udp_probes, loop, "client", HERE, [flow])
        data, client = peer.recvfrom(100)  # the flow's first keep: it is refreshing now
        peer.sendto(b"pushed", client)
        (r,) = future.result(timeout=10)
    assert data == b"keep 0" and [text for _, text in r.raw["unasked"]] == ["pushed"], r.raw
    assert r.outcome == "lost", r.raw  # the peer never answers the push itself


def test_a_silent_server_loses_the_push_and_an_unanswered_echo_is_no_path(loop):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:  # bound, never answering, no ICMP
        sock.bind((HERE, 0))
        port = sock.getsockname()[1]
        lost, no_path = run_udp_probes(
            loop, "client", HERE, [UdpFlow(port, 0.3, "inside", **QUICK), UdpFlow(port, 0.3, "both", **QUICK)]
        )
    assert lost.outcome == "lost" and 0.85 <= lost.learned_after <= 1.4, lost.raw
    assert no_path.outcome == "no-path" and no_path.raw["echoes_answered"] == 0, no_path.raw


def test_flow_command_line_budget_and_problems():
    flow = UdpFlow(5300, 3, "inside", sport=10000, keepalive=1)
    argv = flow.argv("10.0.2.10")
    assert argv[:3] == [sys.executable, "-m", "lab.apps.udp_flow"]
    assert argv[3:] == [
        *("--server", "10.0.2.10", "--port", "5300", "--sport", "10000", "--idle", "3"),
        *("--refresh", "inside", "--app-timeout", "1.0", "--warmup", "2.5", "--interval", "0.5"),
        *("--keepalive", "1"),
    ]
    assert flow.budget() == 2.5 + 3 + 1.0 + 10
    bad = UdpFlow(5300, 1, "sideways", interval=0, resend_after=5, keepalive=-1)
    assert bad.problems() == [
        "UDP flow refresh 'sideways': not one of none, inside, replied-once, both",
        "UDP flow keepalive -1 s: below 0",
        "UDP flow interval 0 s: not above 0",
        "UDP flow resend after 5 s: after its wait ends (1 + 1 s)",
    ]
    with pytest.raises(ConfigError):
        run_udp_probes(None, "client", HERE, [bad])  # refused before anything runs


def ipv4_udp(src: str, dst: str, sport: int, dport: int, payload: bytes, frag: int = 0) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        28 + len(payload),
        1,
        frag,
        64,
        17,
        0,
        bytes(map(int, src.split("."))),
        bytes(map(int, dst.split("."))),
    )
    return header + struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def test_datagrams_are_read_from_a_pcap(tmp_path):
    frames = [
        (1.5, ipv4_udp("10.0.1.10", "10.0.2.10", 10000, 5300, b"push 3.0")),
        (2.25, ipv4_udp("10.0.2.10", "10.0.2.1", 5300, 27794, b"pushed")),
        (3.0, ipv4_udp("10.0.2.10", "10.0.2.1", 5300, 27794, b"tail", frag=185)),  # a fragment's tail
        (3.5, bytes(20)),  # not IPv4
    ]
    pcap = tmp_path / "c.pcap"
    with pcap.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for t, packet in frames:
            frame = bytes(12) + b"\x08\x00" + packet
            out.write(struct.pack("<IIII", int(t), round(t % 1 * 1e6), len(frame), len(frame)) + frame)
    assert capture_datagrams(pcap) == [
        Datagram(1.5, "10.0.1.10", 10000, "10.0.2.10", 5300, "push 3.0"),
        Datagram(2.25, "10.0.2.10", 5300, "10.0.2.1", 27794, "pushed"),
    ]
    assert capture_datagrams(tmp_path / "none.pcap") == []
    assert datagram_of(bytes(12) + b"\x08\x00\x45" + bytes(30)) is None  # protocol 0, not UDP


def test_masquerade_port_choice_in_policy_and_ruleset():
    policy = FirewallPolicy(snat=True, snat_random="fully-random")
    text = render_ruleset(policy, "fw-in", "fw-out")
    assert '\t\toifname "fw-out" masquerade fully-random\n' in text
    assert '\t\toifname "fw-out" masquerade\n' in render_ruleset(FirewallPolicy(snat=True), "fw-in", "fw-out")
    assert FirewallPolicy(snat_random="random").problems() == [
        "snat_random: needs snat (the mapping whose port it picks)"
    ]
    assert FirewallPolicy(snat=True, snat_random="sometimes").problems() == [
        "snat_random: 'sometimes' is not one of '', 'random', 'fully-random'"
    ]
    if shutil.which("nft") is None or shutil.which("unshare") is None:
        pytest.skip("nft -c needs nft and unshare")
    from lab.render.check import nft_check

    for flag in ("random", "fully-random"):
        nft_check(render_ruleset(FirewallPolicy(snat=True, snat_random=flag), "fw-in", "fw-out"), flag)


def test_flow_app_runs_as_a_module():
    done = subprocess.run(
        [sys.executable, "-m", "lab.apps.udp_flow", "--help"], cwd=ROOT, capture_output=True, timeout=30
    )
    assert done.returncode == 0, done.stderr


def test_udp_outcome_figure_gives_every_flow_its_point_and_marks_both_timeouts(tmp_path, monkeypatch):
    from lab.plot import plt
    from lab.plot.udp import udp_outcome_figure

    drawn: list = []
    monkeypatch.setattr("lab.plot.udp.save", lambda fig, path, rect=None: drawn.append(fig) or path)
    rows = [
        {
            "variant": f"v{v}",
            "idle": idle,
            "outcome": "lost" if idle > 2 else "delivered",
            "learned_after": idle,
        }
        for v in range(4)
        for idle in (1.0, 3.0, 4.5)
    ]
    udp_outcome_figure(rows, {"U": 2, "S": 4}, tmp_path / "o.png")
    left, right = drawn[0].axes
    assert len({tuple(p) for c in right.collections for p in c.get_offsets()}) == 12
    marked = [line.get_xdata()[0] for line in left.lines if line.get_linestyle() != "-"]  # not the row rules
    assert sorted(marked) == [2, 4]
    plt.close(drawn[0])


def test_datagram_timeline_draws_the_clients_datagrams_on_every_lane(tmp_path, monkeypatch):
    from lab.plot import plt
    from lab.plot.udp import datagram_timeline

    drawn: list = []
    monkeypatch.setattr("lab.plot.udp.save", lambda fig, path, rect=None: drawn.append(fig) or path)
    inside = [Datagram(100.0, "10.0.1.10", 10000, "10.0.2.10", 5300, "push 3.0")]
    outside = [*inside, Datagram(103.0, "10.0.2.10", 5300, "10.0.1.10", 10000, "pushed")]
    other = Datagram(101.0, "10.0.1.10", 10001, "10.0.2.10", 5300, "keep 0")  # another flow: left out
    flows = {"out": [("10.0.1.10", 10000)], "in": [("10.0.1.10", 10000)]}
    datagram_timeline(
        {"out": [*outside, other], "in": inside}, flows, 100.0, {"U": 102.0}, tmp_path / "t.png", "t"
    )
    ax = drawn[0].axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert (
        texts.count("push 3.0 (:10000)") == 2
        and "pushed (:10000)" in texts
        and "keep 0 (:10001)" not in texts
    )
    plt.close(drawn[0])
