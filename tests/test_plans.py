"""Topologies' address plans (each file's `PLAN`), and the files as stock Mininet loads them.

The plan is what cases, controller harnesses and benchmarks read instead of writing
addresses again, so the network a file builds must be the one its plan says. Stock `mn
--custom` runs each file in a bare namespace (no `__file__`, no import path of its own):
with the shared node classes' file named first, every topology loads there without the
`sys.path` header the files used to carry.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab import topology

FILES = sorted(p for p in topology.TOPOLOGY_DIR.glob("*.py") if not p.name.startswith("_"))
NAMES = sorted(topology.available())


def _ips(topo) -> dict[str, set[str]]:
    """node -> every address the topology gives it (its `ip` and its links' `ip` params)."""
    found: dict[str, set[str]] = {}
    for name in topo.hosts():
        ip = topo.nodeInfo(name).get("ip")
        if ip:
            found.setdefault(name, set()).add(ip.split("/")[0])
    for a, b, info in topo.links(withInfo=True):
        for node, key in ((a, "params1"), (b, "params2")):
            ip = info.get(key, {}).get("ip")
            if ip:
                found.setdefault(node, set()).add(ip.split("/")[0])
    return found


@pytest.mark.parametrize("name", NAMES)
def test_every_topology_builds_what_its_plan_says(name):
    plan, topo = topology.plan(name), topology.load(name)
    ips = _ips(topo)
    for group, hosts in plan.hosts.items():
        for host, address in hosts.items():
            assert ips.get(host) == {address}, f"{name}: {group} host {host} has {ips.get(host)}"
    roles = {h: topo.nodeInfo(h)["role"] for h in topo.hosts() if topo.nodeInfo(h).get("role")}
    assert roles == dict(plan.roles), f"{name}: roles {roles}, plan {plan.roles}"
    # with the addresses a role's parameters name (a firewall's tunnel end, its sync peer)
    named = {v.split("/")[0] for h in topo.hosts() for v in topo.nodeInfo(h).values() if isinstance(v, str)}
    every = set().union(*ips.values(), named)
    for label, address in plan.addresses.items():
        assert address in every, f"{name}: plan address {label} {address} is on no node"
    for label, prefix in plan.networks.items():
        assert prefix.endswith("/24") and prefix.count(".") == 3, f"{name}: network {label} {prefix}"


def test_s4_and_s4_sdn_share_one_plan_and_the_sdn_app_reads_it():
    from controllers.l4lb import harness

    plan = topology.plan("s4")
    assert topology.plan("s4-sdn") == plan
    assert plan.address("r2") == "10.0.2.12" and plan.vips["web"] == "10.0.1.100"
    assert "plan" in harness.config.__code__.co_varnames  # the harness holds no copy


def test_a_plan_names_each_address_once():
    plan = topology.plan("s3")
    assert plan.address("server") == "10.0.3.10" and plan.address("fwc-out") == "10.0.2.1"
    with pytest.raises(KeyError, match="no address named 'nope'"):
        plan.address("nope")


def test_an_unknown_topology_has_no_plan():
    from lab.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown topology 'nope'"):
        topology.plan("nope")


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_topology_files_carry_no_import_path_header(path: Path):
    text = path.read_text()
    assert "sys.path" not in text and "inspect" not in text, f"{path.name} still edits the import path"
    assert "from _sessionlab_nodes import" in text


# Stock mn's own --custom loading (MininetRunner.custom, /usr/bin/mn), in a fresh
# interpreter as `mn` runs: which topologies and controller specs it registered.
STOCK_MN = """
import importlib.machinery, importlib.util, sys
loader = importlib.machinery.SourceFileLoader("mn_script", sys.argv[1])
spec = importlib.util.spec_from_loader("mn_script", loader)
mn = importlib.util.module_from_spec(spec)
loader.exec_module(mn)
before = set(mn.TOPOS)
runner = object.__new__(mn.MininetRunner)
runner.validate = None
runner.custom(None, "--custom", sys.argv[2], None)
for name in sorted(set(mn.TOPOS) - before):
    topo = mn.TOPOS[name]()  # the Topo object only: no network is built
    print(name, len(topo.hosts()), len(topo.links()))
"""


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_stock_mn_loads_each_file_after_the_shared_nodes(path: Path):
    mn = shutil.which("mn")
    if mn is None:
        pytest.skip("no stock mn on this machine")
    interpreter = Path(mn).read_text().splitlines()[0].removeprefix("#!").split()
    root = topology.TOPOLOGY_DIR.parent
    value = f"topologies/_sessionlab_nodes.py,topologies/{path.name}"  # as the docstrings say
    out = subprocess.run(
        [*(interpreter or [sys.executable]), "-c", STOCK_MN, mn, value],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    registered = {line.split()[0]: line.split()[1:] for line in out.stdout.splitlines()}
    expected = {n for n, p in topology.available().items() if p == path}
    assert set(registered) == expected, out.stdout
    for name, (hosts, links) in registered.items():
        topo = topology.load(name)
        assert (int(hosts), int(links)) == (len(topo.hosts()), len(topo.links())), name
    assert f"mn --custom {value}" in path.read_text(), f"{path.name}'s docstring names another command"
