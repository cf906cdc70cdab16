"""S3, FTP (SCENARIOS.md): one communication over two sessions, through firewalls, ALGs and NAT.

client - fwc (client side, may source-NAT) - transit - fws (server side) - server (vsftpd).
A download's control session goes to port 21; its data session is a second TCP session:
the server connects back to the port the client announced (active: PORT, EPRT), or the
client connects to the port the server announced (passive: PASV, EPSV). A stateful
firewall sees that second session as new unless an ALG (the kernel's conntrack helper)
read the announcement in the control session and expects it.

Every cell's outcome comes from evidence: captures on all four firewall interfaces (where
the data session's SYNs stop), the server's log (what it received and answered), the
helpers' expectations (`conntrack -E expect`), and the transferred file's checksum.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab import conntrack
from lab.capture import Capture, ExpectationEvents
from lab.config import FirewallPolicy, FtpServerConfig, Helper, Service, TimeoutRule
from lab.devices.ftp_server import FtpLogLine, FtpServer, make_file
from lab.packets import TcpSegment
from lab.plot import ftp_matrix_figure, sessions_timeline
from lab.results import Case
from lab.traffic import FTP_TOOLS, FtpDownload, finish_ftp, run_ftp, run_ftp_tool, run_sessions, start_ftp

LAB_TOPOLOGY = "s3"
LAB_TOPOLOGY_PARAMS = {"server_bw": 10}  # Mbit/s: a long transfer takes seconds
MODES = ("PORT", "EPRT", "PASV", "EPSV")
ACTIVE = ("PORT", "EPRT")
POSITIONS = ("client side", "server side", "both")
FILE, FILE_SIZE = "file.bin", 256 * 1024
DATA_TIMEOUT = 3  # vsftpd's wait for a data connection (s)
STEP_TIMEOUT = 5.0  # the client's wait at each step (s): longer, so it hears the server's 425
SERVER_IP, NAT_IP, CLIENT_IP = "10.0.3.10", "10.0.2.1", "10.0.1.10"
# A firewall outside the cell's position: still stateful, but lets every new session in.
OPEN = FirewallPolicy(allow_inbound=(Service(1, port_end=65535),))
CLIENT_SIDE = FirewallPolicy()  # inside to outside only
SERVER_SIDE = FirewallPolicy(allow_inbound=(Service(21, address=SERVER_IP),))  # the control port only
ALG = (Helper(21),)
CAPTURES = ("fwc-in", "fwc-out", "fws-out", "fws-in")  # in path order, client to server


def dashed(value: str) -> str:
    """A case id without spaces, so that `-k` and node ids select it as typed."""
    return value.replace(" ", "-").replace(",", "")


@dataclass(frozen=True)
class Setup:
    """One row of the matrix: which firewalls filter, whether they run the FTP ALG, and
    whether the client-side firewall source-NATs the client."""

    position: str
    alg: bool
    nat: bool

    @property
    def name(self) -> str:
        return f"{self.position}, ALG {'on' if self.alg else 'off'}, NAT {'on' if self.nat else 'off'}"

    def policies(self) -> dict[str, FirewallPolicy]:
        fwc = CLIENT_SIDE if self.position in ("client side", "both") else OPEN
        fws = SERVER_SIDE if self.position in ("server side", "both") else OPEN
        helpers = ALG if self.alg else ()
        return {
            "fwc": fwc.with_changes(helpers=helpers, snat=self.nat),
            "fws": fws.with_changes(helpers=helpers),
        }

    def predict(self, mode: str) -> str:
        """What the protocol predicts for a download in `mode` through this setup."""
        if mode in ACTIVE:
            if self.nat and not self.alg:
                return "refused: private address"  # the server refuses a PORT not naming its peer
            if self.position in ("client side", "both") and not self.alg:
                return "dropped at fwc"  # the server's connection back is a new inbound session
            return "ok"
        if self.position in ("server side", "both") and not self.alg:
            return "dropped at fws"  # the client's connection to the passive port is new inbound
        return "ok"


SETUPS = {
    s.name: s
    for s in (Setup(p, alg, nat) for p in POSITIONS for alg in (False, True) for nat in (False, True))
}


@pytest.fixture(scope="module")
def ftp_root(lab) -> tuple[str, str]:
    """The server's directory (the lab's runtime directory) and the file's SHA-256."""
    root = lab.runtime_dir() / "ftp"
    root.mkdir(mode=0o755, exist_ok=True)
    return str(root), make_file(root, FILE, FILE_SIZE)


