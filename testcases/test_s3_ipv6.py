"""S3, FTP (SCENARIOS.md), over IPv6: EPRT and EPSV through both firewalls' FTP helpers,
NAT66 with the helper rewriting EPRT, and PORT and PASV, which are IPv4 only.

    client -- [fwc: may masquerade to fd00:3:2::1] -- transit -- [fws: port 21 in] -- server
  fd00:3:1::10                                                                fd00:3:3::10

The same lab as S3's other modules, its IPv6 plan (fd00:3:<net>::<host>, the topology's
PLAN6); vsftpd listens on [::] (`FtpServerConfig.ipv6`). Each firewall's ruleset is one
`table inet`, so its rules, its masquerade and its ct helper objects (`l3proto inet`)
apply to IPv6 sessions too.

- With the helper: EPRT (RFC 2428: |2|address|port|) and EPSV (229 (|||port|)) downloads
  succeed; the kernel's expectations name the IPv6 peers (`conntrack -E expect`), the data
  sessions are in `conntrack -L -f ipv6 -u EXPECTED` (they came from an expectation: the
  RELATED ones) and the control sessions carry helper=ftp.
- Without it: the data session's SYN is captured arriving at the firewall the session is
  new to (fwc for EPRT, fws for EPSV) and never leaving it; drop_denied counts it.
- NAT66: fwc masquerades the client to its outside address, and its helper rewrites the
  EPRT on the way out (the client's inside address inside, fwc's outside address outside).
- vsftpd on [::] serves IPv4 too: PORT and PASV downloads over IPv4 to the same server
  succeed; its log names the client as the mapped address ::ffff:10.0.1.10.
- PORT and PASV are IPv4 only (they carry four IPv4 octets): over IPv6 vsftpd refuses a
  PORT naming the client's IPv4 address (500 Illegal PORT command: not the control
  session's peer) and answers PASV with 227 naming 0,0,0,0; the helpers expect nothing
  for either. ftplib itself sends only EPRT and EPSV over IPv6 (its makeport and
  makepasv); the lab's client sends PORT and PASV anyway, to measure the server.

Evidence: captures on the four firewall interfaces, the helpers' expectation events, the
firewalls' session tables and drop counters, vsftpd's log, the file's checksum.
"""

from __future__ import annotations

import ftplib
from ipaddress import ip_address
from typing import Any

from lab import conntrack
from testcases import s3_common as s3
from testcases.s3_common import (
    ALG,
    CLIENT_IP,
    CLIENT_IP6,
    CLIENT_SIDE,
    NAT_IP6,
    SERVER_IP6,
    SERVER_SIDE,
    SERVER_SIDE6,
)

LAB_TOPOLOGY = "s3"
LAB_TOPOLOGY_PARAMS = {"server_bw": 10}  # S3's lab (Mbit/s on the server's link)
# S3's shared fixtures (testcases/s3_common.py), registered in this module
ftp_root, ftp_server_both = s3.ftp_root, s3.ftp_server_both

FIREWALLS = ("fwc", "fws")
HELPER = {"fwc": CLIENT_SIDE.with_changes(helpers=ALG), "fws": SERVER_SIDE6.with_changes(helpers=ALG)}
NO_HELPER = {"fwc": CLIENT_SIDE, "fws": SERVER_SIDE6}
NAT66 = {**HELPER, "fwc": HELPER["fwc"].with_changes(snat=True)}


def download6(lab, case, label, policies, modes, server, sha256, port_address=""):
    """`s3.run_downloads` to the server's IPv6 address."""
    return s3.run_downloads(
        lab, case, label, policies, modes, server, sha256, address=SERVER_IP6, port_address=port_address
    )


def table6(lab, case, firewall: str, label: str, *options: str) -> str:
    """`conntrack -L -f ipv6 [options]` in `firewall` now, kept with the case."""
    text = lab.run(firewall, ["conntrack", "-L", "-f", "ipv6", *options], merge=False)
    name = "-".join(["conntrack", firewall, *(o.strip("-").lower() for o in options)])
    path = case.path / s3.case_id(label) / f"{name}.txt"
    path.write_text(text)
    case.keep(path, f"conntrack -L -f ipv6 {' '.join(options)} on {firewall}, {label}")
    return text


def openings(made: list[str]) -> list[str]:
    """The distinct expectations among a helper's NEW events: a retransmitted announcement
    (a busy machine delays an ACK) is read again and makes the same one again."""
    return sorted(set(made))


def data_tuple(mode: str, cell: dict[str, Any]) -> tuple[str, int, str, int]:
    """The data session's original tuple (src, sport, dst, dport): the server from port 20
    to the client's port (EPRT), or the client's port to the announced one (EPSV)."""
    client_port = cell["ports"]["data_port"]
    if mode == "EPRT":
        return (SERVER_IP6, 20, CLIENT_IP6, client_port)
    return (CLIENT_IP6, client_port, SERVER_IP6, cell["data_port"])


