"""S3, FTP (SCENARIOS.md): a failure within one communication, the idle control session.

    client -- [fwc: port 21 expires after 2 s idle] -- transit -- fws -- server (10 Mbit/s)
       control (21): idle while the data flows ........ its 226 arrives after expiry
       data: 5 MiB, about 4 s ......................... arrives complete

The control session (port 21) sits idle during a long data transfer; the firewall
expires it; the transfer's closing reply (226) is lost and the client hangs, although the
data session was fine. Fix: control-channel keepalive or a longer timeout for port 21 (the
FTP helper is no fix). Figure: the control/data session timeline of the failure.

Evidence: captures on both sides of the client-side firewall (where the 226 stops), its
drop counters, the client's steps and the file's checksum.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.capture import Capture, stop_captures
from lab.config import TimeoutRule
from lab.devices.ftp_server import make_file
from lab.plot import sessions_timeline
from lab.traffic import FtpDownload, run_ftp
from testcases import s3_common as s3
from testcases.s3_common import ALG, CLIENT_IP, CLIENT_SIDE, OPEN, SERVER_IP, STEP_TIMEOUT

LAB_TOPOLOGY = "s3"
LAB_TOPOLOGY_PARAMS = {"server_bw": 10}  # Mbit/s: a long transfer takes seconds
# S3's shared fixtures (testcases/s3_common.py), registered in this module
ftp_root, ftp_server = s3.ftp_root, s3.ftp_server


LONG_FILE, LONG_SIZE = "long.bin", 5 * 1024 * 1024  # 4 s over the server's 10 Mbit/s link
CONTROL_TIMEOUT = 2  # s: the client-side firewall's timeout for port 21 in this case
FIXES = {
    "no fix": ({"timeouts": (TimeoutRule(CONTROL_TIMEOUT, port=21),)}, 0.0, "hung"),
    "NOOP keepalive every 1 s": ({"timeouts": (TimeoutRule(CONTROL_TIMEOUT, port=21),)}, 1.0, "ok"),
    "longer timeout for port 21": ({"timeouts": (TimeoutRule(600, port=21),)}, 0.0, "ok"),
    "the FTP helper": ({"timeouts": (TimeoutRule(CONTROL_TIMEOUT, port=21),), "helpers": ALG}, 0.0, "hung"),
}


@pytest.fixture(scope="module")
def long_file(ftp_root) -> str:
    return make_file(Path(ftp_root[0]), LONG_FILE, LONG_SIZE)


@pytest.mark.parametrize("fix", list(FIXES), ids=s3.case_id)
def test_idle_control_session_during_a_long_transfer(lab, ftp_server, long_file, case, fix):
    """Idle control session: the data arrives, the 226 after a transfer longer than 21's timeout is lost"""
    changes, noop, expected = FIXES[fix]
    policies = {"fwc": CLIENT_SIDE.with_changes(**changes), "fws": OPEN}
    for name, policy in policies.items():
        case.keep(lab.node(name).apply_policy(policy), f"ruleset {name}")
    download = FtpDownload(
        "PASV", LONG_FILE, case.take_port(), case.take_port(), timeout=STEP_TIMEOUT, noop=noop
    )
    with (
        Capture(lab, "fwc", "fwc-in", case.path, "fwc-in") as inside,
        Capture(lab, "fwc", "fwc-out", case.path, "fwc-out") as outside,
    ):
        (result,) = run_ftp(lab, "client", SERVER_IP, [download])
        stop_captures([inside, outside])
    case.keep(inside.path, "capture fwc-in (client side)")
    case.keep(outside.path, "capture fwc-out")
    control = (CLIENT_IP, download.sport)
    finals = {
        intf: [s for s in cap.segments() if (s.dst, s.dport) == control and s.payload.startswith(b"226")]
        for intf, cap in (("fwc-out", outside), ("fwc-in", inside))
    }
    outcome = (
        "ok" if result["outcome"] == "ok" else "hung" if result.get("step") == "final reply" else "failed"
    )
    drops = lab.node("fwc").counters()
    case.figure("the client", {k: result.get(k) for k in ("outcome", "step", "error", "transfer_s", "noops")})
    case.figure("file complete (SHA-256 matches)", result.get("sha256") == long_file)
    case.figure(
        "226 arriving at fwc (fwc-out), reaching the client side (fwc-in)",
        {k: len(v) for k, v in finals.items()},
    )
    case.figure("fwc drop counters", drops)
    evidence = f"({case.path})"
    assert result.get("sha256") == long_file, f"the data should arrive complete in every variant: {result}"
    assert outcome == expected, f"{fix}: expected {expected}, got {result} {evidence}"
    assert finals["fwc-out"], f"the server's 226 never reached the firewall {evidence}"
    if expected == "hung":
        assert finals["fwc-in"] == [], f"the 226 crossed the firewall, yet the client hung {evidence}"
        assert drops["drop_invalid"] + drops["drop_new_not_syn"] >= 1, f"no drop counted: {drops}"
    else:
        assert finals["fwc-in"], f"the 226 did not reach the client {evidence}"
    t0 = result["wall_start"]
    rows = {}
    for name, cap in (("control (21), client side", inside), ("control (21), outside", outside)):
        rows[name] = [
            (s.time - t0, "from server" if s.sport == 21 else "to server")
            for s in cap.segments()
            if download.sport in (s.sport, s.dport)
        ]
    data = [s for s in inside.segments() if download.data_port in (s.sport, s.dport)]
    rows["data, client side (every 20th segment)"] = [
        (s.time - t0, "from server" if s.dport == download.data_port else "to server") for s in data[::20]
    ]
    last_control = max(
        (
            s.time
            for s in inside.segments()
            if download.sport in (s.sport, s.dport) and s.time < data[-1].time
        ),
        default=t0,
    )
    markers = {
        f"control expires (last packet + {CONTROL_TIMEOUT} s)": last_control + CONTROL_TIMEOUT - t0,
        "226 sent (fwc-out)": finals["fwc-out"][0].time - t0,
    }
    sessions_timeline(
        rows,
        markers,
        case.plot_path("timeline", f"{fix}: control and data sessions side by side"),
        f"{fix}: the control session idles while the data session transfers",
    )
