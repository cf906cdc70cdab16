"""`sessionlab doctor`: which scenarios a machine can run follows from the checks."""

from lab.doctor import BASE_PACKAGES, SCENARIO_NEEDS, Check, bootstrap_packages, scenarios


def test_every_package_a_scenario_needs_is_one_bootstrap_installs():
    installed = set(bootstrap_packages())
    assert set(BASE_PACKAGES) <= installed
    needed = {
        n.removeprefix("package ")
        for needs in SCENARIO_NEEDS.values()
        for n in needs
        if n.startswith("package ")
    }
    assert needed <= installed, needed - installed


def _all_ok() -> list[Check]:
    names = ["root", "Open vSwitch running", "Open vSwitch userspace datapath", "kernel: network namespaces"]
    names += ["kernel: connection tracking", "kernel: HTB rate limits", "kernel: NAT", "kernel: SYN proxy"]
    names += ["kernel: FTP conntrack helper", "python os-ken", "python pytest"]
    names += [f"package {p}" for p in bootstrap_packages()]
    return [Check(n, True, "ok") for n in names]


def test_a_missing_piece_stops_only_the_scenarios_that_need_it():
    checks = _all_ok()
    assert not any(scenarios(checks).values())
    checks = [c if c.name != "package hping3" else Check(c.name, False, "not installed") for c in checks]
    checks.append(Check("kernel: netem", False, "missing", optional=True))
    can = scenarios(checks)
    assert can["s5"] == ["package hping3"]
    assert can["s1"] == can["s3"] == []


def test_without_open_vswitch_nothing_runs():
    checks = [c if c.name != "Open vSwitch running" else Check(c.name, False, "down") for c in _all_ok()]
    assert all(missing == ["Open vSwitch running"] for missing in scenarios(checks).values())