def test_ipv6_eprt_and_epsv_through_the_ftp_helper(lab, ftp_server_both, ftp_root, case):
    """IPv6 with the FTP helper: EPRT and EPSV succeed; expectations and RELATED data sessions in the table"""
    label = "IPv6, helper on both"
    row = download6(lab, case, label, HELPER, ("EPRT", "EPSV"), ftp_server_both, ftp_root[1])
    tuples = {mode: data_tuple(mode, cell) for mode, cell in row.items()}
    expected = {mode: f"{src} -> [{dst}]:{dport}" for mode, (src, _, dst, dport) in tuples.items()}
    related, controls = {}, {}
    for name in FIREWALLS:
        # A session that came from an expectation carries the EXPECTED status bit: RELATED.
        table = conntrack.parse_table(table6(lab, case, name, label, "-u", "EXPECTED"))
        related[name] = {
            mode: [f"[{s.src}]:{s.sport} > [{s.dst}]:{s.dport} {s.state}" for s in table if s.key[1:] == key]
            for mode, key in tuples.items()
        }
        lines = table6(lab, case, name, label).splitlines()
        helped = [conntrack.parse_line(x) for x in lines if "helper=ftp" in x]
        controls[name] = {
            m: sum(s is not None and s.sport == c["ports"]["sport"] for s in helped) for m, c in row.items()
        }
    case.figure(f"outcome, {label}", {m: c["observed"] for m, c in row.items()})
    case.figure("as captured on fwc-in", {m: c["announced"].get("fwc-in") for m, c in row.items()})
    case.figure(
        "expectations the helpers created (conntrack -E expect, distinct)",
        {m: {n: openings(made) for n, made in c["expectations"].items()} for m, c in row.items()},
    )
    case.figure("RELATED data sessions (conntrack -L -f ipv6 -u EXPECTED)", related)
    case.figure("control sessions with helper=ftp (conntrack -L -f ipv6)", controls)
    evidence = f"({case.path})"
    for mode, cell in row.items():
        assert cell["observed"] == "ok", f"{mode} over IPv6 with the helper: {cell} {evidence}"
        assert cell["server_saw_client"] == [CLIENT_IP6], (
            f"{mode}: the server saw {cell['server_saw_client']}"
        )
        for name in FIREWALLS:
            made = cell["expectations"][name]
            assert openings(made) == [expected[mode]], (
                f"{mode}: {name} expected {made}, not {expected[mode]} {evidence}"
            )
            assert len(related[name][mode]) == 1, f"{mode}: {name}'s related sessions {related} {evidence}"
            assert controls[name][mode] == 1, f"{mode}: {name}'s control sessions with helper=ftp {controls}"
    eprt, epsv = (row[m]["announced"]["fwc-in"] for m in ("EPRT", "EPSV"))
    assert s3.eprt(eprt) == (2, CLIENT_IP6, tuples["EPRT"][3]), f"EPRT {eprt} {evidence}"
    assert ftplib.parse229(epsv, ("", 0))[1] == tuples["EPSV"][3], f"EPSV's answer {epsv} {evidence}"


def test_ipv6_without_the_helper_the_data_session_is_dropped(lab, ftp_server_both, ftp_root, case):
    """IPv6 without the helper: EPRT's data SYN stops at fwc, EPSV's at fws; drop_denied counts them"""
    label = "IPv6, no helper"
    row = download6(lab, case, label, NO_HELPER, ("EPRT", "EPSV"), ftp_server_both, ftp_root[1])
    drops = {name: lab.node(name).counters() for name in FIREWALLS}
    case.figure(f"outcome, {label}", {m: c["observed"] for m, c in row.items()})
    case.figure("data-session SYNs captured per interface", {m: c["data_syns"] for m, c in row.items()})
    case.figure("the dropped packet, where it arrived", {m: c["dropped"] for m, c in row.items()})
    case.figure("drop counters", drops)
    evidence = f"({case.path})"
    for mode, firewall in (("EPRT", "fwc"), ("EPSV", "fws")):
        cell = row[mode]
        ingress, egress = (f"{firewall}-out", f"{firewall}-in")
        assert cell["observed"] == f"dropped at {firewall}", f"{mode}: {cell} {evidence}"
        assert cell["client"]["step"] == "data connection", f"{mode}: the client {cell['client']}"
        syns = cell["data_syns"]
        assert syns[ingress] >= 1 and syns[egress] == 0, f"{mode}: SYNs {syns} {evidence}"
        assert drops[firewall]["drop_denied"] >= syns[ingress], (
            f"{mode}: {firewall} counted {drops[firewall]}"
        )
        assert not any(cell["expectations"].values()), f"{mode}: an expectation without a helper: {cell}"


