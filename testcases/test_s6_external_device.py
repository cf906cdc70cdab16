"""S6 (SCENARIOS.md): know your session device, one the lab did not build.

   inside 10.0.1.0/24                                     outside 10.0.2.0/24
     ci 10.0.1.10 --- si ---[in0  s6dut (a netns)  out0]--- so ---+-- srv  10.0.2.10
                           10.0.1.1   management:   10.0.2.1      +-- stun 10.0.2.20, .21
                                      sshd, via 127.0.0.1:PORT

A device someone else configured: `testcases/s6_device.sh` sets up a namespace with its
own nftables ruleset (stateful, masquerade), conntrack timeouts and an sshd on a
management interface, as the device's owner would. The lab only plugs its ports (veths
into the namespace: `--netns s6dut --port inside=in0 --port outside=out0`), probes
through it with real traffic and reads its session table over SSH with the Linux driver
(host key checked); it never configures, restarts or cleans the device. The profile must
equal what the script configured, and the table read over SSH must agree.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from lab.characterize.attach import attachment, link_names
from lab.characterize.findings import show
from lab.characterize.run import characterize_run
from lab.characterize.target import Bounds, Target
from lab.devices.drivers import driver_from
from lab.records import RECORDS, Record
from testcases.common import S6_PARALLEL

SCRIPT = Path(__file__).with_name("s6_device.sh")
# One device per worker: the module's two cases are scopes of their own, and two workers may
# run them at once (seen with -n 4: "s6dut: a network namespace of that name exists already").
NAME = f"s6dut-{os.getpid()}"
BOUNDS = Bounds(
    tcp_max_s=10, udp_max_s=10, parallel=S6_PARALLEL, app_timeout_s=1.5, probes=("tcp", "udp", "nat", "ftp")
)
TOLERANCE_S = 0.3
# What s6_device.sh configures: TCP established 5 s, UDP 3 s and 6 s, masquerade, no ALG.
TIMEOUTS = {"tcp.idle_timeout_s": 5.0, "udp.lifetime_outbound_s": 3.0, "udp.lifetime_bidirectional_s": 6.0}
EXPECTED = {
    "tcp.expiry": "silent",
    "tcp.midstream_ack": {"inside": "dropped", "outside": "dropped"},
    "nat.mapping": "endpoint-independent",
    "nat.filtering": "address-and-port-dependent",
    "nat.port_preservation": True,
    "ftp.active": "fails",
    "ftp.passive": "works",
    "ftp.alg": False,
    "ftp.port_rewritten": False,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    """The device, up for the module and down after it (by its own script, not the lab)."""
    folder = tmp_path_factory.mktemp("s6-device")
    key = folder / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    port = free_port()
    up = subprocess.run(
        ["bash", str(SCRIPT), "up", NAME, f"{key}.pub", str(port)], capture_output=True, text=True, timeout=60
    )
    assert up.returncode == 0, up.stderr
    known_hosts = folder / "known_hosts"
    known_hosts.write_text(up.stdout)
    try:
        yield {"ssh": f"root@127.0.0.1:{port}", "key": key, "known_hosts": known_hosts}
    finally:
        down = subprocess.run(["bash", str(SCRIPT), "down", NAME], capture_output=True, text=True, timeout=60)
        assert down.returncode == 0, down.stderr


def wrong_findings(profile, keys) -> list[str]:
    """The findings among `keys` that differ from what s6_device.sh configured."""
    found, wrong = dict(profile.findings()), []
    for key in keys:
        if key in TIMEOUTS:
            low, high = found[key].value
            wanted = TIMEOUTS[key]
            if high is None or not (low - TOLERANCE_S <= wanted <= high + TOLERANCE_S) or high - low > 1.6:
                wrong.append(f"{key}: measured [{low}, {high}], configured {wanted}")
        elif found[key].value != EXPECTED[key]:
            wrong.append(f"{key}: measured {found[key].value}, configured {EXPECTED[key]}")
    return wrong


def keep(case, profile) -> None:
    case.keep(case.path / "profile.md", "the profile (markdown)")
    case.keep(case.path / "profile.json", "the profile (data)")
    found = dict(profile.findings())
    case.figure("profile", {key: show(key, finding) for key, finding in found.items() if finding.measured})


@pytest.mark.ports(1000)
def test_profile_of_a_device_the_lab_did_not_build(device, case):
    """The profile of a device set up outside the lab equals its owner's configuration"""
    driver = driver_from("linux", device["ssh"], device["known_hosts"], device["key"])
    ports = attachment(["inside=in0", "outside=out0"], netns=NAME)
    target = Target(attachment=ports, driver=driver, name=f"netns {NAME} (testcases/s6_device.sh)")
    profile = characterize_run(target, BOUNDS, case.path, case.ports)
    keep(case, profile)
    wrong = wrong_findings(profile, [*TIMEOUTS, *EXPECTED])
    assert not wrong, "; ".join(wrong)
    # the table read over SSH agrees: the device counts down from the timeouts it was given
    says = dict(profile.findings())["tcp.idle_timeout_s"].probe["table_says_s"]
    wanted = TIMEOUTS["tcp.idle_timeout_s"]
    assert abs(says.get("established", 0) - wanted) <= 1, f"the device's table (over SSH) says {says}"
    assert not profile.device.built_by_lab and "ssh" in profile.device.table.lower(), profile.device
    # nothing of the lab is left attached to the device: its veth ends went with the lab
    assert not {"in0", "out0"} & set(link_names(NAME)), link_names(NAME)
    # its counters (conntrack -S over SSH) are kept beside the probes' results
    counters = json.loads((case.path / "probes.json").read_text())["device_counters"]
    assert counters.get("cpus", 0) >= 1 and "found" in counters, counters
    latency = dict(profile.findings())["capacity.latency_added_ms"]
    assert latency.measured and 0 < latency.value < 20, f"latency added {latency.value} ms"
    # read at the device's own ports: the lab's switches (and their stalls) are not in it
    assert all((case.path / f).stat().st_size > 24 for f in latency.evidence), latency.evidence
    assert latency.evidence == ["search-device-inside.pcap", "search-device-outside.pcap"]


