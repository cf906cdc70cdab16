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
import json
import re
from dataclasses import dataclass
from typing import Any

import pytest

from lab.capture import Capture, ExpectationEvents
from lab.config import FirewallPolicy, FtpServerConfig, Helper, Service
from lab.devices.ftp_server import FtpLogLine, FtpServer, make_file
from lab.packets import TcpSegment
from lab.plot import ftp_matrix_figure
from lab.results import Case
from lab.traffic import FtpDownload, run_ftp

LAB_TOPOLOGY = "s3"
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


def commands(capture: Capture, verb: bytes) -> list[TcpSegment]:
    """The control-session segments carrying an FTP command or reply that starts with `verb`."""
    return [s for s in capture.segments() if 21 in (s.sport, s.dport) and s.payload.startswith(verb)]


def stopped_at(syns: dict[str, list[TcpSegment]], active: bool) -> str:
    """Where the data session's SYNs stop: the firewall whose ingress saw them and whose
    egress did not, in the direction they travel ("" when nothing stopped them)."""
    order = CAPTURES[::-1] if active else CAPTURES
    for ingress, egress in (order[0:2], order[2:4]):
        if syns[ingress] and not syns[egress]:
            return f"dropped at {ingress.split('-')[0]}"
    return ""


def data_syns(captures: dict[str, Capture], result: dict[str, Any]) -> dict[str, list[TcpSegment]]:
    """The SYNs (without ACK) of this download's data session on each captured interface:
    from the client's data port (passive), or to the announced port (active, NAT or not)."""
    announced = [e for e in result["events"] if e["event"] == "announced"]
    port = result["download"]["data_port"]
    out = {}
    for intf, capture in captures.items():
        segments = [s for s in capture.segments() if s.flags == "S"]
        if result["mode"] in ACTIVE:
            out[intf] = [s for s in segments if s.sport == 20 and s.dport == port]
        else:
            target = announced[0]["port"] if announced else None
            out[intf] = [s for s in segments if s.sport == port and s.dport == target]
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
        for s in commands(capture, verb):
            if sport in (s.sport, s.dport):
                out[intf] = s.payload.decode(errors="replace").strip()
    return out


def run_setup(
    lab, case: Case, setup: Setup, server: FtpServer, sha256: str, cells
) -> dict[str, dict[str, Any]]:
    """Load the setup's policies, run one download per mode at once with captures on every
    firewall interface and the helpers' expectation events; keep the evidence."""
    folder = case.path / dashed(setup.name)
    folder.mkdir(parents=True, exist_ok=True)
    firewalls = {name: lab.node(name) for name in ("fwc", "fws")}
    for name, policy in setup.policies().items():
        case.keep(firewalls[name].apply_policy(policy), f"ruleset {name}, {setup.name}")
    downloads = [
        FtpDownload(mode, FILE, case.take_port(), case.take_port(), timeout=STEP_TIMEOUT, label=mode)
        for mode in MODES
    ]
    captures = {intf: Capture(lab, intf.split("-")[0], intf, folder, intf) for intf in CAPTURES}
    tag = dashed(setup.name)
    expect = {name: ExpectationEvents(lab, name, f"expect-{name}-{tag}") for name in firewalls}
    with contextlib.ExitStack() as stack:
        for item in [*captures.values(), *expect.values()]:
            stack.enter_context(item)
        results = run_ftp(lab, "client", SERVER_IP, downloads)
    for intf, capture in captures.items():
        case.keep(capture.path, f"capture {intf}, {setup.name}")
    for name, events in expect.items():
        case.keep(events.path, f"expectations {name}, {setup.name}")
    (folder / "downloads.json").write_text(json.dumps(results, indent=1))
    case.keep(folder / "downloads.json", f"the client's steps, {setup.name}")
    log = server.log()
    out = {}
    for result in results:
        sport = result["download"]["sport"]
        replies = server_replies(log, result)
        opened = {
            name: [e for e in ev.events() if e.master[1] == sport and e.event == "NEW"]
            for name, ev in expect.items()
        }
        out[result["mode"]] = {
            "predicted": setup.predict(result["mode"]),
            "observed": observe(result, captures, replies, sha256),
            "client": {k: result.get(k) for k in ("outcome", "step", "error", "transfer_s")},
            "server_replies": replies,
            "expectations": {n: [f"{e.src} -> {e.dst}:{e.dport}" for e in evs] for n, evs in opened.items()},
            "announced": announcements(captures, result),
            "server_saw_client": sorted({line.client for line in log if line.kind == "CONNECT"}),
        }
    cells[setup.name] = out
    return out


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