def test_ipv6_nat66_helper_rewrites_eprt(lab, ftp_server_both, ftp_root, case):
    """NAT66: fwc masquerades the client to fwc-out's IPv6 address and its helper rewrites EPRT"""
    label = "IPv6, NAT66, helper on both"
    row = download6(lab, case, label, NAT66, ("EPRT", "EPSV"), ftp_server_both, ftp_root[1])
    ports = {m: c["ports"] for m, c in row.items()}
    announced = row["EPRT"]["announced"]
    inside, outside = (s3.eprt(announced.get(intf, "")) for intf in ("fwc-in", "fwc-out"))
    control = [
        s
        for s in conntrack.parse_table(table6(lab, case, "fwc", label))
        if s.sport in {d["sport"] for d in ports.values()} and s.dport == 21
    ]
    case.figure(f"outcome, {label}", {m: c["observed"] for m, c in row.items()})
    case.figure("EPRT as captured inside (fwc-in) and outside (fwc-out, fws-in)", announced)
    case.figure(
        "client address in the server's log",
        sorted({a for c in row.values() for a in c["server_saw_client"]}),
    )
    case.figure(
        "fwc's control sessions: reply to (conntrack -L -f ipv6)", sorted({s.reply_dst for s in control})
    )
    case.figure(
        "expectations on fwc (conntrack -E expect, distinct)",
        {m: openings(c["expectations"]["fwc"]) for m, c in row.items()},
    )
    evidence = f"({case.path})"
    for mode, cell in row.items():
        assert cell["observed"] == "ok", f"{mode} through NAT66: {cell} {evidence}"
        assert cell["server_saw_client"] == [NAT_IP6], f"{mode}: the server saw {cell['server_saw_client']}"
    assert inside == (2, CLIENT_IP6, ports["EPRT"]["data_port"]), f"EPRT inside: {announced} {evidence}"
    # The kernel's helper writes the address it substitutes in full (%pI6), not compressed.
    assert outside is not None and outside[:2] == (2, ip_address(NAT_IP6).exploded), f"{announced} {evidence}"
    assert announced["fws-in"] == announced["fwc-out"], f"what the server received: {announced} {evidence}"
    assert openings(row["EPRT"]["expectations"]["fwc"]) == [f"{SERVER_IP6} -> [{NAT_IP6}]:{outside[2]}"], (
        evidence
    )
    assert openings(row["EPSV"]["expectations"]["fwc"]) == [
        f"{CLIENT_IP6} -> [{SERVER_IP6}]:{row['EPSV']['data_port']}"
    ]
    assert [s.reply_dst for s in control] == [NAT_IP6, NAT_IP6], f"fwc's control sessions {control}"


def test_ipv6_port_and_pasv_are_ipv4_only(lab, ftp_server_both, ftp_root, case):
    """IPv6: PORT and PASV are IPv4 only: vsftpd refuses PORT and answers PASV with 0,0,0,0; no expectation"""
    label = "IPv6, PORT and PASV, helper on both"
    row = download6(lab, case, label, HELPER, ("PORT", "PASV"), ftp_server_both, ftp_root[1], CLIENT_IP)
    pasv = [r for r in row["PASV"]["server_replies"] if r.startswith("227")]
    case.figure("the client", {m: c["client"] for m, c in row.items()})
    case.figure("the server's answers (vsftpd's log)", {m: c["server_replies"][-1:] for m, c in row.items()})
    case.figure("as captured on fwc-in", {m: c["announced"].get("fwc-in") for m, c in row.items()})
    case.figure("expectations the helpers created", {m: c["expectations"] for m, c in row.items()})
    evidence = f"({case.path})"
    assert row["PORT"]["announced"]["fwc-in"].startswith(f"PORT {CLIENT_IP.replace('.', ',')},"), evidence
    assert row["PORT"]["server_replies"][-1] == "500 Illegal PORT command.", f"{row['PORT']} {evidence}"
    assert len(pasv) == 1 and ftplib.parse227(pasv[0])[0] == "0.0.0.0", f"{row['PASV']} {evidence}"
    assert row["PASV"]["announced"]["fwc-in"] == pasv[0], f"the 227 captured: {row['PASV']['announced']}"
    for mode, cell in row.items():
        assert cell["client"]["step"] == "data command", f"{mode}: the client {cell['client']}"
        assert not any(cell["expectations"].values()), f"{mode}: the helper expected {cell['expectations']}"


def test_vsftpd_on_ipv6_serves_ipv4_too(lab, ftp_server_both, ftp_root, case):
    """vsftpd on [::] takes IPv4 too: PORT and PASV over IPv4 succeed; its log names ::ffff:10.0.1.10"""
    label = "IPv4 to vsftpd on [::], helper on both"
    policies = {"fwc": HELPER["fwc"], "fws": SERVER_SIDE.with_changes(helpers=ALG)}
    row = s3.run_downloads(lab, case, label, policies, ("PORT", "PASV"), ftp_server_both, ftp_root[1])
    mapped = f'Client "::ffff:{CLIENT_IP}"'
    logged = ftp_server_both.log_path.read_text().count(mapped)
    case.figure(f"outcome, {label}", {m: c["observed"] for m, c in row.items()})
    case.figure(f"vsftpd log lines naming {mapped}", logged)
    for mode, cell in row.items():
        assert cell["observed"] == "ok", f"{mode} over IPv4 to [::]: {cell} ({case.path})"
        assert cell["server_saw_client"] == [CLIENT_IP], f"{mode}: the server saw {cell['server_saw_client']}"
    assert logged >= 2, f"vsftpd's log names no {mapped} ({ftp_server_both.log_path})"
