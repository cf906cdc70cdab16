"""S5 (issue 25): ICMP and the path MTU, both families.

   srv (inside) -- fw -- s2 -- rt ==(MTU 1280)== cpe -- far (its site, MTU 1500)

far downloads from srv's published port 80 with curl (a 600-byte file, then 200 KiB).
Both ends sit on 1500-byte Ethernet, so each offers an MSS of 1460 (IPv6: 1440) and srv
sends full-size segments with DF (IPv6 never fragments on the way); rt cannot forward
them onto its 1280-byte link and answers with ICMP "fragmentation needed" / ICMPv6
"packet too big", which must cross fw to reach srv. A firewall that drops those errors
(`icmp_errors = "drop"`) makes a black hole: the small exchange works, the large one
hangs until curl's timeout while srv retransmits the same full-size segment. The fixes:
let the errors through as conntrack's RELATED (`icmp_errors = "related"`, the default:
srv learns the path MTU and sends smaller segments), or clamp the MSS of every SYN at the
firewall (`clamp_mss`: nft's `tcp option maxseg size set rt mtu`), so segments fit from
the start and no error is ever needed, dropped or not.

`rt mtu` is the smallest MTU of fw's routes towards the packet's destination and back to
its source. fw's own links are 1500 bytes, so it knows nothing of the narrow link unless
told: the clamp's case gives fw's route to the far site `mtu 1280`, as a router in front
of a tunnel or PPPoE link knows it. (Told so, fw would also answer a too-big packet
itself, with an error of its own that no forward rule sees: the case shows none was
sent.) Evidence: captures on both sides of fw (fw-out: what rt sent; fw-in: what reached
srv's side) and at far, fw's counters, srv's route cache, curl's own report.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab import topology
from lab.capture import Capture, stop_captures
from lab.config import FirewallPolicy
from lab.path_mtu import Segment, TooBig, mss_for, read_path_mtu
from lab.plot.path_mtu import transfer_figure
from lab.results import Case
from lab.traffic import Records, curl
from testcases.s5_common import INTENT, PUBLISHED

LAB_TOPOLOGY, FIREWALL_POLICY = "s5", INTENT
PLANS = {"ipv4": topology.plan("s5"), "ipv6": topology.plan("s5", family=6)}
FAMILY = {"ipv4": 4, "ipv6": 6}
WAN_MTU = topology.load("s5").nodeInfo("rt")["mtus"]["rt-wan"]  # the rt-cpe link's (1280)
LAN_MTU = 1500  # every other link's (Linux's Ethernet default)
SMALL, BIG = 600, 200 * 1024  # bytes of the two files far downloads
# s: curl's --max-time, the hang's bound. srv's retransmissions of a lost segment come
# about 0.2, 0.6 and 1.4 s after it (doubling from TCP's 200 ms minimum), the next at
# 3 s: ending between the two, no segment (nor the error it draws) is in flight then.
TIMEOUT = 2.5
BLACK_HOLE = INTENT.with_changes(icmp_errors="drop")
RELATED = INTENT.with_changes(icmp_errors="related")
CLAMP = INTENT.with_changes(icmp_errors="drop", clamp_mss=True)
FILTER = "tcp or icmp or icmp6"  # the captures': data, and the errors about it


@dataclass
class Point:
    """One capture point's evidence of the download."""

    segments: list[Segment]
    errors: list[TooBig]


@dataclass
class Transfer:
    """What one download of each file showed: curl's reports, the captures by point
    (`fw-in`, `fw-out`, `far`), fw's counters, srv's cached path MTU towards far after."""

    family: str
    small: dict[str, Any]
    big: dict[str, Any]
    points: dict[str, Point]
    counters: dict[str, int]
    served: list[str]  # the requests srv's server answered with 200, by its own log
    cached_mtu: int | None
    folder: Path
    big_port: int

    @property
    def srv(self) -> str:
        return PLANS[self.family].address("srv")

    def sent(self, point: str = "fw-in") -> list[Segment]:
        """srv's data segments of the big download at a point."""
        return [
            s for s in self.points[point].segments
            if s.flow.src == self.srv and s.flow.dport == self.big_port and s.payload_len
        ]  # fmt: skip

    def errors(self, point: str) -> list[TooBig]:
        return self.points[point].errors

    def syn(self, point: str, flags: str) -> Segment:
        """The big download's SYN ("S", far's) or SYN-ACK ("SA", srv's) at a point."""
        port = self.big_port
        found = [
            s
            for s in self.points[point].segments
            if s.flags == flags and port in (s.flow.sport, s.flow.dport)
        ]
        assert found, f"no {flags} of port {port} in the capture at {point} ({self.folder})"
        return found[0]


