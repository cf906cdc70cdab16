"""`Lab`: one emulated network and everything started in it, removed again on exit.

The Lab builds a Mininet network from a topology with userspace Open vSwitch switches,
turns TX checksum offload off on every host interface (the userspace datapath drops TCP
with offloaded checksums), and owns every process it starts. On exit, normal or not
(exception, Ctrl-C), it ends those processes by PID and removes exactly the namespaces,
links and bridges it created. Switch names carry a tag unique to the run.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from lab.controller import Controller, ControllerApp
from lab.devices import SessionDevice, device_class
from lab.errors import ConfigError, LabError
from lab.procs import Proc, Supervisor, host_run
from lab.wait import wait_until

log = logging.getLogger(__name__)

IFNAME_MAX = 15
# Link options that need netem, which stock Mininet accepts and then silently ignores
# when the kernel lacks it.
NETEM_OPTIONS = ("delay", "jitter", "loss")


@dataclass
class LabPaths:
    """Where a lab writes: logs, captures, rendered configuration."""

    root: Path
    logs: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root = self.root.resolve()
        self.logs = self.root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)


def check_host() -> None:
    """Refuse early, in one line, when this machine cannot run a lab."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, Open vSwitch): run it as root")
    for tool in ("mnexec", "ovs-vsctl", "ethtool", "nft", "conntrack", "tcpdump", "ss"):
        if shutil.which(tool) is None:
            raise LabError(f"{tool} is not installed: run scripts/bootstrap.sh")
    try:
        host_run(["ovs-vsctl", "--timeout=3", "show"])
    except LabError:
        raise LabError("Open vSwitch is not running: run scripts/bootstrap.sh (it starts it)") from None


_netem: bool | None = None


def kernel_has_netem() -> bool:
    """Whether netem qdiscs work here, tried once in a throwaway namespace of our own."""
    global _netem
    if _netem is None:
        ns = f"slnetem{secrets.token_hex(3)}"
        host_run(["ip", "netns", "add", ns])
        try:
            host_run(["ip", "-n", ns, "link", "add", "d0", "type", "veth", "peer", "name", "d1"])
            host_run(["ip", "-n", ns, "link", "set", "d0", "up"])
            tc = ["tc", "-n", ns, "qdisc", "add", "dev", "d0", "root", "netem", "delay", "1ms"]
            _netem = subprocess.run(tc, capture_output=True).returncode == 0
        finally:
            host_run(["ip", "netns", "del", ns], check=False)
    return _netem


TAG_LENGTH = 6  # "sl" and four hex digits, before every switch name


def topology_problems(topo: Any) -> list[str]:
    """What in a Mininet Topo this lab cannot honour, each problem naming the link or node."""
    problems = []
    links: dict[str, int] = {}
    for src, dst in topo.links():
        for end in (src, dst):
            links[end] = links.get(end, 0) + 1
    for name in topo.nodes():
        if not re.fullmatch(r"[a-z][a-z0-9]{0,9}", name):
            problems.append(f"node {name!r}: names are lower-case letters and digits, at most 10")
            continue
        # Mininet names interfaces <node>-eth<N>; a switch's name carries the run's tag.
        prefix = TAG_LENGTH if topo.isSwitch(name) else 0
        longest = prefix + len(name) + len("-eth") + len(str(links.get(name, 0)))
        if longest > IFNAME_MAX:
            room = len(name) - (longest - IFNAME_MAX)
            kind = "switch" if topo.isSwitch(name) else "host"
            problems.append(
                f"{kind} {name!r}: its interface names would be {longest} characters (Linux allows "
                f"{IFNAME_MAX}); use a name of at most {max(room, 1)} characters"
            )
    dpids: dict[int, str] = {}
    for name in topo.switches():
        given = topo.nodeInfo(name).get("dpid")
        if given is None:
            continue
        try:
            number = int(str(given), 16)
        except ValueError:
            problems.append(f"switch {name!r}: dpid {given!r} is not hexadecimal")
            continue
        if number in dpids:
            problems.append(f"switches {dpids[number]!r} and {name!r} have the same dpid {number:#x}")
        dpids[number] = name
    for src, dst, info in topo.links(withInfo=True):
        wanted = [k for k in NETEM_OPTIONS if info.get(k) not in (None, 0, "0", "0ms")]
        if wanted and not kernel_has_netem():
            problems.append(
                f"link {src}-{dst}: {', '.join(wanted)} needs netem, which this kernel lacks "
                "(Mininet would silently ignore it); use rate limits or nftables loss instead"
            )
        for side in ("intfName1", "intfName2"):
            if side in info and len(info[side]) > IFNAME_MAX:
                problems.append(f"link {src}-{dst}: interface name {info[side]!r} is over 15 characters")
    return problems


