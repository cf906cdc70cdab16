"""Bridges go a port per ovsdb transaction while another bridge shares the datapath, else
in one transaction (lab.ovs.remove_bridges): the commands, in order."""

from __future__ import annotations

from lab import ovs

PORTS = {"lab1-s1": "lab1-s1-eth1\nlab1-s1-eth2\n", "lab1-s2": ""}


def removal(monkeypatch, existing: str) -> list[list[str]]:
    calls: list[list[str]] = []

    def fake_run(argv, timeout=30, check=True):
        calls.append(list(argv))
        assert check is False  # a port or bridge already gone is not a failure
        if argv[2] == "list-br":
            return existing
        return PORTS.get(argv[-1], "") if argv[2] == "list-ports" else ""

    monkeypatch.setattr(ovs, "host_run", fake_run)
    ovs.remove_bridges(["lab1-s1", "lab1-s2"])
    assert all(c[:2] == ["ovs-vsctl", "--timeout=10"] for c in calls)
    return [c[2:] for c in calls]


def test_beside_another_labs_bridge_each_port_leaves_in_its_own_transaction(monkeypatch):
    assert removal(monkeypatch, "lab1-s1\nlab1-s2\nlab2-s1\n") == [
        ["list-br"],
        ["list-ports", "lab1-s1"],
        ["--if-exists", "del-port", "lab1-s1", "lab1-s1-eth1"],
        ["--if-exists", "del-port", "lab1-s1", "lab1-s1-eth2"],
        ["--if-exists", "del-br", "lab1-s1"],
        ["list-ports", "lab1-s2"],
        ["--if-exists", "del-br", "lab1-s2"],
    ]


def test_alone_on_the_datapath_the_bridges_go_in_one_transaction(monkeypatch):
    assert removal(monkeypatch, "lab1-s1\nlab1-s2\n") == [
        ["list-br"],
        ["--", "--if-exists", "del-br", "lab1-s1", "--", "--if-exists", "del-br", "lab1-s2"],
    ]
