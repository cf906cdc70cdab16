"""Attaching a device the lab did not build: what the user names, checked, and the ports
plugged into the lab's switches.

Two ways to name the device's ports (each a role: `inside`, `outside`):

- `--port inside=IFACE --port outside=IFACE`: interfaces of the root namespace (a VM's
  second NIC, the tap of a local VM). Each must exist, must not be loopback, and must not
  be in use: enslaved to a bridge or bond (it has a master), a port of an Open vSwitch
  bridge, an interface a lab created, or carrying an address in the lab's ranges.
- `--netns NAME --port inside=in0 --port outside=out0`: a network namespace someone set
  up (testcases/s6_device.sh is one). The lab creates one veth pair per port, the far end
  moved into NAME under the user's name (up, no address: the lab never configures the
  device); the root-side ends are what it attaches. The namespace must exist and the names
  must be free there.

Either way the lab's switches get root-namespace interfaces, `attach_intfs` adds one to a
switch (Mininet's `Intf`). The lab creates nothing else and never touches the device's
namespace beyond its own veth ends: `unplug` deletes exactly the veths `plug_netns` made,
and their root-side names start with the lab's link prefix (`lab.records.Record`), so
`sessionlab clean` removes them after a killed run, and never the device.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lab.attacks import LAB_NETWORK
from lab.config import checks
from lab.errors import CommandError, ConfigError, LabError
from lab.procs import host_run
from lab.records import LAB_MADE, Record

log = logging.getLogger(__name__)

ROLES = ("inside", "outside")
IFNAME_MAX = 15
# How the root-side end of each role's veth is named after the lab's link prefix: a "-"
# follows the prefix, which no switch name (letters and digits) has, so it never collides.
ROOT_SUFFIX = {"inside": "in", "outside": "out"}


@dataclass(frozen=True)
class Attachment:
    """A device's ports as the user named them: role -> interface, in the root namespace
    (`netns` None) or the names the lab gives its veth ends inside `netns`."""

    ports: Mapping[str, str]
    netns: str | None = None

    def __str__(self) -> str:
        ports = ", ".join(f"{role}={name}" for role, name in self.ports.items())
        return f"{ports} in netns {self.netns}" if self.netns else ports


def parse_ports(values: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """`--port ROLE=IFACE` values as {role: interface}, and every problem with them (a bad
    form, an unknown or repeated role, a missing role, one interface for both)."""
    ports: dict[str, str] = {}
    problems = []
    named = set()  # roles named at all, even in a malformed value (not then "missing" too)
    for value in values:
        role, sep, name = value.partition("=")
        named.add(role)
        if not sep or not name:
            problems.append(f"--port {value}: expected ROLE=IFACE (roles: {', '.join(ROLES)})")
        elif role not in ROLES:
            problems.append(f"--port {value}: no role {role!r} (roles: {', '.join(ROLES)})")
        elif role in ports:
            problems.append(f"--port {value}: {role} given twice ({ports[role]} and {name})")
        else:
            ports[role] = name
    problems += [f"--port {role}=IFACE missing" for role in ROLES if role not in named]
    if len(ports) == len(ROLES) and len(set(ports.values())) == 1:
        problems.append(f"--port: {ports['inside']} is named for both inside and outside")
    return ports, problems


# --- reading what is there (read-only) --------------------------------------------------
def read_links(netns: str | None = None) -> list[dict[str, Any]]:
    """`ip -j addr show` of the root namespace (or of `netns`): links with their addresses."""
    argv = ["ip", "-j", "addr", "show"] if netns is None else ["ip", "-n", netns, "-j", "addr", "show"]
    return list(json.loads(host_run(argv) or "[]"))


def read_ovs_ports() -> dict[str, str]:
    """Every Open vSwitch port on this machine -> its bridge ({} without OVS). Ports of a
    userspace bridge have no master in `ip link`, so OVS itself is asked."""
    try:
        bridges = host_run(["ovs-vsctl", "--timeout=5", "list-br"], check=False).split()
        return {
            port: bridge
            for bridge in bridges
            for port in host_run(["ovs-vsctl", "--timeout=5", "list-ports", bridge], check=False).split()
        }
    except LabError:  # not installed
        return {}


def link_names(netns: str | None = None) -> list[str]:
    """The names of the interfaces in the root namespace (or in `netns`)."""
    return [link["ifname"] for link in read_links(netns)]


def list_netns() -> list[str]:
    """The named network namespaces (`ip netns list`)."""
    return [line.split()[0] for line in host_run(["ip", "netns", "list"]).splitlines() if line.strip()]


# --- checking ---------------------------------------------------------------------------
def _lab_address(link: dict[str, Any]) -> str | None:
    """The first address of `link` in the lab's ranges, if any."""
    for addr in link.get("addr_info", []):
        if addr.get("family") != "inet":
            continue
        network = ipaddress.ip_network(f"{addr['local']}/{addr.get('prefixlen', 32)}", strict=False)
        if network.overlaps(LAB_NETWORK):
            return f"{addr['local']}/{addr.get('prefixlen', 32)}"
    return None


