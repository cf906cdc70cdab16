"""`sessionlab characterize`: a behaviour profile of a session device from real traffic.

The device sits between the lab's inside host `ci` and its outside hosts `srv` and
`stun` (topologies/s6_characterize.py). `Characterization` runs the probes in a running
lab and returns the `Profile`; `characterize_run` builds that lab around a target first
(the lab's own firewall with a policy, or a device the lab did not build, attached by its
ports and read through a driver) and removes it afterwards. Every finding names its
evidence: captures on both sides of the device (`<phase>-inside.pcap`,
`<phase>-outside.pcap`; the searches also at the device's own ports,
`search-device-{inside,outside}.pcap`), the apps' results (`probes.json`), the servers' logs, the NAT
discovery's output, and the device's table where a driver reads it (`device-table.json`).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.capture import Capture, Sampler
from lab.characterize import probes
from lab.characterize.probes import CLIENT, SERVER, Ports, Search, Sides
from lab.characterize.profile import Device, Finding, Profile, render_markdown, requirements
from lab.characterize.target import PROBES, Bounds, Target
from lab.config import FirewallPolicy
from lab.errors import ConfigError, LabError
from lab.neighbours import resolved

if TYPE_CHECKING:
    from lab.characterize.attach import Attachment
    from lab.net import Lab

STUN = "stun"
SWITCHES = {"inside": "si", "outside": "so"}  # topologies/s6_characterize.py's: the device's ports' switches
FTP_FILE, FTP_SIZE = "probe.bin", 200_000

__all__ = ["PROBES", "Bounds", "Characterization", "Target", "characterize_run"]


class DeviceTable(Sampler):
    """The device's session table every 0.5 s while the searches run (a driver's read:
    conntrack over SSH, or nothing): what it says corroborates the traffic. A read that
    fails ends the sampling and is kept as the last snapshot; the profile goes on."""

    period = 0.5

    def __init__(self, device: Any):
        super().__init__()
        self.device = device
        self.snapshots: list[dict[str, Any]] = []
        self.failed = False

    def sample(self) -> None:
        if self.failed:
            return
        started = time.time()  # the read is taken between `started` and `time`
        try:
            rows = self.device.sessions()
        except LabError as exc:
            self.failed = True
            self.snapshots.append(
                {"started": started, "time": time.time(), "error": str(exc), "sessions": []}
            )
            return
        self.snapshots.append({"started": started, "time": time.time(), "sessions": [_row(s) for s in rows]})


class Characterization:
    """The probes against one device in a running s6 lab; `run()` returns its Profile and
    writes it (profile.json, profile.md, plots, evidence) into `folder`."""

    def __init__(
        self,
        lab: Lab,
        device: Any,
        target: Target,
        bounds: Bounds,
        folder: Path,
        ports: range,
        device_ports: dict[str, str] | None = None,
    ):
        checks = bounds.problems()
        if checks:
            raise ConfigError(checks)
        self.lab, self.device, self.target, self.bounds = lab, device, target, bounds
        self.folder, self.ports = folder, Ports(ports)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.client_ip, self.server_ip = lab.ip(CLIENT), lab.ip(SERVER)
        self.plan = _plan()
        self.tcp_port, self.udp_port = self.plan.ports["tcp"], self.plan.ports["udp"]
        self.records: dict[str, Any] = {}
        self.first_proc = len(lab.procs)  # what started before is not this run's evidence
        self.snapshots: list[dict[str, Any]] = []
        # the switch ports facing the device (root namespace), by side: the lab's own
        # firewall's links, or the ports of a device the lab did not build as attached
        self.device_ports = device_ports or {
            side: lab.link_intf(switch, "dut")[1] for side, switch in SWITCHES.items()
        }

    # --- the run ------------------------------------------------------------------------
    def run(self) -> Profile:
        started = time.time()
        profile = Profile(device=self._described(), started=datetime.now(UTC).isoformat(timespec="seconds"))
        self._reachable()
        wanted = self.bounds.probes
        # The NAT discovery (UDP to the STUN node, mostly waiting out its timeouts) runs
        # while the searches idle their sessions: their captures hold TCP only and their
        # table readings only the searched ports.
        with ThreadPoolExecutor(1) as beside:
            nat = beside.submit(self._nat, profile) if "nat" in wanted else None
            if "tcp" in wanted or "udp" in wanted:
                self._searches(profile)
            if nat is not None:
                nat.result()
        if "tcp" in wanted:
            result = probes.midstream(
                self.lab, self._phase, self.client_ip, self.server_ip, self.tcp_port, self.ports
            )
            profile.tcp.midstream_ack = Finding(
                result["value"], ["midstream-inside.pcap", "midstream-outside.pcap"], result["ports"]
            )
        if "ftp" in wanted:
            self._ftp(profile)
        if "capacity" in wanted:
            self._capacity(profile)
        profile.duration_s = round(time.time() - started, 1)
        self._write(profile)
        return profile

    def _described(self) -> Device:
        target = self.target
        if target.built_by_lab:
            attachment = "the lab's own firewall (node dut), its policy loaded by the lab"
            table = "conntrack in the firewall's namespace"
        else:
            attachment = f"ports {target.attachment} (the lab attached them and never configured the device)"
            table = getattr(target.driver, "table", target.driver.name)
        addresses = {"inside": target.inside_gw, "outside": target.outside_gw}
        return Device(target.name, target.built_by_lab, attachment, table, addresses)

    def _reachable(self, timeout: float = 15) -> None:
        """The device holds its addresses on both sides (a device set up outside the lab may
        take a moment to address the ports just plugged): each answers ARP, which a device
        that drops pings to itself still does. Bounded."""
        for node, address in ((CLIENT, self.target.inside_gw), (SERVER, self.target.outside_gw)):
            what = f"the device to answer for {address} on {node}'s side"
            resolved(self.lab, node, address, timeout, what)

    @contextlib.contextmanager
    def _phase(self, name: str, at_device: bool = False) -> Iterator[Callable[[], Sides]]:
        """Captures on both sides of the device for a block: at the client and the server
        (`<name>-inside`, `<name>-outside`), or with `at_device` at the device's own ports,
        the lab's switch ports facing it, so that nothing but the device lies between them
        (`<name>-device-inside`, ...). The callable reads them, as far as they are written
        within the block, whole after it."""
        seen: dict[str, Sides] = {}
        lab = self.lab
        points: dict[str, tuple[str | None, str]]
        if at_device:
            points = {side: (None, port) for side, port in self.device_ports.items()}
            name = f"{name}-device"
        else:
            points = {"inside": (CLIENT, _intf(lab, CLIENT)), "outside": (SERVER, _intf(lab, SERVER))}
        inside, outside = (
            Capture(lab, *points[side], self.folder, f"{name}-{side}", "tcp")
            for side in ("inside", "outside")
        )
        with inside, outside:
            yield lambda: seen.get("sides") or Sides(inside.segments(), outside.segments())
        seen["sides"] = Sides(inside.segments(), outside.segments())

    # --- TCP and UDP idle times ---------------------------------------------------------
    def _searches(self, profile: Profile) -> None:
        from lab.traffic import start_echo_server, start_udp_server

        bounds, lab = self.bounds, self.lab
        tcp_ports = [self.tcp_port, *bounds.tcp_ports]
        echo = start_echo_server(lab, SERVER, tcp_ports, "echo-srv")
        udp = start_udp_server(lab, SERVER, [self.udp_port], "udp-srv")
        jobs: dict[str, Callable[[], Search]] = {}
        timeout = bounds.app_timeout_s
        if "tcp" in bounds.probes:
            for port in tcp_ports:
                run = probes.tcp_round(lab, self.server_ip, port, timeout, self.ports)
                jobs[f"tcp {port}"] = partial(
                    probes.search, bounds.tcp_max_s, bounds.parallel, run, _alive_tcp
                )
        if "udp" in bounds.probes:
            for mode in ("outbound", "bidirectional"):
                run = probes.udp_round(lab, self.server_ip, self.udp_port, mode, timeout, self.ports)
                jobs[f"udp {mode}"] = partial(
                    probes.search, bounds.udp_max_s, bounds.parallel, run, _alive_udp
                )
        watch = DeviceTable(self.device)
        at_ports = self._phase("search", at_device=True)
        with (
            watch,
            self._phase("search") as sides,
            at_ports as at_device,
            ThreadPoolExecutor(len(jobs)) as pool,
        ):
            futures = {name: pool.submit(job) for name, job in jobs.items()}
            results = {name: future.result() for name, future in futures.items()}
        lab.stop(echo)
        lab.stop(udp)
        self.records["searches"] = {
            name: [_point(p) for p in result.points] for name, result in results.items()
        }
        evidence = ["search-inside.pcap", "search-outside.pcap", "probes.json", "device-table.json"]
        self.snapshots = watch.snapshots
        # what the table counts down from, once per port searched
        spans = {k: v for result in results.values() for k, v in probes.quiet_spans(result.points).items()}
        table = {
            f"tcp {port}": probes.table_timeouts(self.snapshots, "tcp", port, spans) for port in tcp_ports
        }
        table["udp"] = probes.table_timeouts(self.snapshots, "udp", self.udp_port, spans)
        self.records["table_timeouts"] = table
        for name, result in results.items():
            kind, _, which = name.partition(" ")
            if kind == "tcp":
                port = int(which)
                finding = Finding.from_search(result.search, evidence, port=port, table_says_s=table[name])
                if port == self.tcp_port:
                    profile.tcp.idle_timeout_s = finding
                else:
                    profile.tcp.idle_timeout_by_port[str(port)] = finding
            else:
                says = table["udp"].get("unreplied" if which == "outbound" else "replied")
                finding = Finding.from_search(result.search, evidence, port=self.udp_port, table_says_s=says)
                setattr(profile.udp, f"lifetime_{which}_s", finding)
        passed = probes.transit(at_device(), self.tcp_port)
        self.records["transit"] = passed
        if passed["latency_added_ms"] is not None:
            how = "one-way at the device's ports: the medians of each handshake's SYN and SYN-ACK"
            pcaps = ["search-device-inside.pcap", "search-device-outside.pcap"]
            profile.capacity.latency_added_ms = Finding(passed["latency_added_ms"], pcaps, passed, how)
        counters = getattr(self.device, "counters", None)
        if not self.target.built_by_lab and counters is not None:
            self.records["device_counters"] = counters()  # the driver's (conntrack -S), if it reads them
        if f"tcp {self.tcp_port}" in results:
            at_expiry = probes.expiry(results[f"tcp {self.tcp_port}"].points, sides(), self.tcp_port, echo)
            self.records["expiry"] = at_expiry
            expiry_evidence = ["search-inside.pcap", "search-outside.pcap", f"logs/{echo.log_path.name}"]
            profile.tcp.expiry = Finding(
                at_expiry["expiry"], expiry_evidence, {"sessions": at_expiry["expired_sessions"]}
            )
            profile.tcp.rst_acceptable = Finding(at_expiry["rst_acceptable"], expiry_evidence)

    # --- NAT, FTP, capacity ---------------------------------------------------------------
    def _nat(self, profile: Profile) -> None:
        from lab.characterize.nat import discover
        from lab.devices.stun import StunConfig, StunServer

        primary, secondary = self.plan.address("stun"), self.plan.addresses["stun-alt"]
        server = StunServer(self.lab, STUN, StunConfig(primary, secondary), "stun").start()
        try:
            behaviour, text = discover(self.lab, CLIENT, primary, self.client_ip)
        finally:
            server.stop()
        (self.folder / "natdiscovery.txt").write_text(text)
        found = behaviour.as_dict()
        self.records["nat"] = found
        evidence = ["natdiscovery.txt"] + ([f"logs/{server.proc.log_path.name}"] if server.proc else [])
        for key in ("mapping", "filtering"):
            value = found.get(key)
            finding = Finding(
                value if value != "unknown" else None, evidence, {"tool": "turnutils_natdiscovery"}
            )
            if value == "unknown":
                finding.notes.append("the discovery could not tell: " + "; ".join(found.get("notes", [])))
            setattr(profile.nat, key, finding)
        profile.nat.hairpinning = Finding(found.get("hairpinning"), evidence)
        profile.nat.port_preservation = Finding(found.get("port_preservation"), evidence)

    def _ftp(self, profile: Profile) -> None:
        from lab.config import FtpServerConfig
        from lab.devices.ftp_server import FtpServer, make_file
        from lab.traffic import FtpDownload, run_ftp, run_sessions, start_echo_server

        lab = self.lab
        root = lab.runtime_dir() / "s6-ftp"
        root.mkdir(mode=0o755, exist_ok=True)
        make_file(root, FTP_FILE, FTP_SIZE)
        inbound_port = self.ports.one()
        inside_echo = start_echo_server(lab, CLIENT, [self.tcp_port], "echo-ci")
        inbound = run_sessions(
            lab, SERVER, [f"{self.client_ip}:{self.tcp_port}"], 1, timeout=2.0, first_port=inbound_port
        )
        lab.stop(inside_echo)
        inbound_ok = any(r.get("data_ok") for r in inbound)
        server = FtpServer(lab, SERVER, FtpServerConfig(root=str(root), data_timeout=3), "vsftpd").start()
        try:
            with self._phase("ftp"):
                downloads = [
                    FtpDownload(mode, FTP_FILE, self.ports.one(), self.ports.one(), timeout=4.0)
                    for mode in ("PORT", "PASV")
                ]
                records = run_ftp(lab, CLIENT, self.server_ip, downloads)
            commands = [line.text for line in server.log() if line.kind == "FTP command"]
        finally:
            server.stop()
        found = probes.ftp_verdicts(records, commands, self.client_ip, inbound_ok)
        self.records["ftp"] = {"downloads": records, "inbound": list(inbound), **found}
        evidence = ["ftp-inside.pcap", "ftp-outside.pcap", f"logs/{server.log_path.name}", "probes.json"]
        for key in ("active", "passive", "alg", "port_rewritten"):
            setattr(
                profile.ftp,
                key,
                Finding(found[key], evidence, {"downloads": [r.get("mode") for r in records]}),
            )

    def _capacity(self, profile: Profile) -> None:
        from lab.traffic import SessionLoad, run_load, start_echo_server

        lab, bound = self.lab, self.bounds.capacity_sessions
        echo = start_echo_server(lab, SERVER, [self.tcp_port], "echo-capacity")
        target = [f"{self.server_ip}:{self.tcp_port}"]
        held = run_load(
            lab, CLIENT, SessionLoad(target, bound, bound, 5.0, self.ports.take(bound).start, hold=2.0)
        )
        count = min(bound, 300)
        load = SessionLoad(target, count, 8, 3.0, self.ports.take(count).start)
        began = time.monotonic()
        rate = run_load(lab, CLIENT, load)
        seconds = time.monotonic() - began
        lab.stop(echo)
        found = probes.capacity_verdicts(list(held), bound, list(rate), seconds)
        self.records["capacity"] = found
        evidence = ["probes.json", f"logs/{echo.log_path.name}"]
        details = {k: v for k, v in found.items() if k not in ("sessions", "new_per_s")}
        profile.capacity.sessions = Finding(found["sessions"], evidence, details)
        profile.capacity.new_per_s = Finding(found["new_per_s"], evidence, details)

    # --- the profile ------------------------------------------------------------------------
    def _write(self, profile: Profile) -> None:
        from lab.plot.characterize import search_figure

        (self.folder / "probes.json").write_text(json.dumps(self.records, indent=1, default=str))
        (self.folder / "device-table.json").write_text(json.dumps(self.snapshots, indent=1))
        logs = self.folder / "logs"
        logs.mkdir(exist_ok=True)
        for proc in self.lab.procs[self.first_proc :]:
            if proc.log_path.exists():
                (logs / proc.log_path.name).write_bytes(proc.log_path.read_bytes())
        rounds = profile.tcp.idle_timeout_s.probe.get("rounds")
        if rounds:
            search_figure(rounds, self.folder / "tcp-search.png", "TCP idle probes: alive (o) or dead (x)")
            profile.figures["the TCP idle-time search"] = "tcp-search.png"
        self._lifetimes(profile)
        (self.folder / "profile.json").write_text(profile.to_json())
        (self.folder / "profile.md").write_text(render_markdown(profile, requirements(profile)))

    def _lifetimes(self, profile: Profile) -> None:
        from lab.plot.characterize import lifetimes_figure

        def bracket(finding: Finding) -> Any:
            return tuple(finding.value) if finding.measured else None

        out, both = bracket(profile.udp.lifetime_outbound_s), bracket(profile.udp.lifetime_bidirectional_s)
        if out or both:
            path = self.folder / "lifetimes.png"
            lifetimes_figure(out, both, path, "session lifetimes", tcp=bracket(profile.tcp.idle_timeout_s))
            profile.figures["lifetimes"] = path.name


def _plan() -> Any:
    from lab.topology import plan

    return plan("s6")


def _intf(lab: Lab, node: str) -> str:
    return str(lab.node(node).defaultIntf().name)


def _alive_tcp(point: probes.TcpPoint) -> bool:
    return point.alive


def _alive_udp(result: Any) -> bool:
    return bool(result.outcome == "delivered")


def _point(point: Any) -> dict[str, Any]:
    if isinstance(point, probes.TcpPoint):
        return {
            "idle_s": point.idle,
            "alive": point.alive,
            "client_first": point.client_first.to_dict(),
            "server_first": point.server_first.to_dict(),
        }
    return {"idle_s": point.probe.idle, "alive": point.outcome == "delivered", **point.to_dict()}


def _row(session: Any) -> dict[str, Any]:
    return {k: v for k, v in asdict(session).items() if v is not None and v != ()}


def characterize_run(
    target: Target, bounds: Bounds, folder: Path, ports: range = range(20000, 32000)
) -> Profile:
    """Build the s6 lab around `target`, characterize it into `folder`, remove the lab
    (also after an error or Ctrl-C). A device the lab did not build is attached by its
    ports and never configured; the lab's own firewall gets `target.policy`."""
    from lab import topology
    from lab.devices.external import ExternalDevice
    from lab.net import Lab

    device_kind = "firewall" if target.built_by_lab else "external"
    topo = topology.load("s6", device=device_kind, inside_gw=target.inside_gw, outside_gw=target.outside_gw)
    attached: dict[str, str] = {}  # a device the lab did not build: its ports, by side, once attached
    on_build = None if target.attachment is None else partial(_attach, target.attachment, attached)
    with Lab(topo, folder / "lab", on_build=on_build) as lab:
        if target.built_by_lab:
            device = lab.node("dut")
            device.apply_policy(target.policy or FirewallPolicy())
        else:
            device = ExternalDevice(lab, "dut", target.driver, name=target.name)
        try:
            return Characterization(lab, device, target, bounds, folder, ports, attached).run()
        finally:
            if not target.built_by_lab:
                device.stop()


def _attach(attachment: Attachment, attached: dict[str, str], lab: Lab) -> None:
    """Plug (a namespace device) and attach the device's ports to the lab's switches; the
    root-namespace ports attached, by side, into `attached`."""
    from lab.characterize.attach import attach_intfs, plug_netns, unplug

    if attachment.netns is not None:
        assert lab.record is not None
        names = plug_netns(attachment, lab.record)
        lab.on_close(lambda: unplug(names.values()))
    else:
        names = dict(attachment.ports)
    for role, iface in names.items():
        attach_intfs(lab.net, lab.names[SWITCHES[role]], iface)
    attached.update(names)
