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


# --- what doctor finds and says ------------------------------------------------------------
def test_a_tool_off_path_is_said_to_be_off_path_not_missing(tmp_path):
    import os
    import shutil

    from lab.doctor import tool_missing, tools_check

    if not os.access("/usr/sbin/nft", os.X_OK):
        import pytest

        pytest.skip("nft is not in /usr/sbin here")
    assert (
        tool_missing("nft", "/usr/bin:/bin")
        == "nft is not on PATH: it is /usr/sbin/nft, and PATH lacks /usr/sbin"
    )
    assert (
        tool_missing("no-such-tool-anywhere", "/usr/bin")
        == "no-such-tool-anywhere is not installed (not on PATH)"
    )
    check = tools_check("/usr/bin:/bin")
    assert not check.ok and "nft" in check.detail and "in /usr/sbin, which PATH lacks" in check.detail
    assert check.fix.startswith("use `su -` or `sudo -i`, or export PATH=")
    full = os.pathsep.join(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/local/bin", "/usr/bin", "/bin"])
    if all(shutil.which(t, path=full) for t in ("ip", "nft", "mnexec", "ovs-vsctl")):
        assert tools_check(full).ok


def test_host_facts_and_free_disk_of_the_results_filesystem(tmp_path):
    from lab.doctor import host_checks

    kernel, cpus, disk = host_checks(tmp_path / "not" / "made" / "yet")
    assert kernel.ok and kernel.detail.startswith("Linux ")
    assert cpus.ok and cpus.detail.split()[0].isdigit()
    assert disk.name == "free disk" and " GB free of " in disk.detail and str(tmp_path / "not") in disk.detail
    assert disk.ok or disk.fix


def test_orphaned_lab_records_are_counted_with_clean_as_the_fix(tmp_path):
    import json

    from lab.doctor import records_check
    from lab.records import Record

    assert records_check(tmp_path).ok
    # An owner that cannot exist (beyond pid_max): the run is gone, its record stays.
    record = Record("sl9999", tmp_path, owner=2**30, owner_start=1, bridges=["sl9999s1"])
    (tmp_path / "sl9999.json").write_text(json.dumps(record.to_dict()))
    check = records_check(tmp_path)
    assert not check.ok and check.optional and check.status == "leftover"
    assert check.detail == "1 lab whose run is gone: sl9999"
    assert check.fix.startswith("run `sessionlab clean`")


def test_everything_doctor_finds_missing_has_a_fix(monkeypatch):
    """With nothing on PATH most checks fail or cannot run: each says what to do."""
    from lab.doctor import run_checks

    monkeypatch.setenv("PATH", "/nonexistent")
    checks = run_checks()
    names = [c.name for c in checks]
    assert names[:4] == ["root", "kernel", "CPUs", "free disk"] and names[-1] == "orphaned lab records"
    assert not next(c for c in checks if c.name == "tools on PATH").ok
    assert [c.name for c in checks if c.ok is not True and not c.fix] == []