def root_port_problems(
    ports: Mapping[str, str],
    links: Sequence[dict[str, Any]],
    ovs_ports: Callable[[], Mapping[str, str]] = read_ovs_ports,
) -> list[str]:
    """What is wrong with attaching these root-namespace interfaces (`links`: `ip -j addr
    show`), one line each. `ovs_ports` is asked only if an interface passed the rest."""
    by_name = {link["ifname"]: link for link in links}
    problems = []
    for role, name in ports.items():
        link = by_name.get(name)
        where = f"--port {role}={name}"
        if link is None:
            problems.append(f"{where}: no such interface in the root namespace")
        elif link.get("link_type") == "loopback" or "LOOPBACK" in link.get("flags", []):
            problems.append(f"{where}: a loopback interface")
        elif link.get("master"):
            problems.append(f"{where}: in use, enslaved to {link['master']}")
        elif LAB_MADE.match(name):
            problems.append(f"{where}: an interface a lab created (its tag {name[:6]})")
        elif (address := _lab_address(link)) is not None:
            problems.append(f"{where}: in use, it carries {address}, in the lab's range {LAB_NETWORK}")
        elif (bridge := ovs_ports().get(name)) is not None:
            problems.append(f"{where}: in use, a port of the Open vSwitch bridge {bridge}")
    return problems


def netns_port_problems(
    netns: str, ports: Mapping[str, str], namespaces: Sequence[str], present: Callable[[], Iterable[str]]
) -> list[str]:
    """What is wrong with plugging veths named `ports` into `netns` (`namespaces`: those
    that exist; `present()`: interface names already in it, asked only if it exists)."""
    problems: list[str] = []
    for role, name in ports.items():
        checks.interface(name, f"--port {role}={name}", problems)
    if netns not in namespaces:
        problems.append(f"--netns {netns}: no such network namespace (ip netns list)")
        return problems
    taken = set(present())
    problems += [
        f"--port {role}={name}: {name} already exists in netns {netns}"
        for role, name in ports.items()
        if name in taken
    ]
    return problems


def attachment(port_values: Sequence[str], netns: str | None = None) -> Attachment:
    """The device's ports as the user named them, checked: ConfigError listing every
    problem (each one line), else the Attachment. Reads only (`ip`, `ovs-vsctl`)."""
    ports, problems = parse_ports(port_values)
    if ports:
        if netns is None:
            problems += root_port_problems(ports, read_links())
        else:
            present = functools.partial(link_names, netns)
            problems += netns_port_problems(netns, ports, list_netns(), present)
    if problems:
        raise ConfigError(problems)
    return Attachment(dict(sorted(ports.items(), key=lambda item: ROLES.index(item[0]))), netns)