@pytest.fixture
def ftp_server(lab, ftp_root) -> FtpServer:
    """This case's vsftpd (ended with the case): its log holds only this case's sessions."""
    config = FtpServerConfig(root=ftp_root[0], data_timeout=DATA_TIMEOUT)
    return FtpServer(lab, "server", config, "vsftpd").start()


@pytest.fixture(scope="module")
def cells() -> dict[str, dict[str, dict[str, Any]]]:
    """Each setup's outcome per mode, as the cases of this module ran them (any selection)."""
    return {}


def commands(capture: Capture, verb: bytes, port: int = 21) -> list[TcpSegment]:
    """The control-session segments (server `port`) carrying an FTP command or reply that
    starts with `verb`."""
    return [s for s in capture.segments() if port in (s.sport, s.dport) and s.payload.startswith(verb)]


def stopped_at(syns: dict[str, list[TcpSegment]], active: bool) -> str:
    """Where the data session's SYNs stop: the firewall whose ingress saw them and whose
    egress did not, in the direction they travel ("" when nothing stopped them)."""
    order = CAPTURES[::-1] if active else CAPTURES
    for ingress, egress in (order[0:2], order[2:4]):
        if syns[ingress] and not syns[egress]:
            return f"dropped at {ingress.split('-')[0]}"
    return ""


def dropped_packet(captures: dict[str, Capture], result: dict[str, Any]) -> str:
    """The packet a firewall dropped, as captured arriving at it: the data session's first
    SYN on the ingress where it stopped ("" when nothing stopped it)."""
    syns = data_syns(captures, result)
    where = stopped_at(syns, result["mode"] in ACTIVE)
    if not where:
        return ""
    firewall = where.removeprefix("dropped at ")
    ingress = next(i for i in CAPTURES if i.startswith(firewall) and syns[i])
    s = syns[ingress][0]
    return f"SYN {s.src}:{s.sport} > {s.dst}:{s.dport}, captured on {ingress}, x{len(syns[ingress])}"


def data_syns(captures: dict[str, Capture], result: dict[str, Any]) -> dict[str, list[TcpSegment]]:
    """The SYNs (without ACK) of this download's data session on each captured interface:
    to the announced port from the client's data port (passive; any port when the client
    picked it), or from port 20 to the announced port (active, NAT or not)."""
    announced = [e for e in result["events"] if e["event"] == "announced"]
    port = result["download"]["data_port"]
    out = {}
    for intf, capture in captures.items():
        segments = [s for s in capture.segments() if s.flags == "S"]
        if result["mode"] in ACTIVE:
            out[intf] = [s for s in segments if s.sport == 20 and s.dport == port]
        else:
            target = announced[0]["port"] if announced else None
            out[intf] = [s for s in segments if port in (None, s.sport) and s.dport == target]
    return out


def observe(
    result: dict[str, Any],
    captures: dict[str, Capture],
    server_replies: list[str],
    sha256: str,
) -> str:
    """A download's outcome from evidence: the checksum and the server's log for ok, the
    server's reply for a refused announcement, the captures for a dropped data session."""
    if result["outcome"] == "ok":
        return (
            "ok" if result.get("sha256") == sha256 and any("226" in r for r in server_replies) else "corrupt"
        )
    if any(r.startswith("500 Illegal") for r in server_replies):
        return "refused: private address"
    where = stopped_at(data_syns(captures, result), result["mode"] in ACTIVE)
    return where or f"failed at {result.get('step')}: {result.get('error')}"