@pytest.fixture
def web(lab, case: Case) -> Iterator[Any]:
    """srv's web server for the case (Python's http.server, both families on port 80), the
    two files in the case's folder; srv's cached path MTUs flushed before and after (a
    cached 1280 from an earlier case would hide the black hole)."""
    files = case.path / "www"
    files.mkdir(parents=True, exist_ok=True)
    (files / "small").write_bytes(b"s" * SMALL)
    (files / "big").write_bytes(b"b" * BIG)
    forget_path_mtus(lab)
    argv = [sys.executable, "-u", "-m", "http.server", "-b", "::", "-d", str(files), str(PUBLISHED)]
    server = lab.start("srv", argv, "httpd-srv", ready="Serving HTTP")
    yield server
    forget_path_mtus(lab)


def forget_path_mtus(lab) -> None:
    for family in ("-4", "-6"):
        lab.run("srv", ["ip", family, "route", "flush", "cache"])


def cached_mtu(lab, family: str) -> int | None:
    """The path MTU srv holds for far now (learnt from an ICMP error), None if none."""
    out = lab.run("srv", ["ip", f"-{FAMILY[family]}", "route", "get", PLANS[family].address("far")])
    found = re.search(r"\bmtu (\d+)", out)
    return int(found.group(1)) if found else None


def set_far_route_mtu(lab, family: str, mtu: int | None) -> None:
    """fw's route to the far site (via rt), with an MTU or (None) without one."""
    plan = PLANS[family]
    route = [plan.networks["far"], "via", plan.address("rt-out")] + (["mtu", str(mtu)] if mtu else [])
    lab.run("fw", ["ip", f"-{FAMILY[family]}", "route", "replace", *route])


def download(
    lab, fw, web, case: Case, family: str, policy: FirewallPolicy, route_mtu: int | None = None
) -> Transfer:
    """far downloads the small file, then the big one, through fw with `policy`; captured."""
    case.keep(fw.apply_policy(policy), f"ruleset, {family}")
    assert cached_mtu(lab, family) is None, f"srv still holds a path MTU towards far ({family})"
    folder = case.path / family
    host = PLANS[family].address("srv")
    url = f"http://{host if family == 'ipv4' else f'[{host}]'}:{PUBLISHED}"
    ports = case.take_ports(2)
    if route_mtu:
        set_far_route_mtu(lab, family, route_mtu)
    try:
        with (
            Capture(lab, "fw", "fw-in", folder, "inside-fw-in", bpf=FILTER) as inside,
            Capture(lab, "fw", "fw-out", folder, "outside-fw-out", bpf=FILTER) as outside,
            Capture(lab, "far", "far-eth0", folder, "far", bpf=FILTER) as far,
        ):
            small = curl(lab, "far", f"{url}/small", range(ports.start, ports.start + 1), timeout=TIMEOUT)
            big = curl(lab, "far", f"{url}/big", range(ports.start + 1, ports.start + 2), timeout=TIMEOUT)
            # Read while nothing is in flight (see TIMEOUT): the captures hold what they count.
            counters = fw.counters()
            stop_captures([inside, outside, far])
    finally:
        if route_mtu:
            set_far_route_mtu(lab, family, None)
    points = {}
    for name, capture in (("fw-in", inside), ("fw-out", outside), ("far", far)):
        case.keep(capture.path, f"capture at {name}, {family}")
        points[name] = Point(*read_path_mtu(capture.path))
    completed = [{"timeout": TIMEOUT, "ok": True, "elapsed": r["time_total"]} for r in (small, big) if ok(r)]
    case.note_load(Records.measured(f"far's downloads ({family})", completed))
    served = re.findall(r'"GET /(\w+) HTTP/1.1" 200 ', web.output())
    mtu = cached_mtu(lab, family)
    result = Transfer(family, small, big, points, counters, served, mtu, folder, ports.start + 1)
    draw(case, result)
    return result


