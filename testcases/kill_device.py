"""The kill series' device the lab did not build (issue 26, S6): one `s6_device.sh`
namespace per killed run, brought up and taken down by its owner's script, and what the
machine must show of it after the run was killed and `sessionlab clean` ran.

The lab plugs veths into the device (`--netns NAME --port inside=in0 --port
outside=out0`) and reads its table over SSH; it never configures, restarts or cleans it.
So after `clean`:

- its namespace is there with its own interfaces, addresses, ruleset and sysctls exactly
  as before the run (read before the lab is started: the lab's plugged ends, in0 and
  out0, are not in that reading and must be gone);
- no veth of the lab is attached to it: no interface of the root namespace whose peer is
  in the device's namespace;
- the processes its script started (port agent, sshd, management relay; PIDs with start
  times in its state folder) still run, and its sshd answers over the management relay;
- and afterwards its owner's `s6_device.sh down` removes it (namespace, state, processes).

Or the device's ports are interfaces of the root namespace (a VM's taps: `--port
inside=IFACE` without `--netns`): its owner makes a veth per port into its namespace and
its port agent addresses them, the lab attaches the root ends to its switches as
they are. Then in0 and out0 are the device's own, and after `clean` each root end must be
there, attached to nothing (no master, no Open vSwitch port) and otherwise as it was; the
owner deletes them before `down`.

Each device has a name of its own (`s6k<pid>-<n>`), an SSH port of its own and a key made
for it; the known_hosts line is what `up` prints, as testcases/test_s6_external_device.py
takes it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.records import alive

SCRIPT = Path(__file__).with_name("s6_device.sh")
STATE = Path("/run/s6-device")  # s6_device.sh's RUN_DIR
PLUGGED = ("in0", "out0")  # the names the lab gives its veth ends in the device (--port)
# what s6_device.sh sets in its namespace, part of the configuration the lab must not touch
SYSCTLS = (
    "net.ipv4.ip_forward",
    "net.netfilter.nf_conntrack_tcp_timeout_established",
    "net.netfilter.nf_conntrack_udp_timeout",
    "net.netfilter.nf_conntrack_udp_timeout_stream",
    "net.netfilter.nf_conntrack_tcp_loose",
)
_SERIAL = itertools.count(1)


def _run(argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    """A TCP port of 127.0.0.1 free now: the device's management relay listens there."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class DeviceState:
    """What the device's owner configured, as read from its namespace."""

    links: list[dict[str, Any]]  # `ip -j link show`
    addrs: list[dict[str, Any]]  # `ip -j addr show`
    ruleset: str  # sha256 of `nft list ruleset`
    sysctls: dict[str, str]
    ports: list[dict[str, Any]] = field(default_factory=list)  # its root-namespace ports' `ip -j link`


def changes(before: DeviceState, after: DeviceState, plugged: Iterable[str] = PLUGGED) -> list[str]:
    """How `after` differs from `before` (read before the lab plugged anything), one line
    each: a plugged end of the lab still there, an interface appeared, gone or changed
    (link or addresses), the ruleset or a sysctl changed."""
    found = []
    plugged = set(plugged)
    links_before = {link["ifname"]: link for link in before.links}
    links_after = {link["ifname"]: link for link in after.links}
    addrs_before = {link["ifname"]: link.get("addr_info", []) for link in before.addrs}
    addrs_after = {link["ifname"]: link.get("addr_info", []) for link in after.addrs}
    for name in sorted(links_after.keys() - links_before.keys()):
        what = "the lab's plugged veth end" if name in plugged else "an interface the device did not have"
        found.append(f"{what} {name} is in the device")
    for name in sorted(links_before.keys() - links_after.keys()):
        found.append(f"the device's interface {name} is gone")
    for name in sorted(links_before.keys() & links_after.keys()):
        keys = sorted(
            key
            for key in links_before[name].keys() | links_after[name].keys()
            if links_before[name].get(key) != links_after[name].get(key)
        )
        if keys:
            found.append(f"the device's interface {name} changed: {', '.join(keys)}")
        if addrs_before.get(name) != addrs_after.get(name):
            found.append(f"the device's interface {name}'s addresses changed: {addrs_after.get(name)}")
    ports_before = {link["ifname"]: link for link in before.ports}
    ports_after = {link["ifname"]: link for link in after.ports}
    for name in sorted(ports_before.keys() - ports_after.keys()):
        found.append(f"the device's root-namespace port {name} is gone")
    for name in sorted(ports_before.keys() & ports_after.keys()):
        keys = sorted(
            key
            for key in ports_before[name].keys() | ports_after[name].keys()
            if ports_before[name].get(key) != ports_after[name].get(key)
        )
        if keys:
            found.append(f"the device's root-namespace port {name} changed: {', '.join(keys)}")
    if before.ruleset != after.ruleset:
        found.append("the device's nftables ruleset changed")
    found += [
        f"the device's {key} changed: {before.sysctls.get(key)} -> {after.sysctls.get(key)}"
        for key in sorted(before.sysctls.keys() | after.sysctls.keys())
        if before.sysctls.get(key) != after.sysctls.get(key)
    ]
    return found


