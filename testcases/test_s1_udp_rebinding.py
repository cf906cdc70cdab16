"""S1-UDP, NAT rebinding (SCENARIOS.md S1 "UDP", 6.1): with masquerade, the client's next
datagram after its mapping expired makes a new mapping; whether the server sees the same
address:port depends on the port the firewall picks.

client, client2 (inside) -- fw (masquerade to 10.0.2.1) -- server (outside); U = 2 s. The
client's flow is answered once, then silent: its mapping lives U; the server owes it
`pushed` later, to the address:port it saw (`lab/apps/udp_server.py` keys clients so, as
a server without QUIC's connection IDs does).

- Masquerade keeps the client's port where it is free: the server sees the same
  address:port, its owed answer arrives.
- `fully-random` (snat_random): another port; the answer owed to the old one is lost.
- The old port taken: client2 sends from the same source port once the client's mapping
  has gone, and its mapping takes the outside port; the client's next datagram gets
  another one. The server sees the client arrive from a new port, client2 under the
  client's old address:port, and sends the client's answer to client2.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from lab.conntrack import parse_table
from lab.plot.udp import datagram_timeline
from lab.traffic.udp import UdpFlow, UdpProbeResult, run_udp_probes, udp_datagrams
from lab.wait import wait_until
from testcases.common import dashed
from testcases.s1_udp_common import APP_TIMEOUT, OUTSIDE, POLICY, PORT, U, run_flows

# Every S1 module's lab; the shared `fw` fixture loads the policy (each case starts its UDP server).
LAB_TOPOLOGY, LAB_TOPOLOGY_PARAMS, FIREWALL_POLICY = "s1", {"wan_delay": "0ms"}, POLICY
# The old port taken: the client's mapping expires at U; client2 takes the port as soon as
# it has gone (its flow starts then: a second or so on a busy machine), the client speaks
# again at AGAIN and the server answers it at OWED; client2 keeps its mapping from inside
# for HOLD s, past OWED.
AGAIN, OWED, HOLD = 4.5, 5.0, 4.0


@pytest.mark.parametrize("ports", ["masquerade", "fully-random"], ids=dashed)
def test_nat_rebinding(lab, fw, case, ports):
    """NAT rebinding: a new mapping after expiry; with random ports the answer to the old one is lost"""
    policy = POLICY.with_changes(snat=True, snat_random="" if ports == "masquerade" else ports)
    # Answered once at 0 s (its entry then lives U = 2 s), the server owes `pushed` at 3.5 s;
    # at 2.5 s the client speaks again, through a new mapping.
    flow = UdpFlow(PORT, 3.5, "replied-once", APP_TIMEOUT, case.take_port(), warmup=0.0, resend_after=2.5)
    run = run_flows(lab, fw, case, ports, policy, [flow])
    (r,) = run.results
    client, ev = lab.ip("client"), f"(evidence in {run.folder})"
    log = udp_datagrams(run.server)
    peer = {e["data"]: e["peer"] for e in log if e["event"] == "recv"}
    owed = next(e["peer"] for e in log if e["event"] == "send" and e["data"] == "pushed")
    before, after = peer[f"push {flow.idle}"], peer["echo again"]
    view = {
        "before idle": before,
        "after idle": after,
        "pushed sent to": owed,
        "client keys": len({before, after}),
    }
    case.figure("the server's view of the client (its log)", view)
    old, new = (OUTSIDE, int(before.rsplit(":", 1)[1])), (OUTSIDE, int(after.rsplit(":", 1)[1]))
    assert before.startswith(f"{OUTSIDE}:") and after.startswith(f"{OUTSIDE}:") and owed == before, (
        f"{view} {ev}"
    )
    mappings = [e for e in run.events if e.event == "NEW"]
    case.figure("mappings made for the client's socket (conntrack NEW events)", len(mappings))
    assert len(mappings) == 2, f"expected the first mapping and one after expiry: {mappings} {ev}"
    assert r.raw["resend_answered_after"] is not None, f"the datagram after idle went unanswered: {r.raw}"
    seen = {
        "pushed arrived outside, to the old port": len(run.at("outside", dst=old, data="pushed")),
        "pushed left inside, to the client": len(run.at("inside", dst=(client, r.sport), data="pushed")),
        "after idle, from the new port (fw-out)": len(run.at("outside", src=new, data="echo again")),
    }
    case.figure("captures", seen)
    case.figure("outcome of the server's pushed", r.outcome)
    if ports == "masquerade":  # Linux keeps the client's own port where it is free
        assert old == new == (OUTSIDE, r.sport) and view["client keys"] == 1, f"port moved: {view} {ev}"
        assert r.outcome == "delivered", f"{r.raw} {ev}"
    else:
        assert old != new and r.sport not in (old[1], new[1]), f"fully-random kept a port: {view} {ev}"
        assert view["client keys"] == 2 and r.outcome == "lost", f"{r.raw} {ev}"
    delivered = int(r.outcome == "delivered")
    assert list(seen.values()) == [1, delivered, 1], f"{seen} {ev}"
    datagram_timeline(
        {"server side (fw-out)": run.outside, "client side (fw-in)": run.inside},
        {"server side (fw-out)": sorted({old, new}), "client side (fw-in)": [(client, r.sport)]},
        r.wall_start,
        {
            f"timeout U={U}s": r.wall_start + U,
            "client again": r.wall_start + flow.resend_after,
            "server answers": r.wall_start + flow.idle,
        },
        case.plot_path("timeline", f"NAT rebinding ({ports}): the client's ports as the server sees them"),
        f"{policy.snat_random or 'masquerade'}: the client's datagrams and the server's owed answer",
    )


def outside_ports(listing: str, sport: int) -> dict[str, tuple[str | None, int]]:
    """Inside address -> the outside address:port its mapping from `sport` got: the reply
    tuple's destination in `conntrack -L -p udp` (lab.conntrack reads its address only)."""
    found = {}
    for line in listing.splitlines():
        entry = parse_table(line)
        if entry and entry[0].sport == sport:
            found[entry[0].src] = (entry[0].reply_dst, int(re.findall(r"dport=(\d+)", line)[1]))
    return found


