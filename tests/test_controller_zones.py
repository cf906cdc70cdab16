"""The conntrack zones a controller app's configuration names, emptied when its lab
closes (lab.controller): which zones, and the command."""

from __future__ import annotations

from lab import controller


def test_the_zones_of_either_app_are_found():
    assert controller.config_zones({"zone": 40001, "algorithm": "round-robin"}) == {40001}
    assert controller.config_zones({"zones": {"so": 40001, "si": 7233}}) == {40001, 7233}
    assert controller.config_zones({"mode": "symmetric"}) == set()


def test_each_zone_named_is_flushed(monkeypatch):
    calls = []
    monkeypatch.setattr(controller, "host_run", lambda argv, check=True: calls.append((argv, check)) or "")
    ctl = controller.Controller.__new__(controller.Controller)
    ctl.zones = {7233, 40001}
    ctl.flush_zones()
    assert [argv[-1] for argv, _ in calls] == ["zone=7233", "zone=40001"]
    assert all(
        argv[:3] == ["ovs-appctl", "--timeout=5", "dpctl/flush-conntrack"] and not check
        for argv, check in calls
    )
