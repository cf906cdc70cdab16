"""S3's shared parts (SCENARIOS.md, FTP: one communication, two sessions): the firewall
policies, the matrix's setups and predictions, the FTP server, and each download's
outcome read from evidence: captures on all four firewall interfaces (where the data
session's SYNs stop), the server's log (what it received and answered), the helpers'
expectations (`conntrack -E expect`), and the transferred file's checksum. The addresses
are the topology's plans (topologies/s3_ftp.py: `PLAN`, and `PLAN6` for the IPv6 module).
"""

from __future__ import annotations

import contextlib
import ftplib
import json
import re
from dataclasses import dataclass
from typing import Any

import pytest

from lab import topology
from lab.capture import Capture, ExpectationEvents, stop_captures
from lab.config import FirewallPolicy, FtpServerConfig, Helper, Service
from lab.devices.ftp_server import FtpLogLine, FtpServer, make_file
from lab.packets import TcpSegment
from lab.results import Case
from lab.traffic import FtpDownload, run_ftp
from testcases.common import dashed

PLAN, PLAN6 = topology.plan("s3"), topology.plan("s3", family=6)
MODES = ("PORT", "EPRT", "PASV", "EPSV")
ACTIVE = ("PORT", "EPRT")
POSITIONS = ("client side", "server side", "both")
FILE, FILE_SIZE = "file.bin", 256 * 1024
# vsftpd's wait for a data connection (s): a data connection in the lab is up in
# milliseconds; a refused one is told by where its first SYN stopped (the captures)
DATA_TIMEOUT = 2
STEP_TIMEOUT = 3.0  # the client's wait at each step (s): longer, so it hears the server's 425
SERVER_IP, CLIENT_IP = PLAN.address("server"), PLAN.address("client")
NAT_IP = PLAN.addresses["fwc-out"]  # fwc source-NATs the client to its outside address
# A firewall outside the cell's position: still stateful, but lets every new session in.
OPEN = FirewallPolicy(allow_inbound=(Service(1, port_end=65535),))
CLIENT_SIDE = FirewallPolicy()  # inside to outside only
SERVER_SIDE = FirewallPolicy(allow_inbound=(Service(21, address=SERVER_IP),))  # the control port only
ALG = (Helper(21),)
# Over IPv6 (the plan's PLAN6): fwc masquerades the client to fwc-out's IPv6 address (NAT66).
SERVER_IP6, CLIENT_IP6, NAT_IP6 = PLAN6.address("server"), PLAN6.address("client"), PLAN6.address("fwc-out")
SERVER_SIDE6 = FirewallPolicy(allow_inbound=(Service(21, address=SERVER_IP6),))
CAPTURES = ("fwc-in", "fwc-out", "fws-out", "fws-in")  # in path order, client to server


def case_id(value: str) -> str:
    """A case id or folder name from a label (`dashed`), without its commas."""
    return dashed(value.replace(",", ""))


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


@pytest.fixture
def ftp_server_both(lab, ftp_root) -> FtpServer:
    """This case's vsftpd listening on [::]: IPv6 clients, and IPv4 ones as mapped addresses."""
    config = FtpServerConfig(root=ftp_root[0], data_timeout=DATA_TIMEOUT, ipv6=True)
    return FtpServer(lab, "server", config, "vsftpd-both").start()


@dataclass(frozen=True)
class PortNaming(FtpDownload):
    """A download whose PORT names `port_address`: over IPv6 a PORT cannot name the
    client's own address, so the client needs an IPv4 one to send at all."""

    port_address: str = ""

    def argv(self, server: str) -> list[str]:
        extra = ["--port-address", self.port_address] if self.port_address else []
        return [*super().argv(server), *extra]


def commands(capture: Capture, verb: bytes, port: int = 21) -> list[TcpSegment]:
    """The control-session segments (server `port`) carrying an FTP command or reply that
    starts with `verb`."""
    return [s for s in capture.segments() if port in (s.sport, s.dport) and s.payload.startswith(verb)]


