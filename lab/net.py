"""`Lab`: one emulated network and everything started in it, removed again on exit.

The Lab builds a Mininet network from a topology with userspace Open vSwitch switches,
turns TX checksum offload off on every host interface (the userspace datapath drops TCP
with offloaded checksums), and owns every process it starts. On exit, normal or not
(exception, Ctrl-C), it ends those processes by PID and removes exactly the namespaces,
links and bridges it created. Switch names carry a tag unique to the run.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from lab.errors import CommandError, ConfigError, LabError, LabTimeout
from lab.wait import wait_until

log = logging.getLogger(__name__)

IFNAME_MAX = 15
# Link options that need netem, which stock Mininet accepts and then silently ignores
# when the kernel lacks it.
NETEM_OPTIONS = ("delay", "jitter", "loss")


@dataclass
class Proc:
    """A process the lab started in a node, with its log file."""

    name: str
    node: str
    argv: list[str]
    popen: subprocess.Popen[bytes]
    log_path: Path
    stopped: bool = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_output(self, pattern: str, timeout: float) -> re.Match[str]:
        """Wait until the process has printed `pattern` (a regex); fail early if it died."""
        regex = re.compile(pattern, re.MULTILINE)

        def ready() -> re.Match[str] | None:
            found = regex.search(self.output())
            if not found and not self.running():
                raise LabError(
                    f"{self.name} on {self.node} exited {self.popen.returncode} before "
                    f"printing /{pattern}/: {self.output().strip()[-300:] or 'no output'}"
                )
            return found

        return wait_until(ready, timeout, f"{self.name} on {self.node} to print /{pattern}/")


@dataclass
class ControllerApp:
    """An os-ken controller app the lab runs for its OpenFlow switches.

    `config` computes the app's configuration from the built (not yet started) lab, so it
    can name switch ports by their OpenFlow numbers.
    """

    module: str
    config: Callable[[Lab], dict[str, Any]]
    name: str = "controller"


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
    for tool in ("mnexec", "ovs-vsctl", "ethtool", "nft", "conntrack", "tcpdump"):
        if shutil.which(tool) is None:
            raise LabError(f"{tool} is not installed: run scripts/bootstrap.sh")
    probe = subprocess.run(["ovs-vsctl", "--timeout=3", "show"], capture_output=True, text=True)
    if probe.returncode != 0:
        raise LabError("Open vSwitch is not running: run scripts/bootstrap.sh (it starts it)")


_netem: bool | None = None


def kernel_has_netem() -> bool:
    """Whether netem qdiscs work here, tried once in a throwaway namespace of our own."""
    global _netem
    if _netem is None:
        ns = f"slnetem{secrets.token_hex(3)}"
        subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
        try:
            for cmd in (
                ["link", "add", "d0", "type", "veth", "peer", "name", "d1"],
                ["link", "set", "d0", "up"],
            ):
                subprocess.run(["ip", "-n", ns, *cmd], check=True, capture_output=True)
            tc = ["tc", "-n", ns, "qdisc", "add", "dev", "d0", "root", "netem", "delay", "1ms"]
            _netem = subprocess.run(tc, capture_output=True).returncode == 0
        finally:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    return _netem


def topology_problems(topo: Any) -> list[str]:
    """What in a Mininet Topo this lab cannot honour, each problem naming the link or node."""
    problems = []
    for name in topo.nodes():
        if not re.fullmatch(r"[a-z][a-z0-9]{0,9}", name):
            problems.append(f"node {name!r}: names are lower-case letters and digits, at most 10")
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
    copy = Topo()
    for node in topo.nodes():
        info = {k: v for k, v in topo.nodeInfo(node).items() if k != "isSwitch"}
        if topo.isSwitch(node):
            digits = re.findall(r"\d+", node)
            info.setdefault("dpid", f"{int(digits[0]) if digits else 1:016x}")
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

    `node_classes` maps a node's `role` (a topology parameter) to the class that runs it,
    so topology files stay loadable by stock `mn --custom`.
    """

    def __init__(
        self,
        topo: Any,
        results: Path,
        node_classes: dict[str, type] | None = None,
        tag: str | None = None,
        controller: ControllerApp | None = None,
    ):
        self.topo = topo
        self.paths = LabPaths(Path(results))
        self.node_classes = node_classes if node_classes is not None else default_node_classes()
        self.tag = tag or f"sl{secrets.token_hex(2)}"
        self.net: Any = None
        self.names: dict[str, str] = {}
        self.procs: list[Proc] = []
        self._cleanups: list[Callable[[], None]] = []
        self.controller = controller
        self.controller_proc: Proc | None = None
        self.of_port = 0

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
        from mininet.node import OVSSwitch

        # Mininet's own warnings (a remote controller not up yet: it starts after the
        # build, on purpose) are noise here; the lab reports what goes wrong itself.
        setLogLevel("error")
        topo, self.names = _tagged_topo(self.topo, self.tag)
        for name in topo.hosts():
            info = topo.nodeInfo(name)
            role = info.get("role")
            if role in self.node_classes:
                info["cls"] = self.node_classes[role]
        if self.controller is None:
            switch = partial(OVSSwitch, datapath="user", failMode="standalone")
            self.net = Mininet(topo=topo, switch=switch, controller=None, link=TCLink, build=False)
            self.net.build()
            self.net.start()
        else:
            from mininet.node import RemoteController

            self.of_port = _free_port()
            switch = partial(OVSSwitch, datapath="user", failMode="secure", protocols="OpenFlow13")
            remote = partial(RemoteController, ip="127.0.0.1", port=self.of_port)
            self.net = Mininet(topo=topo, switch=switch, controller=remote, link=TCLink, build=False)
            self.net.build()
            self.start_controller()
            self.net.start()
            self._fast_reconnect()
            self.wait_switches()
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
            for proc in reversed(self.procs):
                self.stop(proc)
            if self.net is not None:
                self.net.stop()
                self.net = None
        finally:
            signal.signal(signal.SIGINT, previous)

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

    def start_controller(self, **overrides: Any) -> Proc:
        """(Re)start the controller app with its configuration (plus `overrides`)."""
        assert self.controller is not None
        if self.controller_proc is not None:
            self.stop(self.controller_proc)
        config = {**self.controller.config(self), **overrides}
        path = self.paths.root / f"{self.controller.name}-config.json"
        path.write_text(json.dumps(config, indent=1))
        argv = [
            sys.executable,
            "-m",
            "controllers.run",
            self.controller.module,
            "--port",
            str(self.of_port),
            "--config",
            str(path),
        ]
        self.controller_proc = self.start(None, argv, self.controller.name, ready=r"controller listening")
        return self.controller_proc

    def restart_controller(self, timeout: float = 20, **overrides: Any) -> Proc:
        proc = self.start_controller(**overrides)
        self.wait_switches(timeout)
        return proc

    def _fast_reconnect(self) -> None:
        # OVS backs off up to 8 s between reconnects; a restarted controller is back in 1 s.
        for sw in self.net.switches:
            record = _controller_record(sw.name)
            if record:
                subprocess.run(["ovs-vsctl", "set", "controller", record, "max_backoff=1000"], check=True)

    def wait_switches(self, timeout: float = 20) -> None:
        """Wait until the controller reports every switch configured; name those missing."""
        assert self.controller_proc is not None
        proc = self.controller_proc
        expected = {int(sw.dpid, 16): self.logical(sw.name) for sw in self.net.switches}

        def missing() -> dict[int, str]:
            if not proc.running():
                raise LabError(
                    f"the controller exited {proc.popen.returncode}: {proc.output().strip()[-400:]}"
                )
            text = proc.output()
            ready = {int(m) for m in re.findall(r'"switch_ready".*?"dpid": (\d+)', text)}
            return {d: n for d, n in expected.items() if d not in ready}

        deadline = time.monotonic() + timeout
        while missing():
            if time.monotonic() > deadline:
                waiting = missing()
                real = {v: k for k, v in self.names.items()}
                never = sorted(n for n in waiting.values() if not self._connected(real.get(n, n)))
                unready = sorted(n for n in waiting.values() if n not in never)
                problems = []
                if never:
                    problems.append(f"switch {', '.join(never)} never connected to the controller")
                if unready:
                    problems.append(
                        f"switch {', '.join(unready)} connected but the controller never configured it"
                    )
                raise LabTimeout(f"{'; '.join(problems)} within {timeout:g} s (log: {proc.log_path})")
            time.sleep(0.05)

    @staticmethod
    def _connected(bridge: str) -> bool:
        """What Open vSwitch says of the bridge's controller connection."""
        record = _controller_record(bridge)
        return bool(record) and _ovs("get", "controller", record, "is_connected") == "true"

    def logical(self, real: str) -> str:
        return next((name for name, r in self.names.items() if r == real), real)

    def on_close(self, step: Callable[[], None]) -> None:
        """Run `step` at close, before the processes are stopped (last added, first run)."""
        self._cleanups.append(step)

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

    def ip(self, name: str) -> str:
        return str(self.node(name).IP())

    def run(self, node: str, argv: Sequence[str], timeout: float = 30, check: bool = True) -> str:
        """Run a command in a node's namespace to completion; its output (stdout+stderr)."""
        popen = self.node(node).popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            out, _ = popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.communicate()
            raise LabTimeout(f"`{' '.join(argv)}` on {node} still running after {timeout:g} s") from None
        text = out.decode(errors="replace")
        if check and popen.returncode != 0:
            raise CommandError(argv, popen.returncode, text)
        return text

    def start(
        self,
        node: str | None,
        argv: Sequence[str],
        name: str,
        ready: str | None = None,
        ready_timeout: float = 10,
    ) -> Proc:
        """Start a long-running process in a node (None: the root namespace, for the
        controller on loopback); it is stopped by PID at close.

        `ready` is a regex its output must show before this returns (the event it is up).
        """
        path = self.paths.logs / f"{name}.log"
        with open(path, "wb") as out:
            if node is None:
                popen = subprocess.Popen(
                    list(argv),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            else:
                popen = self.node(node).popen(
                    list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                )
        proc = Proc(name=name, node=node or "root namespace", argv=list(argv), popen=popen, log_path=path)
        self.procs.append(proc)
        if ready is not None:
            proc.wait_for_output(ready, ready_timeout)
        return proc

    def stop(self, proc: Proc, sig: int = signal.SIGTERM, timeout: float = 5) -> int | None:
        """End a process by PID: `sig`, then SIGKILL if it outlives `timeout`."""
        if proc.stopped:
            return proc.popen.returncode
        proc.stopped = True
        if proc.running():
            try:
                proc.popen.send_signal(sig)
                proc.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait(5)
            except ProcessLookupError:
                pass
        return proc.popen.returncode

    def crashed(self) -> list[Proc]:
        """Processes that ended without being asked to."""
        return [p for p in self.procs if not p.stopped and not p.running()]

    def wait(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        return wait_until(check, timeout, what)


def _ovs(*args: str) -> str:
    """An ovs-vsctl query's answer (empty when it fails)."""
    result = subprocess.run(["ovs-vsctl", "--timeout=3", *args], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else ""


def _controller_record(bridge: str) -> str:
    """The UUID of the bridge's controller record, or empty."""
    return _ovs("get", "bridge", bridge, "controller").strip("[]")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def default_node_classes() -> dict[str, type]:
    from lab.nodes import Firewall

    return {"firewall": Firewall}