def _tagged_topo(topo: Any, tag: str) -> tuple[Any, dict[str, str]]:
    """A copy of `topo` whose switches carry the run's tag; returns it and logical->real names."""
    from mininet.topo import Topo

    names = {n: (f"{tag}{n}" if topo.isSwitch(n) else n) for n in topo.nodes()}
    # A switch without a dpid gets the next free number (Mininet's default, the digits of
    # its name, collides for s1/a1; and the tagged name's digits would be the tag's).
    taken = {int(str(topo.nodeInfo(s)["dpid"]), 16) for s in topo.switches() if "dpid" in topo.nodeInfo(s)}
    free = (n for n in range(1, 1 << 48) if n not in taken)
    copy = Topo()
    for node in topo.nodes():
        info = {k: v for k, v in topo.nodeInfo(node).items() if k != "isSwitch"}
        if topo.isSwitch(node):
            info.setdefault("dpid", f"{next(free):016x}")
            copy.addSwitch(names[node], **info)
        else:
            copy.addHost(node, **info)
    for _src, _dst, info in topo.links(sort=True, withInfo=True):
        info = dict(info)
        for end in ("node1", "node2"):
            info[end] = names[info[end]]
        copy.addLink(info.pop("node1"), info.pop("node2"), **info)
    return copy, names