def endpoint(address: str, port: int | None) -> str:
    """address:port, an IPv6 address in brackets (RFC 3986)."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


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
    where = f"captured on {ingress}, x{len(syns[ingress])}"
    return f"SYN {endpoint(s.src, s.sport)} > {endpoint(s.dst, s.dport)}, {where}"


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
    """The data port a PORT/EPRT command or a 227/229 reply announces (None when it is
    none of them or malformed). The replies go through ftplib's own parsers, those the
    lab's client uses; ftplib has no parser for the commands a client sends, so PORT
    (RFC 959: h1,h2,h3,h4,p1,p2) and EPRT (RFC 2428: |af|address|port|) are read here."""
    try:
        if text.startswith("227"):
            return ftplib.parse227(text)[1]
        if text.startswith("229"):
            return ftplib.parse229(text, ("", 0))[1]
    except (ftplib.Error, ValueError):
        return None
    if text.startswith("PORT"):
        numbers = [int(n) for n in re.findall(r"\d+", text[4:])]
        return numbers[4] * 256 + numbers[5] if len(numbers) >= 6 else None
    if text.startswith("EPRT"):
        fields = eprt(text)
        return fields[2] if fields else None
    return None


def eprt(text: str) -> tuple[int, str, int] | None:
    """An EPRT command's fields (RFC 2428: EPRT <d>af<d>address<d>port<d>, the first
    character after the verb delimits): the address family (1 IPv4, 2 IPv6), the address
    as written, and the port; None when malformed. ftplib builds EPRT but has no parser
    for it."""
    fields = text.removeprefix("EPRT").strip()
    parts = fields.split(fields[:1]) if fields else []
    if len(parts) != 5 or parts[0] or parts[4] or not (parts[1].isdigit() and parts[3].isdigit()):
        return None
    return int(parts[1]), parts[2], int(parts[3])


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
    folder = case.path / case_id(label)
    folder.mkdir(parents=True, exist_ok=True)
    for name, policy in policies.items():
        case.keep(lab.node(name).apply_policy(policy), f"ruleset {name}, {label}")
    captures = {intf: Capture(lab, intf.split("-")[0], intf, folder, intf) for intf in CAPTURES}
    expect = {name: ExpectationEvents(lab, name, f"expect-{name}-{case_id(label)}") for name in policies}
    with contextlib.ExitStack() as stack:
        for item in [*captures.values(), *expect.values()]:
            stack.enter_context(item)
        stack.callback(stop_captures, list(captures.values()))  # first on the way out: at once
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
        "data_syns": {intf: len(syns) for intf, syns in data_syns(captures, result).items()},
        "ports": {key: result["download"][key] for key in ("sport", "data_port")},  # the client's
        "client": {k: result.get(k) for k in ("outcome", "step", "error", "transfer_s")},
        "server_replies": replies,
        "expectations": {
            n: [f"{e.src} -> {endpoint(e.dst, e.dport)}" for e in evs] for n, evs in opened.items()
        },
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
    address: str = SERVER_IP,
    port_address: str = "",
) -> dict[str, dict[str, Any]]:
    """One ftplib download per mode at once to `server` at `address` (IPv4 or IPv6), with
    the evidence around them; each download's outcome from evidence. `port_address`: the
    address a PORT names over IPv6 (`PortNaming`)."""
    port = server.config.port
    downloads = [
        PortNaming(
            mode,
            FILE,
            case.take_port(),
            case.take_port(),
            port=port,
            timeout=STEP_TIMEOUT,
            label=mode,
            port_address=port_address,
        )
        for mode in modes
    ]
    with evidence(lab, case, label, policies) as (folder, captures, expect):
        results = run_ftp(lab, "client", address, downloads)
    (folder / "downloads.json").write_text(json.dumps(results, indent=1))
    case.keep(folder / "downloads.json", f"the client's steps, {label}")
    log = server.log()
    return {result["mode"]: cell_of(result, captures, expect, log, sha256) for result in results}