def ok(report: dict[str, Any]) -> bool:
    return report["exitcode"] == 0 and report["http_code"] == 200


def said(report: dict[str, Any]) -> str:
    """curl's report in a few words."""
    if ok(report):
        return f"{report['size_download']} B in {report['time_total']:.3f} s"
    return f"exit {report['exitcode']} after {report['time_total']:.1f} s, {report['size_download']} B"


def draw(case: Case, t: Transfer) -> None:
    """Bytes of the big download over time, sent and delivered; srv's segment sizes and
    the too-big errors (time 0: far's SYN)."""
    start = t.syn("fw-out", "S").time
    delivered = {}
    for point, label in (("fw-in", "sent by srv (fw-in)"), ("far", "reached far")):
        seen: dict[int, int] = {}
        curve = [(0.0, 0)]
        for s in t.sent(point):
            seen.setdefault(s.seq, s.payload_len)
            curve.append((s.time - start, sum(seen.values())))
        delivered[label] = curve
    errors = {
        f"too-big errors at {p}: {len(t.errors(p))}": [e.time - start for e in t.errors(p)]
        for p in ("fw-out", "fw-in")
    }
    sizes = [(s.time - start, s.size) for s in t.sent()]
    path = case.plot_path(f"transfer-{t.family}", f"the 200 KiB download over {t.family}, from the captures")
    end = (t.big["time_total"], f"curl's end ({said(t.big)})")  # from curl's start: about the SYN's
    transfer_figure(delivered, sizes, errors, WAN_MTU, path, case.title, end)


def common_figures(case: Case, t: Transfer) -> None:
    rt = PLANS[t.family].address("rt-out")
    case.figure(
        f"far's downloads, curl ({t.family})", {"small (600 B)": said(t.small), "big (200 KiB)": said(t.big)}
    )
    case.figure(
        f"too-big errors ({t.family})",
        {
            "sent by rt (seen at fw-out)": sum(e.src == rt for e in t.errors("fw-out")),
            "passed to srv's side (fw-in)": len(t.errors("fw-in")),
            "dropped (fw's drop_icmp_error)": t.counters.get("drop_icmp_error", "no such counter"),
        },
    )
    case.figure(f"largest packet srv sent, IP bytes ({t.family})", max((s.size for s in t.sent()), default=0))
    assert t.served == ["small", "big"], f"srv's server answered {t.served} (its log)"
    # The errors are about the big download alone, and each names the narrow link's MTU.
    for point in ("fw-out", "fw-in"):
        for e in t.errors(point):
            assert (e.src, e.mtu) == (rt, WAN_MTU) and e.quoted is not None, f"{point}: {e} ({t.folder})"
            assert e.quoted.dport == t.big_port, f"{point}: an error about another flow: {e} ({t.folder})"


@pytest.mark.parametrize("family", FAMILY)
def test_black_hole_when_fw_drops_too_big_errors(lab, fw, web, case, family):
    """PMTUD black hole: fw drops ICMP too-big errors; the small exchange works, the big one hangs"""
    t = download(lab, fw, web, case, family, BLACK_HOLE)
    common_figures(case, t)
    assert ok(t.small) and t.small["size_download"] == SMALL, f"the small download failed: {t.small}"
    assert t.big["exitcode"] == 28 and t.big["size_download"] < BIG, f"the big download did not hang: {t.big}"
    sent, generated = t.sent(), t.errors("fw-out")
    big = [s for s in sent if s.size > WAN_MTU]
    assert big and max(s.size for s in big) == LAN_MTU, f"srv's segments: {sorted({s.size for s in sent})}"
    # srv kept sending the first full-size segment again: it never learnt the path MTU.
    first = min(big, key=lambda s: s.time).seq
    resent = sum(s.seq == first for s in big)
    assert resent >= 3, f"the first full-size segment left srv {resent} times ({t.folder})"
    assert generated and not t.errors("fw-in"), (
        f"rt sent {len(generated)} too-big errors, {len(t.errors('fw-in'))} crossed fw ({t.folder})"
    )
    assert t.counters["drop_icmp_error"] == len(generated), (
        f"fw's counters {t.counters}, rt sent {len(generated)}"
    )
    reached = t.sent("far")
    got = sum({s.seq: s.payload_len for s in reached}.values())
    assert all(s.size <= WAN_MTU for s in reached) and got < BIG, f"far got {got} B of data ({t.folder})"
    assert t.cached_mtu is None, f"srv learnt a path MTU ({t.cached_mtu}) though no error reached it"
    case.figure(f"the first full-size segment, times srv sent it ({family})", resent)
    case.figure(f"bytes of TCP data of the big download that reached far ({family})", got)