def announced_port(text: str) -> int | None:
    """The data port a PORT/EPRT command or a 227/229 reply announces."""
    if text.startswith(("PORT", "227")):
        numbers = [
            int(n) for n in re.findall(r"\d+", text[4:] if text.startswith("PORT") else text.split("(")[-1])
        ]
        return numbers[4] * 256 + numbers[5] if len(numbers) >= 6 else None
    parts = text.split("|")  # EPRT |1|addr|port|  and  229 ... (|||port|)
    return int(parts[3]) if len(parts) > 3 and parts[3].isdigit() else None


def server_replies(log: list[FtpLogLine], result: dict[str, Any]) -> list[str]:
    """What the server answered in this download's control session: the vsftpd session
    process that received its PORT/EPRT, or sent its 227/229, with the announced port."""
    announced = [e["port"] for e in result["events"] if e["event"] == "announced"]
    port = announced[0] if announced else result["download"]["data_port"]
    mode = result["mode"]
    pids = {
        line.pid
        for line in log
        if (mode in ACTIVE and line.kind == "FTP command" and line.text.startswith(mode))
        or (mode not in ACTIVE and line.kind == "FTP response" and line.text.startswith(("227", "229")))
        if announced_port(line.text) == port
    }
    return [line.text for line in log if line.pid in pids and line.kind in ("FTP response", "OK DOWNLOAD")]


def announcements(captures: dict[str, Capture], result: dict[str, Any]) -> dict[str, str]:
    """This download's announcement (PORT/EPRT command or 227/229 reply) as each capture
    carried it: an ALG with NAT rewrites it between fwc-in and fwc-out."""
    mode = result["mode"]
    verb = mode.encode() if mode in ACTIVE else (b"227" if mode == "PASV" else b"229")
    sport = result["download"]["sport"]
    out = {}
    for intf, capture in captures.items():
        for s in commands(capture, verb, result["download"]["port"]):
            if sport in (s.sport, s.dport):
                out[intf] = s.payload.decode(errors="replace").strip()
    return out


@contextlib.contextmanager
def evidence(lab, case: Case, label: str, policies: dict[str, FirewallPolicy]):
    """Load the firewalls' policies; around the block, captures on every firewall interface
    and the helpers' expectation events, kept in a folder named after `label`."""
    folder = case.path / dashed(label)
    folder.mkdir(parents=True, exist_ok=True)
    for name, policy in policies.items():
        case.keep(lab.node(name).apply_policy(policy), f"ruleset {name}, {label}")
    captures = {intf: Capture(lab, intf.split("-")[0], intf, folder, intf) for intf in CAPTURES}
    expect = {name: ExpectationEvents(lab, name, f"expect-{name}-{dashed(label)}") for name in policies}
    with contextlib.ExitStack() as stack:
        for item in [*captures.values(), *expect.values()]:
            stack.enter_context(item)
        yield folder, captures, expect
    for intf, capture in captures.items():
        case.keep(capture.path, f"capture {intf}, {label}")
    for name, events in expect.items():
        case.keep(events.path, f"expectations {name}, {label}")


def cell_of(
    result: dict[str, Any],
    captures: dict[str, Capture],
    expect: dict[str, ExpectationEvents],
    log: list[FtpLogLine],
    sha256: str,
) -> dict[str, Any]:
    """One download's outcome from evidence, and the evidence's summary."""
    sport = result["download"]["sport"]
    replies = server_replies(log, result)
    opened = {
        name: [e for e in ev.events() if e.master[1] == sport and e.event == "NEW"]
        for name, ev in expect.items()
    }
    announced = [e["port"] for e in result["events"] if e["event"] == "announced"]
    return {
        "observed": observe(result, captures, replies, sha256),
        "dropped": dropped_packet(captures, result),
        "client": {k: result.get(k) for k in ("outcome", "step", "error", "transfer_s")},
        "server_replies": replies,
        "expectations": {n: [f"{e.src} -> {e.dst}:{e.dport}" for e in evs] for n, evs in opened.items()},
        "announced": announcements(captures, result),
        "data_port": announced[0] if announced else None,
        "server_saw_client": sorted({line.client for line in log if line.kind == "CONNECT"}),
    }


