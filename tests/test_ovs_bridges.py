"""Bridges go a port per ovsdb transaction (lab.ovs.remove_bridges): the order of the
commands, and a bridge that is already gone."""

from __future__ import annotations

from lab import ovs


def test_each_port_leaves_in_its_own_transaction_before_its_bridge(monkeypatch):
    calls: list[list[str]] = []
    ports = {"lab1-s1": "lab1-s1-eth1\nlab1-s1-eth2\n", "lab1-s2": ""}

    def fake_run(argv, timeout=30, check=True):
        calls.append(list(argv))
        assert check is False  # a port or bridge already gone is not a failure
        return ports.get(argv[-1], "") if argv[2] == "list-ports" else ""

    monkeypatch.setattr(ovs, "host_run", fake_run)
    ovs.remove_bridges(["lab1-s1", "lab1-s2"])
    steps = [c[2:] for c in calls]
    assert steps == [
        ["list-ports", "lab1-s1"],
        ["--if-exists", "del-port", "lab1-s1", "lab1-s1-eth1"],
        ["--if-exists", "del-port", "lab1-s1", "lab1-s1-eth2"],
        ["--if-exists", "del-br", "lab1-s1"],
        ["list-ports", "lab1-s2"],
        ["--if-exists", "del-br", "lab1-s2"],
    ]
    assert all(c[:2] == ["ovs-vsctl", "--timeout=10"] for c in calls)