class Lab:
    """A running lab network; use as a context manager.

    A node's `role` (a topology parameter) names the session device it runs as (see
    `lab.devices`), so topology files stay loadable by stock `mn --custom`.
    """

    def __init__(
        self,
        topo: Any,
        results: Path,
        tag: str | None = None,
        controller: ControllerApp | None = None,
    ):
        self.topo = topo
        self.paths = LabPaths(Path(results))
        self.tag = tag or f"sl{secrets.token_hex(2)}"
        self.net: Any = None
        self.names: dict[str, str] = {}
        self.supervisor = Supervisor(self.paths.logs, self.tag, lambda node: self.node(node).popen)
        # Commands and processes are the supervisor's (see lab.procs); the lab names nodes.
        self.run = self.supervisor.run
        self.start = self.supervisor.start
        self.stop = self.supervisor.stop
        self.crashed = self.supervisor.crashed
        self.runtime_dir = self.supervisor.runtime_dir
        self._cleanups: list[Callable[[], None]] = []
        self.controller = Controller(self, controller) if controller is not None else None

    # --- lifecycle -------------------------------------------------------------------
    def __enter__(self) -> Lab:
        problems = topology_problems(self.topo)
        if problems:
            raise ConfigError(problems)
        check_host()
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self) -> None:
        from mininet.link import TCLink
        from mininet.log import setLogLevel
        from mininet.net import Mininet
        from mininet.node import OVSSwitch, RemoteController

        # Mininet's own warnings (a remote controller not up yet: it starts after the
        # build, on purpose) are noise here; the lab reports what goes wrong itself.
        setLogLevel("error")
        topo, self.names = _tagged_topo(self.topo, self.tag)
        for name in topo.hosts():
            info = topo.nodeInfo(name)
            if info.get("role") is not None:
                info["cls"] = device_class(info["role"], info.get("cls"))
        if self.controller is None:
            switch = partial(OVSSwitch, datapath="user", failMode="standalone")
            self.net = Mininet(topo=topo, switch=switch, controller=None, link=TCLink, build=False)
            self.net.build()
            self.net.start()
        else:
            switch = partial(OVSSwitch, datapath="user", failMode="secure", protocols="OpenFlow13")
            remote = partial(RemoteController, ip="127.0.0.1", port=self.controller.port)
            self.net = Mininet(topo=topo, switch=switch, controller=remote, link=TCLink, build=False)
            self.net.build()
            self.controller.start()
            self.net.start()
            self.controller.fast_reconnect()
            self.controller.wait_switches()
        for host in self.net.hosts:
            for intf in host.intfList():
                if intf.name != "lo":
                    self.run(host.name, ["ethtool", "-K", intf.name, "tx", "off"])
        for host in self.net.hosts:
            starter = getattr(host, "lab_start", None)
            if starter is not None:
                starter(self)
        log.info("lab %s up: %s", self.tag, ", ".join(sorted(self.names.values())))

    def close(self) -> None:
        """End every process by PID, then remove the network. Safe to call twice."""
        # Ctrl-C during cleanup must not leave half a network behind.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            while self._cleanups:
                try:
                    self._cleanups.pop()()
                except Exception:
                    log.exception("cleanup step failed")
            self.supervisor.close()
            if self.net is not None:
                self.net.stop()
                self.net = None
        finally:
            signal.signal(signal.SIGINT, previous)

    def on_close(self, step: Callable[[], None]) -> None:
        """Run `step` at close, before the processes are stopped (last added, first run)."""
        self._cleanups.append(step)

    # --- cases -------------------------------------------------------------------------
    def devices(self) -> list[Any]:
        """The session devices of this lab (nodes that keep a session table)."""
        return [h for h in self.net.hosts if isinstance(h, SessionDevice)]

    def begin_case(self) -> int:
        """A case starts: every device's table and counters empty. Returns the mark that
        `end_case` takes (what was started before it is not the case's)."""
        for device in self.devices():
            device.reset()
        return len(self.procs)

    def end_case(self, mark: int, ports: range | None = None) -> list[Proc]:
        """A case ends: the processes it started are stopped by PID and, with `ports`, every
        TCP socket of that port block on every host is aborted (RST), so nothing of the case
        is still in flight when the next begins. Returns the stopped processes."""
        ended = self.supervisor.stop_since(mark)
        if ports is not None:
            self.cut(ports)
        return ended

    def cut(self, ports: range) -> None:
        """Abort (ss -K) every TCP socket with a local or remote port in `ports`, everywhere."""
        lo, hi = ports.start, ports.stop - 1
        expr = f"( sport >= :{lo} and sport <= :{hi} ) or ( dport >= :{lo} and dport <= :{hi} )"
        for host in self.net.hosts:
            self.run(host.name, ["ss", "-K", "-t", *expr.split()], check=False)

    # --- the controller ---------------------------------------------------------------
    def port_map(self) -> dict[str, dict[str, Any]]:
        """Each switch (logical name): its dpid and OpenFlow port numbers by peer. A peer is
        named by its interface for hosts (`fw1-in`) and by its logical name for switches."""
        logical = {real: name for name, real in self.names.items()}
        out: dict[str, dict[str, Any]] = {}
        for sw in self.net.switches:
            ports: dict[str, int] = {}
            for intf, number in sw.ports.items():
                link = getattr(intf, "link", None)
                if link is None:
                    continue
                peer = link.intf2 if link.intf1 is intf else link.intf1
                key = logical.get(peer.node.name, peer.name) if peer.node in self.net.switches else peer.name
                ports[key] = int(number)
            out[logical[sw.name]] = {"dpid": int(sw.dpid, 16), "ports": ports}
        return out

    def _controller(self) -> Controller:
        if self.controller is None:
            raise LabError("this lab runs no controller")
        return self.controller

    @property
    def controller_proc(self) -> Proc | None:
        return self.controller.proc if self.controller is not None else None

    def restart_controller(self, timeout: float = 20, **overrides: Any) -> Proc:
        """Restart the controller (its configuration plus `overrides`) and wait until it
        has configured every switch."""
        proc = self._controller().start(**overrides)
        self._controller().wait_switches(timeout)
        return proc

    def logical(self, real: str) -> str:
        return next((name for name, r in self.names.items() if r == real), real)

    # --- nodes and commands ----------------------------------------------------------
    def node(self, name: str) -> Any:
        real = self.names.get(name, name)
        try:
            return self.net[real]
        except KeyError:
            raise ConfigError(f"no node {name!r} in this lab (nodes: {', '.join(self.names)})") from None

    def set_links(self, name: str, up: bool) -> list[str]:
        """Take every link of a node down (a failed box) or up again; returns its interfaces."""
        node = self.node(name)
        changed = []
        for intf in node.intfList():
            link = getattr(intf, "link", None)
            if link is None:
                continue
            for end in (link.intf1, link.intf2):
                end.ifconfig("up" if up else "down")
            changed.append(intf.name)
        return changed

    def link_intf(self, name: str, peer: str) -> tuple[str | None, str]:
        """Where to capture on the link from `name` to `peer`: the namespace (None for a
        switch: the root namespace) and `name`'s interface on that link."""
        node, other = self.node(name), self.node(peer)
        for intf in node.intfList():
            link = getattr(intf, "link", None)
            if link is not None and other in (link.intf1.node, link.intf2.node):
                return (None if node in self.net.switches else name), intf.name
        raise ConfigError(f"no link between {name} and {peer}")

    def ip(self, name: str) -> str:
        return str(self.node(name).IP())

    @property
    def procs(self) -> list[Proc]:
        return self.supervisor.procs

    def wait(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        return wait_until(check, timeout, what)