def netns_id(name: str, namespaces: list[dict[str, Any]]) -> int | None:
    """The root namespace's id for the namespace `name` (`ip -j netns list`), or None."""
    for ns in namespaces:
        if ns.get("name") == name and "id" in ns:
            return int(ns["id"])
    return None


def attached_to(nsid: int | None, root_links: list[dict[str, Any]]) -> list[str]:
    """The root namespace's interfaces (`ip -j link show`) whose peer is in the namespace
    with id `nsid`: veths plugged into it."""
    if nsid is None:
        return []
    return sorted(link["ifname"] for link in root_links if link.get("link_netnsid") == nsid)


def parse_pids(text: str) -> list[tuple[int, int | None, str]]:
    """s6_device.sh's `pids` file (`PID START WHAT` a line; START "gone" if it ended at
    once) as (pid, start time, what)."""
    found = []
    for line in text.splitlines():
        parts = line.split(maxsplit=2)
        if len(parts) == 3 and parts[0].isdigit():
            found.append((int(parts[0]), int(parts[1]) if parts[1].isdigit() else None, parts[2]))
    return found


@dataclass
class OwnedDevice:
    """One s6_device.sh device, up for one killed run: its name, SSH port and files."""

    name: str
    port: int
    folder: Path  # its identity and known_hosts (the engineer's side, not the device's)
    processes: list[tuple[int, int | None, str]] = field(default_factory=list)
    root_ports: dict[str, str] = field(default_factory=dict)  # its root-namespace ports: root end -> far end

    @property
    def identity(self) -> Path:
        return self.folder / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.folder / "known_hosts"

    def fields(self) -> Mapping[str, str]:
        """What the selection's arguments name: {name}, {port}, {identity}, {known_hosts},
        and with root-namespace ports {inside}, {outside}."""
        ends = list(self.root_ports) or ["", ""]
        return {
            "name": self.name,
            "port": str(self.port),
            "identity": str(self.identity),
            "known_hosts": str(self.known_hosts),
            "inside": ends[0],
            "outside": ends[1],
        }

    @classmethod
    def up(cls, folder: Path, root_ports: bool = False) -> OwnedDevice:
        """A new device, as its owner brings it up (a key made for it, the known_hosts line
        `up` prints; with `root_ports`, a veth per port from the root namespace into it,
        up and addressed); RuntimeError with the tools' words if it does not come up."""
        device = cls(f"s6k{os.getpid()}-{next(_SERIAL)}", free_port(), folder)
        folder.mkdir(parents=True, exist_ok=True)
        made = _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(device.identity)])
        if made.returncode != 0:
            raise RuntimeError(f"ssh-keygen: {made.stderr.strip()}")
        up = _run(["bash", str(SCRIPT), "up", device.name, f"{device.identity}.pub", str(device.port)], 60)
        if up.returncode != 0:
            raise RuntimeError(f"s6_device.sh up {device.name}: {up.stderr.strip()[-300:]}")
        device.known_hosts.write_text(up.stdout)
        device.processes = parse_pids((STATE / device.name / "pids").read_text())
        if root_ports:
            device.root_ports = {f"{device.name}{end[0]}": end for end in PLUGGED}
            for root, far in device.root_ports.items():
                steps = [
                    ["ip", "link", "add", root, "type", "veth", "peer", "name", far, "netns", device.name],
                    ["ip", "link", "set", root, "up"],
                ]
                for step in steps:
                    done = _run(step)
                    if done.returncode != 0:
                        device.down()
                        raise RuntimeError(f"{' '.join(step)}: {done.stderr.strip()}")
            if not device.addressed():
                device.down()
                raise RuntimeError(f"{device.name}: its port agent did not address in0 and out0 in 5 s")
        return device

    def state(self) -> DeviceState:
        """Its interfaces, addresses, ruleset and sysctls now (read in its namespace)."""
        inside = ["ip", "netns", "exec", self.name]
        links = json.loads(_run(["ip", "-n", self.name, "-j", "link", "show"]).stdout or "[]")
        addrs = json.loads(_run(["ip", "-n", self.name, "-j", "addr", "show"]).stdout or "[]")
        ruleset = _run([*inside, "nft", "list", "ruleset"]).stdout
        sysctls = _run([*inside, "sysctl", "-n", *SYSCTLS]).stdout.split()
        ports = [
            link
            for root in self.root_ports
            for link in json.loads(_run(["ip", "-j", "link", "show", "dev", root]).stdout or "[]")
        ]
        return DeviceState(
            links,
            addrs,
            hashlib.sha256(ruleset.encode()).hexdigest(),
            dict(zip(SYSCTLS, sysctls, strict=False)),
            ports,
        )

    def addressed(self, timeout: float = 5) -> bool:
        """Wait (bounded) until the device's port agent has given in0 and out0 their
        addresses (10.0.1.1, 10.0.2.1), as it does for ports that appear."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shown = _run(["ip", "-n", self.name, "-4", "-o", "addr", "show"]).stdout
            if " 10.0.1.1/24 " in shown and " 10.0.2.1/24 " in shown:
                return True
            time.sleep(0.1)
        return False

    def switched(self) -> list[str]:
        """Its root-namespace ports that are an Open vSwitch port now (the lab's switch)."""
        ask = ["ovs-vsctl", "--timeout=5", "port-to-br"]
        return [root for root in self.root_ports if _run([*ask, root]).returncode == 0]

    def plugged(self) -> bool:
        """Whether a veth end of the lab is in the device now (with root-namespace ports:
        whether one of them is a port of the lab's switch)."""
        if self.root_ports:
            return bool(self.switched())
        names = _run(["ip", "-n", self.name, "-o", "link", "show"]).stdout
        return any(f": {name}@" in names or f": {name}:" in names for name in PLUGGED)

    def attached(self) -> list[str]:
        """Root-namespace interfaces whose peer is in the device: the lab's veths, left."""
        namespaces = json.loads(_run(["ip", "-j", "netns", "list"]).stdout or "[]")
        root = json.loads(_run(["ip", "-j", "link", "show"]).stdout or "[]")
        ends = attached_to(netns_id(self.name, namespaces), root)
        return [name for name in ends if name not in self.root_ports]  # the owner's own are not the lab's

    def ended(self) -> list[str]:
        """The processes its script started that no longer run."""
        return [f"{what} (pid {pid})" for pid, started, what in self.processes if not alive(pid, started)]

    def answers(self) -> str:
        """'answered' if its sshd answers over the management relay as its owner's key
        and host key say, else what ssh said."""
        argv = ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"]
        argv += ["-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes"]
        argv += ["-o", "ConnectTimeout=10", "-i", str(self.identity), "-p", str(self.port), "root@127.0.0.1"]
        try:
            done = _run([*argv, "true"], 30)
        except subprocess.TimeoutExpired:
            return "ssh did not end within 30 s"
        said = " ".join(done.stderr.split())[-200:]
        return "answered" if done.returncode == 0 else f"ssh exited {done.returncode}: {said}"

    def check(self, before: DeviceState) -> tuple[dict[str, Any], list[str]]:
        """After `clean`: what was read of the device, and what is wrong (one line each)."""
        exists = self.name in _run(["ip", "netns", "list"]).stdout.split()
        if not exists:
            return {"namespace": "gone"}, [f"device {self.name}: its namespace is gone"]
        wrong = changes(before, self.state(), () if self.root_ports else PLUGGED)
        wrong += [f"the lab's veth {name} is attached to the device" for name in self.attached()]
        wrong += [f"its port {name} is still a port of an Open vSwitch bridge" for name in self.switched()]
        wrong += [f"the device's {what} ended" for what in self.ended()]
        ssh = self.answers()
        if ssh != "answered":
            wrong.append(f"the device's sshd: {ssh}")
        seen = {"namespace": "kept", "processes running": len(self.processes) - len(self.ended()), "ssh": ssh}
        return seen, [f"device {self.name}: {w}" for w in wrong]

    def down(self) -> list[str]:
        """Its owner's `s6_device.sh down` (its root-namespace ports deleted first), then
        what of it is still there (one line each)."""
        left = []
        for root in self.root_ports:
            gone = _run(["ip", "link", "del", root])
            if gone.returncode != 0:
                left.append(f"its port {root} (ip link del: {gone.stderr.strip()})")
        done = _run(["bash", str(SCRIPT), "down", self.name], 60)
        if done.returncode != 0:
            left.append(f"down exited {done.returncode}: {done.stderr.strip()[-200:]}")
        if self.name in _run(["ip", "netns", "list"]).stdout.split():
            left.append("its namespace")
        if (STATE / self.name).exists():
            left.append(f"its state {STATE / self.name}")
        left += [f"{what} (pid {pid})" for pid, started, what in self.processes if alive(pid, started)]
        return [f"device {self.name} after down: {what}" for what in left]
