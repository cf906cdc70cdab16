"""The kill series' pure parts (testcases/kill_series.py, testcases/kill_device.py): how a
selection is drawn, and how the device the lab did not build is compared before and after
a killed run (from `ip -j` output as the tools print it)."""

from __future__ import annotations

import random

from testcases.kill_device import DeviceState, attached_to, changes, netns_id, parse_pids
from testcases.kill_series import DEVICE, ROOT_DEVICE, SELECTIONS, draw, workers

LO = {"ifindex": 1, "ifname": "lo", "flags": ["LOOPBACK", "UP", "LOWER_UP"], "mtu": 65536}
LO_ADDR = {**LO, "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]}
IN0 = {"ifindex": 2, "link_index": 7712, "ifname": "in0", "mtu": 1500, "link_netnsid": 0}
SYSCTLS = {"net.ipv4.ip_forward": "1", "net.netfilter.nf_conntrack_tcp_timeout_established": "5"}


def state(links=(LO,), addrs=(LO_ADDR,), ruleset="r1", sysctls=None) -> DeviceState:
    return DeviceState(list(links), list(addrs), ruleset, dict(SYSCTLS if sysctls is None else sysctls))


def test_a_device_as_its_owner_left_it_has_no_changes():
    assert changes(state(), state()) == []


def test_a_plugged_end_left_in_the_device_is_named_as_the_labs():
    after = state(links=(LO, IN0), addrs=(LO_ADDR, {**IN0, "addr_info": []}))
    assert changes(state(), after) == ["the lab's plugged veth end in0 is in the device"]


def test_an_interface_the_device_did_not_have_or_lost_is_named():
    other = {**IN0, "ifname": "eth9"}
    assert changes(state(), state(links=(LO, other))) == [
        "an interface the device did not have eth9 is in the device"
    ]
    assert changes(state(links=(LO, other)), state()) == ["the device's interface eth9 is gone"]


def test_a_changed_link_address_ruleset_or_sysctl_is_named():
    down = {**LO, "flags": ["LOOPBACK"]}
    moved = {**LO_ADDR, "addr_info": []}
    found = changes(
        state(),
        state(links=(down,), addrs=(moved,), ruleset="r2", sysctls={**SYSCTLS, "net.ipv4.ip_forward": "0"}),
    )
    assert found == [
        "the device's interface lo changed: flags",
        "the device's interface lo's addresses changed: []",
        "the device's nftables ruleset changed",
        "the device's net.ipv4.ip_forward changed: 1 -> 0",
    ]


def test_a_root_namespace_port_left_enslaved_or_gone_is_named():
    port = {"ifname": "s6k1-1i", "flags": ["BROADCAST", "UP"], "link_netnsid": 3}
    before = state()
    before = DeviceState(before.links, before.addrs, before.ruleset, before.sysctls, [port])
    enslaved = DeviceState(
        before.links, before.addrs, before.ruleset, before.sysctls, [{**port, "master": "br0"}]
    )
    gone = DeviceState(before.links, before.addrs, before.ruleset, before.sysctls, [])
    assert changes(before, before, ()) == []
    assert changes(before, enslaved, ()) == ["the device's root-namespace port s6k1-1i changed: master"]
    assert changes(before, gone, ()) == ["the device's root-namespace port s6k1-1i is gone"]


def test_root_interfaces_whose_peer_is_in_the_device_are_found_by_its_id():
    namespaces = [{"name": "s6k1-1", "id": 3}, {"name": "other"}]
    root = [
        {"ifname": "sl1a2b-in", "link_netnsid": 3},
        {"ifname": "sl9999s1-eth1", "link_netnsid": 0},
        {"ifname": "eth0"},
    ]
    assert netns_id("s6k1-1", namespaces) == 3
    assert netns_id("other", namespaces) is None  # no id: nothing of the root points into it
    assert attached_to(3, root) == ["sl1a2b-in"]
    assert attached_to(None, root) == []


def test_the_device_scripts_pids_file_is_read_with_start_times():
    text = "101 5000 port agent\n102 gone sshd\n\n103 5002 management relay\n"
    assert parse_pids(text) == [
        (101, 5000, "port agent"),
        (102, None, "sshd"),
        (103, 5002, "management relay"),
    ]


def test_only_a_run_with_two_workers_may_have_a_worker_killed():
    assert workers(SELECTIONS["two labs side by side"][0]) == 2
    assert workers(SELECTIONS[DEVICE][0]) == 1
    rng = random.Random(1)
    targets = {draw(rng, DEVICE)[1] for _ in range(20)}
    assert targets == {"cli"}
    moments = [draw(rng, DEVICE)[2] for _ in range(50)]
    assert all(0.2 <= m <= SELECTIONS[DEVICE][1] for m in moments)


def test_the_device_selections_name_every_field_the_device_fills():
    fields = {"name": "s6k1-1", "port": "2222", "identity": "/k/id", "known_hosts": "/k/kh"}
    fields |= {"inside": "s6k1-1i", "outside": "s6k1-1o"}
    for selection in (DEVICE, ROOT_DEVICE):
        filled = [a.format(**fields) for a in SELECTIONS[selection][0]]
        assert filled[0] == "characterize" and "{" not in " ".join(filled)
        assert "root@127.0.0.1:2222" in filled
    assert SELECTIONS[DEVICE][0][SELECTIONS[DEVICE][0].index("--netns") + 1] == "{name}"
    assert "--netns" not in SELECTIONS[ROOT_DEVICE][0] and "inside={inside}" in SELECTIONS[ROOT_DEVICE][0]