def bridges_of_other_labs() -> set[str]:
    """The bridges of labs other processes run now (their records: another worker's)."""
    mine, found = os.getpid(), set()
    for path in RECORDS.glob("*.json"):
        with contextlib.suppress(OSError, KeyError, TypeError, ValueError):
            record = Record.load(path)
            if record.owner != mine and not record.orphaned():
                found |= set(record.bridges)
    return found


@pytest.mark.ports(1000)
def test_profile_through_ports_in_the_root_namespace(device, case):
    """A device whose ports are interfaces of the root namespace (a VM's taps): attached, never removed"""
    # the device owner's veths (named per worker, as the device is)
    owned = {"inside": (f"s6i{os.getpid()}", "in0"), "outside": (f"s6o{os.getpid()}", "out0")}
    for root, far in owned.values():
        subprocess.run(
            ["ip", "link", "add", root, "type", "veth", "peer", "name", far, "netns", NAME], check=True
        )
    try:
        ports = attachment([f"{role}={root}" for role, (root, _) in owned.items()])
        target = Target(attachment=ports, name=f"netns {NAME} through root-namespace ports")
        profile = characterize_run(target, replace(BOUNDS, probes=("tcp", "nat")), case.path, case.ports)
        keep(case, profile)
        wrong = wrong_findings(profile, ["tcp.idle_timeout_s", "tcp.expiry", "nat.mapping", "nat.filtering"])
        assert not wrong, "; ".join(wrong)
        # the lab took its switch ports away and left the device's own interfaces where they were
        left = set(link_names())
        assert {root for root, _ in owned.values()} <= left, "the lab removed an interface it did not create"
        # and removed its own bridges (labs of other processes may run beside it: -n 2)
        bridges = subprocess.run(["ovs-vsctl", "list-br"], capture_output=True, text=True).stdout.split()
        left = [b for b in bridges if b.startswith("sl") and b not in bridges_of_other_labs()]
        assert not left, left
    finally:
        for root, _ in owned.values():
            subprocess.run(["ip", "link", "del", root], check=False)