def run_downloads(
    lab,
    case: Case,
    label: str,
    policies: dict[str, FirewallPolicy],
    modes: tuple[str, ...],
    server: FtpServer,
    sha256: str,
) -> dict[str, dict[str, Any]]:
    """One ftplib download per mode at once to `server`, with the evidence around them;
    each download's outcome from evidence."""
    port = server.config.port
    downloads = [
        FtpDownload(
            mode, FILE, case.take_port(), case.take_port(), port=port, timeout=STEP_TIMEOUT, label=mode
        )
        for mode in modes
    ]
    with evidence(lab, case, label, policies) as (folder, captures, expect):
        results = run_ftp(lab, "client", SERVER_IP, downloads)
    (folder / "downloads.json").write_text(json.dumps(results, indent=1))
    case.keep(folder / "downloads.json", f"the client's steps, {label}")
    log = server.log()
    return {result["mode"]: cell_of(result, captures, expect, log, sha256) for result in results}


def run_setup(
    lab, case: Case, setup: Setup, server: FtpServer, sha256: str, cells
) -> dict[str, dict[str, Any]]:
    """One row of the matrix: its policies, a download in every mode, and the predictions."""
    row = run_downloads(lab, case, setup.name, setup.policies(), MODES, server, sha256)
    for mode, cell in row.items():
        cell["predicted"] = setup.predict(mode)
    cells[setup.name] = row
    return row


def assert_cell(setup: Setup, mode: str, cell: dict[str, Any], folder) -> None:
    """A download's observed outcome is the predicted one, and the evidence agrees."""
    where = f"{setup.name}, {mode} (evidence in {folder})"
    assert cell["observed"] == cell["predicted"], f"{where}: predicted {cell['predicted']}, observed {cell}"
    client_ok = cell["client"]["outcome"] == "ok"
    assert client_ok == (cell["observed"] == "ok"), f"{where}: the client reported {cell['client']}"
    announced = cell["announced"]
    if cell["observed"] == "refused: private address":
        # The announcement left the client-side firewall naming the private address.
        assert CLIENT_IP.replace(".", ",") in announced.get(
            "fwc-out", ""
        ) or f"|{CLIENT_IP}|" in announced.get("fwc-out", ""), (
            f"{where}: the announcement on fwc-out was {announced}"
        )
    if setup.alg and setup.nat and mode in ACTIVE:
        # The ALG rewrote the private address to the firewall's own on the way out.
        inside, outside = announced.get("fwc-in", ""), announced.get("fwc-out", "")
        private = CLIENT_IP.replace(".", ",") if mode == "PORT" else f"|{CLIENT_IP}|"
        public = NAT_IP.replace(".", ",") if mode == "PORT" else f"|{NAT_IP}|"
        assert private in inside and public in outside, f"{where}: announced {announced}"
    if setup.alg and cell["server_replies"] and cell["observed"] == "ok":
        for name in ("fwc", "fws"):
            assert cell["expectations"][name], f"{where}: no expectation on {name}: {cell['expectations']}"
    if not setup.alg:
        assert not any(cell["expectations"].values()), f"{where}: an expectation without ALG: {cell}"