# --- plugging a namespace ---------------------------------------------------------------
def root_names(device: Attachment, prefix: str) -> dict[str, str]:
    """The root-side names of the veths `plug_netns` makes for `device`, by role."""
    names = {role: f"{prefix}-{ROOT_SUFFIX[role]}" for role in device.ports}
    long = [n for n in names.values() if len(n) > IFNAME_MAX]
    if long:
        raise LabError(f"link prefix {prefix!r}: veth names {', '.join(long)} over {IFNAME_MAX} characters")
    return names


def plug_netns(device: Attachment, record: Record) -> dict[str, str]:
    """Create one veth pair per port of a namespace device: the far end moved into the
    namespace under the user's name and set up (no address), the root end up. Names are
    written down first (the root ends start with `record`'s link prefix, which `clean`
    removes after a killed run; deleting a root end deletes its far end too). Returns the
    root-side names by role, to attach to the lab's switches; on any failure, what was
    made is deleted and the error raised."""
    if device.netns is None:
        raise LabError(f"{device}: root-namespace interfaces are attached as they are, not plugged")
    if record.link_prefix is None:
        record.set_link_prefix(record.tag)
    assert record.link_prefix is not None
    names = root_names(device, record.link_prefix)
    made: list[str] = []
    try:
        for role, inner in device.ports.items():
            outer = names[role]
            peer = ["peer", "name", inner, "netns", device.netns]
            host_run(["ip", "link", "add", outer, "type", "veth", *peer])
            made.append(outer)
            # the root end is the lab's, not an address of the machine: no IPv6 link-local
            # address, so the root kernel sends nothing through it (lab/outside.py)
            host_run(["sysctl", "-qw", f"net.ipv6.conf.{outer}.disable_ipv6=1"], check=False)
            host_run(["ip", "-n", device.netns, "link", "set", inner, "up"])
            host_run(["ip", "link", "set", outer, "up"])
    except BaseException:
        unplug(made)
        raise
    log.info("plugged %s: root ends %s", device, ", ".join(made))
    return names


def unplug(names: Iterable[str]) -> None:
    """Delete exactly these root-side veth ends (their far ends in the device's namespace
    go with them); one already gone is not an error."""
    for name in names:
        try:
            host_run(["ip", "link", "del", name])
        except CommandError as exc:
            if "Cannot find device" not in exc.output:
                log.warning("removing veth %s: %s", name, exc)


@contextlib.contextmanager
def plugged(device: Attachment, record: Record) -> Iterator[dict[str, str]]:
    """`plug_netns` for the length of a `with` block: the veths are deleted at its end."""
    names = plug_netns(device, record)
    try:
        yield names
    finally:
        unplug(names.values())


# --- attaching to a Mininet switch ------------------------------------------------------
@functools.cache
def _foreign_intf() -> type:
    """Mininet's Intf for an interface the lab did not create: removing it from the switch
    (Mininet's stop) never deletes the interface itself."""
    from mininet.link import Intf

    class ForeignIntf(Intf):  # type: ignore[misc]  # Mininet has no type hints
        def delete(self) -> None:
            self.node.delIntf(self)

    return ForeignIntf


def _bridge_running(name: str) -> bool:
    try:
        host_run(["ovs-vsctl", "--timeout=5", "br-exists", name])
    except CommandError:
        return False
    return True


def attach_intfs(net: Any, switch_name: str, iface: str) -> Any:
    """Make the root-namespace interface `iface` a port of the lab's switch `switch_name`
    (its real, tagged name) after Mininet's build: before `net.start()` the switch's start
    adds it; after, it is added now (with the OpenFlow port number Mininet gave it). The
    one thing set on the interface is its link up. Returns Mininet's Intf."""
    switch = net.get(switch_name)
    intf = _foreign_intf()(iface, node=switch)
    if _bridge_running(switch.name):
        switch.vsctl("add-port", switch.name, iface + switch.intfOpts(intf))
    host_run(["ip", "link", "set", iface, "up"])
    return intf
