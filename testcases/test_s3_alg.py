"""S3, FTP (SCENARIOS.md): what the ALG opens, and a server-side firewall's passive range.

    client -- fwc -- transit -- [fws: passive range open, or the ALG] -- server (vsftpd)
                        |
                      other: tries the port announced to the client

The client connects to the port the server announced (passive: PASV, EPSV): a new
inbound session for the server-side firewall. It lets it in when it opens the server's
configured passive port range, or when its ALG (the kernel's conntrack helper) read the
announcement on the control port it watches (a server on 2121 needs a helper on 2121).
What the ALG opens is the announced port, for the announced peer, until it is used.

Evidence: captures on the firewalls' interfaces, the helpers' expectations (`conntrack -E
expect` and `conntrack -L expect`), the server's log and the transferred file's checksum.
"""

from __future__ import annotations

import json

import pytest

from lab import conntrack
from lab.capture import Capture, ExpectationEvents, stop_captures
from lab.config import FirewallPolicy, FtpServerConfig, Helper, Service
from lab.devices.ftp_server import FtpServer
from lab.traffic import FtpDownload, finish_ftp, run_sessions, start_ftp
from testcases import s3_common as s3
from testcases.s3_common import (
    ALG,
    CLIENT_IP,
    CLIENT_SIDE,
    DATA_TIMEOUT,
    FILE,
    OPEN,
    SERVER_IP,
    SERVER_SIDE,
    STEP_TIMEOUT,
)

LAB_TOPOLOGY = "s3"
LAB_TOPOLOGY_PARAMS = {"server_bw": 10}  # Mbit/s: a long transfer takes seconds
# S3's shared fixtures (testcases/s3_common.py), registered in this module
ftp_root, ftp_server = s3.ftp_root, s3.ftp_server


NON_STANDARD = 2121


@pytest.mark.parametrize("helper_port", [21, NON_STANDARD])
def test_alg_on_a_non_standard_port(lab, ftp_root, case, helper_port):
    """ALG on a non-standard port: the server on 2121; a helper on 21 does not help, one on 2121 does"""
    config = FtpServerConfig(root=ftp_root[0], port=NON_STANDARD, data_timeout=DATA_TIMEOUT)
    server = FtpServer(lab, "server", config, f"vsftpd-{NON_STANDARD}").start()
    helpers = (Helper(helper_port),)
    policies = {
        "fwc": CLIENT_SIDE.with_changes(helpers=helpers),
        "fws": FirewallPolicy(allow_inbound=(Service(NON_STANDARD, address=SERVER_IP),), helpers=helpers),
    }
    label = f"server on {NON_STANDARD}, helper on {helper_port}"
    row = s3.run_downloads(lab, case, label, policies, ("PORT", "PASV"), server, ftp_root[1])
    predicted = (
        {"PORT": "ok", "PASV": "ok"}
        if helper_port == NON_STANDARD
        else {"PORT": "dropped at fwc", "PASV": "dropped at fws"}
    )
    observed = {mode: cell["observed"] for mode, cell in row.items()}
    case.figure(f"outcome, {label}", observed)
    case.figure("expectations the ALGs created", {m: c["expectations"] for m, c in row.items()})
    assert observed == predicted, f"{label}: predicted {predicted}, observed {row} ({case.path})"
    for mode, cell in row.items():
        made = any(cell["expectations"].values())
        assert made == (helper_port == NON_STANDARD), f"{mode}: expectations {cell['expectations']}"


HOLD = 2.0  # s the client waits between the announcement and its data connection


def expectations_now(lab, firewall: str) -> list[conntrack.Expectation]:
    return conntrack.parse_expectations(lab.run(firewall, ["conntrack", "-L", "expect"], merge=False))