@pytest.mark.parametrize("name", list(SETUPS), ids=dashed)
def test_ftp_matrix_row(lab, ftp_server, ftp_root, case, cells, name):
    """FTP matrix: one row (firewall position, ALG, NAT), a download in each of PORT, EPRT, PASV, EPSV"""
    setup = SETUPS[name]
    row = run_setup(lab, case, setup, ftp_server, ftp_root[1], cells)
    for mode, cell in row.items():
        assert_cell(setup, mode, cell, case.path)
    case.figure("outcome per mode (predicted = observed)", {m: c["observed"] for m, c in row.items()})
    case.figure("transfer time per mode (s)", {m: c["client"]["transfer_s"] for m, c in row.items()})
    case.figure("expectations the ALGs created", {m: c["expectations"] for m, c in row.items()})
    case.figure("announcements as captured", {m: c["announced"] for m, c in row.items()})
    clients = {c for cell in row.values() for c in cell["server_saw_client"]}
    case.figure("client address in the server's log", sorted(clients))
    assert clients == {NAT_IP if setup.nat else CLIENT_IP}, f"the server's log shows clients {clients}"
    drops = {n: lab.node(n).counters() for n in ("fwc", "fws")}
    case.figure("drop counters", drops)
    dropped = {m: c["dropped"] for m, c in row.items() if c["dropped"]}
    case.figure("the dropped data-session packet, where it arrived", dropped)
    for mode, cell in row.items():
        if cell["observed"].startswith("dropped at "):
            firewall = cell["observed"].removeprefix("dropped at ")
            assert drops[firewall]["drop_denied"] >= 1, f"{mode}: {firewall} counted no drop: {drops}"


def test_ftp_matrix_heat_map(lab, ftp_server, ftp_root, case, cells):
    """FTP matrix: every mode x firewall position x ALG x NAT, as a heat map of outcomes"""
    ran_here = [name for name in SETUPS if name not in cells]
    for name in ran_here:  # rows this selection did not run: run them now
        row = run_setup(lab, case, SETUPS[name], ftp_server, ftp_root[1], cells)
        for mode, cell in row.items():
            assert_cell(SETUPS[name], mode, cell, case.path)
    case.figure("rows run by this case (not selected on their own)", ran_here)
    table = {name: {m: cells[name][m]["observed"] for m in MODES} for name in SETUPS}
    predicted = {name: {m: SETUPS[name].predict(m) for m in MODES} for name in SETUPS}
    assert table == predicted, f"observed {table}, predicted {predicted}"
    case.figure("outcome per row and mode", table)
    times = {name: {m: cells[name][m]["client"]["transfer_s"] for m in MODES} for name in SETUPS}
    ftp_matrix_figure(
        table,
        times,
        list(MODES),
        case.plot_path("matrix", "FTP: outcome per mode, firewall position, ALG and NAT"),
    )
    (case.path / "matrix.json").write_text(json.dumps(cells, indent=1))
    case.keep(case.path / "matrix.json", "every cell with its evidence summary")


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
    row = run_downloads(lab, case, label, policies, ("PORT", "PASV"), server, ftp_root[1])
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
        intruder = run_sessions(
            lab, "other", [f"{SERVER_IP}:{port}"], 1, timeout=1.0, first_port=case.take_port()
        )
        result = finish_ftp(lab, proc, HOLD + 4 * STEP_TIMEOUT)
        after = [e for e in expectations_now(lab, "fws") if e.dport == port]
        again = run_sessions(
            lab, "client", [f"{SERVER_IP}:{port}"], 1, timeout=1.0, first_port=case.take_port()
        )
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


@pytest.mark.parametrize("server_range", ["inside the opened range", "outside it"], ids=dashed)
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
    row = run_downloads(lab, case, label, policies, ("PASV", "EPSV"), server, ftp_root[1])
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


@pytest.mark.parametrize("fix", list(FIXES), ids=dashed)
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


TOOL_MODES = {"curl": ("PORT", "EPRT", "PASV", "EPSV"), "lftp": ("PORT", "PASV")}
TOOL_SETUPS = (Setup("both", True, True), Setup("client side", False, False))
ANNOUNCING = {"PORT": b"PORT", "EPRT": b"EPRT", "PASV": b"227", "EPSV": b"229"}