def test_nat_rebinding_old_port_taken(lab, fw, case):
    """NAT rebinding, old port taken: the client comes back on a new port, its answer goes to client2"""
    sport, client, client2, server = case.take_port(), lab.ip("client"), lab.ip("client2"), lab.ip("server")
    flow = UdpFlow(PORT, OWED, "replied-once", APP_TIMEOUT, sport, warmup=0.0, resend_after=AGAIN)
    # client2's flow from the same source port: keeps from inside (never answered) for HOLD s.
    other = UdpFlow(PORT, 0.0, "inside", APP_TIMEOUT, sport, "client2", HOLD)

    def mapped(src: str) -> bool:
        return any(x.proto == "udp" and (x.src, x.sport) == (src, sport) for x in fw.sessions())

    def both_mapped() -> str | None:
        text = lab.run("fw", ["conntrack", "-L", "-p", "udp"], merge=False)
        return text if set(outside_ports(text, sport)) == {client, client2} else None

    def take_the_port() -> tuple[UdpProbeResult, str]:
        """Once the client's mapping has gone, client2's flow; the table once both hold one."""
        wait_until(lambda: mapped(client), 5, "the client's mapping", interval=0.1)
        wait_until(lambda: not mapped(client), U + 2, "the client's mapping to expire", interval=0.1)
        with ThreadPoolExecutor(max_workers=1) as pool:
            held = pool.submit(run_udp_probes, lab, "client2", server, [other])
            listing = wait_until(both_mapped, AGAIN + 2, "both hosts' mappings", interval=0.1)
            return held.result()[0], listing

    run = run_flows(lab, fw, case, "old port taken", POLICY.with_changes(snat=True), [flow], take_the_port)
    (r,), (b, listing) = run.results, run.beside
    (run.folder / "conntrack-udp.txt").write_text(listing)
    case.keep(run.folder / "conntrack-udp.txt", "the table with both hosts' mappings (conntrack -L -p udp)")
    ev = f"(evidence in {run.folder})"
    # The server's log: the address:port of every datagram, as it keys its clients.
    log = udp_datagrams(run.server)
    peer = {e["data"]: e["peer"] for e in log if e["event"] == "recv"}
    owed = next(e for e in log if e["event"] == "send" and e["data"] == "pushed")
    view = {
        "client, before idle (push)": peer[f"push {OWED}"],
        "client2 (keep 0)": peer["keep 0"],
        "client, after idle (echo again)": peer["echo again"],
        "client's pushed sent to": owed["peer"],
    }
    case.figure("the server's view (its log: address:port per datagram)", view)
    old, new = (OUTSIDE, sport), (OUTSIDE, int(peer["echo again"].rsplit(":", 1)[1]))
    assert (
        view["client, before idle (push)"] == view["client2 (keep 0)"] == owed["peer"] == f"{OUTSIDE}:{sport}"
    ), f"client2 should appear under the client's old address:port: {view} {ev}"
    assert new[1] != sport, f"the client came back from its old port: {view} {ev}"
    # The table while both mappings held: client2's got the old outside port, the client's a new one.
    ports = outside_ports(listing, sport)
    case.figure("outside address:port of each host's mapping from the same source port (conntrack)", ports)
    assert ports == {client2: old, client: new}, f"{ports} {ev}"
    mappings = [(e.src, e.stamp) for e in run.events if e.event == "NEW"]
    assert [src for src, _ in mappings] == [client, client2, client], f"NEW events: {mappings} {ev}"
    # Captures: client2's first datagram through the old port before the client spoke again.
    took = run.at("outside", src=old, data="keep")[0].time
    again = run.at("outside", src=new, data="echo again")
    assert len(again) == 1 and took < again[0].time, f"client2 at {took}, the client again at {again} {ev}"
    case.figure(
        "client2 took the old port before the client spoke again by (s, fw-out)",
        round(again[0].time - took, 2),
    )
    # client2's own push, captured on fw-in: its own pushed comes after it.
    before = run.at("inside", src=(client2, sport), data="push ")[0].time
    seen = {
        "pushed arrived outside, to the old port": len(run.at("outside", dst=old, data="pushed", after=took)),
        "of which before client2's own push": len(
            [d for d in run.at("outside", dst=old, data="pushed") if d.time < before]
        ),
        "pushed left inside, to the client": len(run.at("inside", dst=(client, sport), data="pushed")),
        "pushed left inside, to client2, before its own push": len(
            [d for d in run.at("inside", dst=(client2, sport), data="pushed") if d.time < before]
        ),
        "client2 got unasked (its log)": [text for _, text in b.raw["unasked"]],
    }
    case.figure("captures and client2's log", seen)
    assert seen == {
        "pushed arrived outside, to the old port": 2,
        "of which before client2's own push": 1,
        "pushed left inside, to the client": 0,
        "pushed left inside, to client2, before its own push": 1,
        "client2 got unasked (its log)": ["pushed"],
    }, f"{seen} {ev}"
    assert abs(owed["t"] - r.wall_start - OWED) < 0.3, f"the server's pushed at {owed} {ev}"
    assert r.outcome == "lost" and r.raw["resend_answered_after"] is not None, f"{r.raw} {ev}"
    case.figure("outcome of the client's pushed", r.outcome)
    datagram_timeline(
        {"server side (fw-out)": run.outside, "fw-in, client2": run.inside, "fw-in, client": run.inside},
        {
            "server side (fw-out)": [old, new],
            "fw-in, client2": [(client2, sport)],
            "fw-in, client": [(client, sport)],
        },
        r.wall_start,
        {
            f"timeout U={U}s": r.wall_start + U,
            "client2 takes the port": took,
            "client again": again[0].time,
            "server answers the client": owed["t"],
        },
        case.plot_path("timeline", "NAT rebinding, the old port taken: the client's answer goes to client2"),
        "masquerade, old port taken by client2: both hosts' datagrams on each side of the firewall",
    )