def test_alg_opens_only_what_was_announced(lab, ftp_server, ftp_root, case):
    """What the ALG opens, and nothing more: no other host may use the announced port; it goes with its use"""
    policies = {"fwc": CLIENT_SIDE.with_changes(helpers=ALG), "fws": SERVER_SIDE.with_changes(helpers=ALG)}
    for name, policy in policies.items():
        case.keep(lab.node(name).apply_policy(policy), f"ruleset {name}")
    download = FtpDownload("PASV", FILE, case.take_port(), case.take_port(), timeout=STEP_TIMEOUT, hold=HOLD)
    with (
        Capture(lab, "fws", "fws-out", case.path, "fws-out") as outside,
        Capture(lab, "fws", "fws-in", case.path, "fws-in") as inside,
        ExpectationEvents(lab, "fws", "expect-fws") as events,
    ):
        proc = start_ftp(lab, "client", SERVER_IP, download, "ftp-held")
        announced = json.loads(proc.wait_for_output(r'\{"event": "announced".*\}', 10)[0])
        port = announced["port"]
        during = [e for e in expectations_now(lab, "fws") if e.dport == port]
        intruder = case.note_load(
            run_sessions(lab, "other", [f"{SERVER_IP}:{port}"], 1, timeout=1.0, first_port=case.take_port())
        )
        result = finish_ftp(lab, proc, HOLD + 4 * STEP_TIMEOUT)
        after = [e for e in expectations_now(lab, "fws") if e.dport == port]
        again = case.note_load(
            run_sessions(lab, "client", [f"{SERVER_IP}:{port}"], 1, timeout=1.0, first_port=case.take_port())
        )
        stop_captures([outside, inside])
    case.keep(events.path, "expectation events on fws")
    case.keep(outside.path, "capture fws-out")
    case.keep(inside.path, "capture fws-in")
    syns = {
        who: {
            intf: len(
                [
                    s
                    for s in cap.segments()
                    if s.flags == "S" and s.sport == record["sport"] and s.dport == port
                ]
            )
            for intf, cap in (("fws-out", outside), ("fws-in", inside))
        }
        for who, record in (("other host", intruder[0]), ("client, after the transfer", again[0]))
    }
    opening = [f"{e.src} -> {e.dst}:{e.dport}, {e.timeout} s left" for e in during]
    case.figure("expectation on fws while the client held (conntrack -L expect)", opening)
    case.figure("announced passive port", port)
    case.figure("the held download", {k: result.get(k) for k in ("outcome", "step", "error")})
    case.figure("SYNs to the announced port, arriving (fws-out) and let through (fws-in)", syns)
    case.figure("expectations for the port after the transfer", len(after))
    evidence = f"({case.path})"
    assert [(e.src, e.dst) for e in during] == [(CLIENT_IP, SERVER_IP)], f"expectations {opening} {evidence}"
    assert result["outcome"] == "ok" and result["sha256"] == ftp_root[1], f"the held download: {result}"
    assert not intruder[0]["opened"], f"the other host connected to the announced port: {intruder}"
    assert syns["other host"]["fws-out"] >= 1 and syns["other host"]["fws-in"] == 0, (
        f"the other host's SYN should stop at fws: {syns} {evidence}"
    )
    assert after == [], f"the expectation outlived its use: {after}"
    destroyed = [e for e in events.events() if e.event == "DESTROY" and e.dport == port]
    assert destroyed, f"no DESTROY event for the expectation of port {port} ({events.path})"
    assert not again[0]["opened"] and syns["client, after the transfer"]["fws-in"] == 0, (
        f"after the transfer the port should be closed again at fws: {again}, {syns} {evidence}"
    )


@pytest.mark.parametrize("server_range", ["inside the opened range", "outside it"], ids=s3.case_id)
def test_passive_range_opened_on_the_server_side_firewall(lab, ftp_root, case, server_range):
    """Passive range: fws opens 30000-30009, no ALG; a server announcing from it works, from outside not"""
    low = 30000 if server_range == "inside the opened range" else 31000
    config = FtpServerConfig(root=ftp_root[0], pasv_min=low, pasv_max=low + 9, data_timeout=DATA_TIMEOUT)
    server = FtpServer(lab, "server", config, f"vsftpd-{low}").start()
    policies = {
        "fwc": OPEN,
        "fws": FirewallPolicy(
            allow_inbound=(Service(21, address=SERVER_IP), Service(30000, address=SERVER_IP, port_end=30009))
        ),
    }
    label = f"server range {low}-{low + 9}, fws opens 30000-30009"
    row = s3.run_downloads(lab, case, label, policies, ("PASV", "EPSV"), server, ftp_root[1])
    expected = "ok" if low == 30000 else "dropped at fws"
    observed = {mode: cell["observed"] for mode, cell in row.items()}
    refused = {mode: cell["data_port"] for mode, cell in row.items() if cell["observed"] != "ok"}
    case.figure(f"outcome, {label}", observed)
    case.figure("refused data ports (announced, SYN stopped at fws)", refused)
    assert set(observed.values()) == {expected}, f"{label}: expected {expected}, observed {row}"
    for mode, port in refused.items():
        assert port is not None and low <= port <= low + 9, (
            f"{mode}: refused port {port} not in the server's range"
        )
