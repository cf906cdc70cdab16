"""`Lab`: one emulated network and everything started in it, removed again on exit.

The Lab builds a Mininet network from a topology with userspace Open vSwitch switches,
turns TX checksum offload off on every host interface (the userspace datapath drops TCP
with offloaded checksums), and owns every process it starts. On exit, normal or not
(exception, Ctrl-C), it ends those processes by PID and removes exactly the namespaces,
links and bridges it created. Switch names carry a tag unique to the run.

The build and the lifecycle only; beside it, one job per module: the topology checked and
rewritten for the build (`lab.rewrite`), processes (`lab.procs`), impaired links while the
lab runs (`lab.impaired`), the controller's lifecycle (`lab.controller`) and its port map
(`lab.portmap`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from lab import preflight
from lab.controller import Controller, ControllerApp
from lab.deaths import Death, deaths_message
from lab.devices import SessionDevice, device_class
from lab.devices.base import node_devices
from lab.errors import ConfigError, LabError, ProcessDied
from lab.impaired import LinkImpairments
from lab.links import Element, ImpairedLink, asks_impairment
from lab.neighbours import lab_mininet
from lab.outside import seal_switch_ports
from lab.ovs import remove_bridges
from lab.portmap import port_map
from lab.procs import Proc, Supervisor
from lab.records import Record, alive, descendants, start_time
from lab.results import TOPOLOGY_DATA
from lab.rewrite import kernel_has_netem, tagged_topo, topology_problems
from lab.wait import unwatch, wait_until, watch

log = logging.getLogger(__name__)


@dataclass
class LabPaths:
    """Where a lab writes: logs, captures, rendered configuration."""

    root: Path
    logs: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root = self.root.resolve()
        self.logs = self.root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)


class Lab:
    """A running lab network; use as a context manager.

    A node's `role` (a topology parameter) names the session device it runs as (see
    `lab.devices`), so topology files stay loadable by stock `mn --custom`.
    """

    def __init__(
        self,
        topo: Any,
        results: str | Path,
        *,
        tag: str | None = None,
        controller: ControllerApp | None = None,
        netem: bool | None = None,
        on_build: Callable[[Lab], None] | None = None,
    ) -> None:
        self.topo = topo
        self.netem = netem  # impair links with netem; None: where the kernel has it
        # Called once Mininet has built the network, before the switches start: attach
        # interfaces the lab did not create (a device under test's ports), say.
        self.on_build = on_build
        self.paths = LabPaths(Path(results))
        self.tag = tag or f"sl{secrets.token_hex(2)}"
        self.net: Any = None
        self.names: dict[str, str] = {}
        self.supervisor = Supervisor(self.paths.logs, self.tag, lambda node: self.node(node).popen)
        # Commands and processes are the supervisor's (see lab.procs); the lab names nodes.
        self.run = self.supervisor.run
        self.start = self.supervisor.start
        self.stop = self.supervisor.stop
        self.await_ready = self.supervisor.await_ready
        self.crashed = self.supervisor.crashed
        self.runtime_dir = self.supervisor.runtime_dir
        self._cleanups: list[Callable[[], None]] = []
        self.controller = Controller(self, controller) if controller is not None else None
        self.impairments = LinkImpairments(self.paths.root)
        self.record: Record | None = None  # what this lab created, for `sessionlab clean`
        self.phases: dict[str, float] = {}  # seconds per step of its start and stop
        self._deaths_from = 0  # the running case's deaths: supervisor.deaths from here

    # --- lifecycle -------------------------------------------------------------------
    def __enter__(self) -> Lab:
        problems = topology_problems(self.topo)
        if problems:
            raise ConfigError(problems)
        preflight.check_host()
        try:
            self._build()
        except BaseException:
            # The build's own error (or Ctrl-C) is what the user must see, not one from
            # removing a half-built network.
            try:
                self.close()
            except Exception:
                log.exception("removing the half-built lab %s failed", self.tag)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self) -> None:
        from mininet.link import TCLink
        from mininet.log import setLogLevel
        from mininet.node import OVSSwitch, RemoteController

        Mininet = lab_mininet()  # noqa: N806 - a class

        # Mininet's own warnings (a remote controller not up yet: it starts after the
        # build, on purpose) are noise here; the lab reports what goes wrong itself.
        setLogLevel("error")
        # Impaired links get netem where the kernel has it, else an element of ours.
        # What this lab is about to create outside its namespaces, written down first.
        self.record = self.supervisor.record = Record(self.tag)
        self.record.set_link_prefix(self.tag)
        if self.netem is None:
            self.netem = kernel_has_netem(self.record)
        topo, self.names = tagged_topo(self.topo, self.tag, self.impairments.links, self.netem)
        self.record.add_bridges(list(topo.switches()))
        for name in topo.hosts():
            info = topo.nodeInfo(name)
            if info.get("role") is not None:
                info["cls"] = device_class(info["role"], info.get("cls"))
        if self.controller is None:
            switch = partial(OVSSwitch, datapath="user", failMode="standalone")
            self.net = Mininet(topo=topo, switch=switch, controller=None, link=TCLink, build=False)
            with self._phase("mininet build"):
                self._build_net()
                self._built()
            with self._phase("mininet start"):
                self.net.start()
        else:
            switch = partial(OVSSwitch, datapath="user", failMode="secure", protocols="OpenFlow13")
            remote = partial(RemoteController, ip="127.0.0.1", port=self.controller.port)
            self.net = Mininet(topo=topo, switch=switch, controller=remote, link=TCLink, build=False)
            self.controller.spawn()  # loads os-ken while Mininet builds
            with self._phase("mininet build"):
                self._build_net()
                self._built()
            with self._phase("controller start to every switch configured"):
                self.controller.start()
                self.net.start()
                self.controller.wait_switches()
            self.controller.fast_reconnect()  # for restarts (restart_controller), not for this one
        with self._phase("TX checksum offload off"):
            for host in self.net.hosts:
                for intf in host.intfList():
                    if intf.name != "lo":
                        self.run(host.name, ["ethtool", "-K", intf.name, "tx", "off"])
        with self._phase("devices and impairments"):
            self.impairments.start(self, topo)
            for host in self.net.hosts:
                starter = getattr(host, "lab_start", None)
                if starter is not None:
                    starter(self)
        # The lab as data (roles, addresses) beside its logs: the report draws it. Drawing it
        # here cost more than Mininet's own start (0.27 s for s1, 4 s for 100 hosts).
        with self._phase("topology description"):
            described = {"title": f"topology ({type(self.topo).__name__})", **self.describe()}
            (self.paths.root / TOPOLOGY_DATA).write_text(json.dumps(described, indent=1))
        log.info("lab %s up: %s", self.tag, ", ".join(sorted(self.names.values())))

    @contextlib.contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        """Time one step of the lab's start or stop into `phases` (seconds; benchmarks read it)."""
        started = time.monotonic()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.monotonic() - started

    def _built(self) -> None:
        # The switches' ports are the lab's interfaces in the root namespace: with IPv6 on
        # them its kernel sends router solicitations and MLD reports into the lab from their
        # link-local addresses (lab/outside.py; run 20261202-115902).
        seal_switch_ports(self.net.switches)
        if self.on_build is not None:
            self.on_build(self)

    def _build_net(self) -> None:
        """Mininet's build; each node's shell (a process per node) goes into the record."""
        try:
            self.net.build()
        finally:
            shells = {n.pid: f"shell of {n.name}" for n in self.net.values() if getattr(n, "pid", None)}
            if self.record is not None:
                self.record.add_processes(shells)

    def close(self) -> None:
        """End every process by PID, then remove the network. Safe to call twice."""
        # Ctrl-C during cleanup must not leave half a network behind.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        unwatch(self.check_processes)
        try:
            while self._cleanups:
                try:
                    self._cleanups.pop()()
                except Exception:
                    log.exception("cleanup step failed")
            self.supervisor.close()
            if self.net is not None:
                # A node interrupted in a command (Ctrl-C during the build) still waits for
                # its output; Mininet refuses to send it another (its stop does).
                for node in self.net.values():
                    if getattr(node, "waiting", False):
                        node.sendInt()
                        node.waiting = False
                self._end_node_commands()
                with self._phase("bridges removed"):
                    remove_bridges(s.name for s in self.net.switches)
                with self._phase("mininet stop"):
                    self.net.stop()
                self.net = None
            if self.record is not None:
                self.record.close()
                self.record = None
        finally:
            signal.signal(signal.SIGINT, previous)

    def _end_node_commands(self) -> None:
        """End what the nodes' shells still run (a command a case was waiting on when it
        was interrupted: Mininet ends the shell, and a `ping -c 5000` it ran went on,
        reparented; found by testcases/kill_series.py). The lab's own processes have
        stopped by now; what is left under a shell is a node's command."""
        shells = {n.pid for n in self.net.values() if getattr(n, "pid", None)}
        stray = {pid: start_time(pid) for pid in descendants(shells)}
        for pid, started in stray.items():
            if alive(pid, started):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if stray:
            log.info("ended %d command(s) the nodes' shells still ran", len(stray))

    def on_close(self, step: Callable[[], None]) -> None:
        """Run `step` at close, before the processes are stopped (last added, first run)."""
        self._cleanups.append(step)

    # --- cases -------------------------------------------------------------------------
    def devices(self) -> list[SessionDevice]:
        """The session devices of this lab: every device each node holds (a node may hold
        several: lb1 is an L4 balancer, an ADC, a VRRP node and a sync peer)."""
        return [device for host in self.net.hosts for device in node_devices(host)]

    def begin_case(self) -> int:
        """A case starts: every device as the lab's standing configuration left it, its
        table and counters empty (`SessionDevice.reset`); from now until `end_case`, every
        wait raises ProcessDied as soon as a daemon of this lab has ended on its own.
        Returns the mark that `end_case` takes (what was started before it is not the case's).
        A node holding devices resets as its class says (the balancer also forgets, and
        undoes, the last case's ADC and keepalived, which `devices()` lists only running)."""
        for host in self.net.hosts:
            held = node_devices(host)
            reset = getattr(host, "reset", None) if held else None
            if callable(reset):
                reset()
            else:
                for device in held:
                    device.reset()
        self.supervisor.case_mark = len(self.procs)
        self._deaths_from = len(self.supervisor.deaths)
        watch(self.check_processes)
        return len(self.procs)

    def check_processes(self) -> None:
        """Raise ProcessDied naming the daemons of this lab that ended on their own since
        the last check (each is raised once; `case_deaths` lists them all)."""
        new = self.supervisor.notice()
        if new:
            raise ProcessDied(deaths_message(new), new)

    def idle_deaths(self) -> list[Death]:
        """The processes that died while no case ran (after the last case, in a module
        fixture): every one the lab's, not a case's. For the plugin, before `begin_case`."""
        self.supervisor.case_mark = len(self.procs)
        known = len(self.supervisor.deaths)
        self.supervisor.notice(everyone=True)
        return self.supervisor.deaths[known:]

    def case_deaths(self) -> list[Death]:
        """The processes that died during the running case: daemons that ended on their
        own (raised or not) and any other process that ended unasked and was not collected."""
        self.supervisor.notice(everyone=True)
        return self.supervisor.deaths[self._deaths_from :]

    def end_case(self, mark: int, ports: range | None = None) -> list[Proc]:
        """A case ends: the processes it started are stopped by PID and, with `ports`, every
        TCP socket of that port block on every host is aborted (RST), so nothing of the case
        is still in flight when the next begins. Returns the stopped processes."""
        unwatch(self.check_processes)
        ended = self.supervisor.stop_since(mark)
        if ports is not None:
            self.cut(ports)
        return ended

    def cut(self, ports: range) -> None:
        """Abort (ss -K) every TCP socket with a local or remote port in `ports`, everywhere:
        connected ones and half-open ones (a server's SYN_RECV, which resends its SYN-ACK
        for a minute: after a flood from clients that never answer)."""
        lo, hi = ports.start, ports.stop - 1
        expr = f"( sport >= :{lo} and sport <= :{hi} ) or ( dport >= :{lo} and dport <= :{hi} )"
        states = ["state", "connected", "state", "syn-recv"]
        for host in self.net.hosts:
            self.run(host.name, ["ss", "-K", "-t", *states, *expr.split()], check=False)

    # --- impaired links (lab.impaired) ---------------------------------------------------
    @property
    def impaired(self) -> list[ImpairedLink]:
        """The links whose impairments the lab sets (named in the topology)."""
        return self.impairments.links

    @property
    def elements(self) -> list[Element]:
        """The impairment elements of this lab (kernels without netem)."""
        return self.impairments.elements

    def impaired_link(self, a: str, b: str) -> tuple[ImpairedLink, bool]:
        """The impaired link between `a` and `b`, and whether `a` is its side a."""
        return self.impairments.find(a, b)

    def impair(self, a: str, b: str, one_way: bool = False, **options: Any) -> None:
        """Change a link's impairments while the lab runs, Mininet-style options
        (delay="10ms", loss=1, ...): both directions, or with `one_way` only from a to b."""
        self.impairments.impair(a, b, one_way, **options)

    def links_during(self, start: float, end: float) -> dict[str, list[dict[str, Any]]]:
        """Each impaired link's settings from `start` to `end` (see `ImpairedLink.during`)."""
        return self.impairments.during(start, end)

    # --- the controller ---------------------------------------------------------------
    def port_map(self) -> dict[str, dict[str, Any]]:
        """Each switch (logical name): its dpid and OpenFlow port numbers by peer (see
        `lab.portmap`)."""
        return port_map(self.net, self.names, self.impairments.beyond)

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
    def describe(self) -> dict[str, Any]:
        """The running topology as data for a drawing: nodes (logical names) with their kind,
        device role and addresses, and links (impaired ones marked)."""
        nodes = []
        for name in self.topo.nodes():
            node = self.node(name)
            kind = "switch" if self.topo.isSwitch(name) else "host"
            addresses = [f"{i.IP()}/{i.prefixLen}" for i in node.intfList() if i.name != "lo" and i.IP()]
            role = self.topo.nodeInfo(name).get("role")
            nodes.append({"name": name, "kind": kind, "role": role, "addresses": addresses})
        links = [
            {"a": a, "b": b, "impaired": asks_impairment(info)}
            for a, b, info in self.topo.links(withInfo=True)
        ]
        return {"nodes": nodes, "links": links}

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

    def set_rate(self, name: str, peer: str, mbit: float) -> str:
        """Change the rate limit of `name`'s end of its link to `peer` (a link built with
        `bw`: TCLink's HTB class 5:1) while the lab runs; returns the interface. tc
        directly: Mininet's own reconfiguration turns TX checksum offload back on."""
        namespace, intf = self.link_intf(name, peer)
        rate = f"{mbit:g}Mbit"
        self.run(namespace, ["tc", "class", "change", "dev", intf, "parent", "5:", "classid", "5:1", "htb",
                        "rate", rate, "ceil", rate])  # fmt: skip
        return intf

    def link_intf(self, name: str, peer: str) -> tuple[str | None, str]:
        """Where to capture on the link from `name` to `peer`: the namespace (None for a
        switch: the root namespace) and `name`'s interface on that link (towards the
        impairment element, where the link has one)."""
        node, other = self.node(name), self.node(peer)
        for intf in node.intfList():
            link = getattr(intf, "link", None)
            if (
                link is not None
                and self.impairments.beyond(link.intf2 if link.intf1 is intf else link.intf1).node is other
            ):
                return (None if node in self.net.switches else name), intf.name
        raise ConfigError(f"no link between {name} and {peer}")

    def ip(self, name: str) -> str:
        return str(self.node(name).IP())

    @property
    def procs(self) -> list[Proc]:
        return self.supervisor.procs

    def wait(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        return wait_until(check, timeout, what)