def tool_result(tool: dict[str, Any], captures: dict[str, Capture], out: Path, sha256: str) -> dict[str, Any]:
    """A curl or lftp download in the shape of an ftplib record, from evidence: its control
    session and the port announced in it from the client-side capture (`fwc-in`), the file
    it wrote checked against the served one."""
    mode = tool["mode"]
    announced = [s for s in commands(captures["fwc-in"], ANNOUNCING[mode]) if s.payload]
    sport = (announced[0].sport if announced[0].dport == 21 else announced[0].dport) if announced else None
    port = announced_port(announced[0].payload.decode(errors="replace")) if announced else None
    digest = hashlib.sha256(out.read_bytes()).hexdigest() if out.exists() else None
    out.unlink(missing_ok=True)
    ok = tool["exit"] == 0 and digest == sha256
    return {
        "mode": mode,
        "outcome": "ok" if ok else "failed",
        "sha256": digest,
        "error": None if ok else f"exit {tool['exit']}: {tool['output']}",
        "events": [{"event": "announced", "port": port}] if port is not None else [],
        "download": {"sport": sport, "data_port": port if mode in ACTIVE else None, "port": 21},
    }


@pytest.mark.parametrize("tool", FTP_TOOLS)
def test_real_ftp_clients_behave_as_predicted(lab, ftp_server, ftp_root, case, tool):
    """curl and lftp: the predictions hold for them too, with ALG and NAT on both firewalls and without"""
    modes = TOOL_MODES[tool]
    # The tool picks its own ports: in the client's namespace, its ephemeral range is the
    # upper half of this case's block for the case's duration.
    half = case.ports[len(case.ports) // 2 :]
    original = lab.run("client", ["sysctl", "-n", "net.ipv4.ip_local_port_range"]).split()
    lab.run("client", ["sysctl", "-qw", f"net.ipv4.ip_local_port_range={half.start} {half.stop - 1}"])
    rows = {}
    try:
        for setup in TOOL_SETUPS:
            outputs = {mode: case.path / f"{tool}-{mode}-{dashed(setup.name)}.bin" for mode in modes}
            jobs = [
                (
                    tool,
                    mode,
                    f"ftp://{SERVER_IP}/{FILE}",
                    str(outputs[mode]),
                    case.take_ports(10),
                    STEP_TIMEOUT,
                )
                for mode in modes
            ]
            with (
                evidence(lab, case, f"{tool}, {setup.name}", setup.policies()) as (_, captures, expect),
                ThreadPoolExecutor(len(jobs)) as pool,
            ):
                ran = list(pool.map(lambda job: run_ftp_tool(lab, "client", *job), jobs))
            log = ftp_server.log()
            row = {}
            for record in ran:
                result = tool_result(record, captures, outputs[record["mode"]], ftp_root[1])
                cell = (
                    cell_of(result, captures, expect, log, ftp_root[1]) if result["download"]["sport"] else {}
                )
                cell.update(
                    predicted=setup.predict(record["mode"]), exit=record["exit"], command=record["argv"]
                )
                row[record["mode"]] = cell
            rows[setup.name] = row
    finally:
        lab.run("client", ["sysctl", "-qw", f"net.ipv4.ip_local_port_range={original[0]} {original[1]}"])
    (case.path / "downloads.json").write_text(json.dumps(rows, indent=1, default=str))
    case.keep(case.path / "downloads.json", f"{tool}: every download with its evidence summary")
    case.figure(
        f"{tool}: outcome per setup and mode",
        {n: {m: c.get("observed") for m, c in r.items()} for n, r in rows.items()},
    )
    case.figure(f"{tool}: exit codes", {n: {m: c["exit"] for m, c in r.items()} for n, r in rows.items()})
    for name, row in rows.items():
        for mode, cell in row.items():
            assert "observed" in cell, (
                f"{tool} {mode}, {name}: no {mode} announcement captured on fwc-in: {cell}"
            )
            assert_cell(SETUPS[name], mode, cell, case.path)