@pytest.mark.parametrize("family", FAMILY)
def test_fix_related_lets_too_big_errors_through(lab, fw, web, case, family):
    """Fix: fw lets ICMP errors through as RELATED; srv learns the path MTU and the transfer completes"""
    t = download(lab, fw, web, case, family, RELATED)
    common_figures(case, t)
    assert ok(t.small) and ok(t.big) and t.big["size_download"] == BIG, f"curl: {t.small}, {t.big}"
    generated, passed = t.errors("fw-out"), t.errors("fw-in")
    assert generated and len(passed) == len(generated), (
        f"rt sent {len(generated)} too-big errors, {len(passed)} reached srv's side ({t.folder})"
    )
    assert "drop_icmp_error" not in t.counters, f"a related policy counts ICMP drops: {t.counters}"
    # Full-size segments until the errors came back, none after the last.
    before = [s for s in t.sent() if s.time < min(e.time for e in passed)]
    after = [s for s in t.sent() if s.time > max(e.time for e in passed)]
    assert any(s.size == LAN_MTU for s in before), f"no full-size segment before the errors ({t.folder})"
    assert after and max(s.size for s in after) <= WAN_MTU, (
        f"after the errors srv sent up to {max((s.size for s in after), default=0)} bytes ({t.folder})"
    )
    assert t.cached_mtu == WAN_MTU, f"srv's path MTU towards far: {t.cached_mtu}"
    case.figure(f"srv's segments, largest IP size before the first error / after the last ({family})",
                f"{max(s.size for s in before)} / {max(s.size for s in after)}")  # fmt: skip
    case.figure(f"srv's path MTU towards far, learnt ({family})", t.cached_mtu)


@pytest.mark.parametrize("family", FAMILY)
def test_fix_mss_clamp_fits_segments_from_the_start(lab, fw, web, case, family):
    """Fix: fw clamps the SYNs' MSS to its route's MTU; segments fit from the start, no error needed"""
    t = download(lab, fw, web, case, family, CLAMP, route_mtu=WAN_MTU)
    common_figures(case, t)
    assert ok(t.small) and ok(t.big) and t.big["size_download"] == BIG, f"curl: {t.small}, {t.big}"
    version = FAMILY[family]
    offered, clamped = mss_for(LAN_MTU, version), mss_for(WAN_MTU, version)
    mss = {
        "far's SYN at fw-out (before)": t.syn("fw-out", "S").mss,
        "far's SYN at fw-in (after)": t.syn("fw-in", "S").mss,
        "srv's SYN-ACK at fw-in (before)": t.syn("fw-in", "SA").mss,
        "srv's SYN-ACK at fw-out (after)": t.syn("fw-out", "SA").mss,
    }
    case.figure(f"MSS option, before and after fw ({family})", mss)
    assert list(mss.values()) == [offered, clamped, offered, clamped], f"MSS: {mss} ({t.folder})"
    sizes = {s.size for s in t.sent()}
    assert sizes and max(sizes) <= WAN_MTU, f"srv's segments: {sorted(sizes)} ({t.folder})"
    errors = {p: len(t.errors(p)) for p in ("fw-out", "fw-in")}
    assert errors == {"fw-out": 0, "fw-in": 0}, f"too-big errors seen: {errors} ({t.folder})"
    assert t.counters["drop_icmp_error"] == 0, f"fw's counters: {t.counters}"
    assert t.cached_mtu is None, f"srv learnt a path MTU ({t.cached_mtu}): an error reached it"
