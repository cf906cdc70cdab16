"""Topologies: loadable by name, and what this kernel cannot honour is refused up front."""

from pathlib import Path

import pytest
from mininet.topo import Topo

from lab import topology
from lab.config import Impairment
from lab.errors import ConfigError
from lab.net import Lab
from lab.rewrite import tagged_topo, topology_problems


def test_s1_loads_without_building_anything():
    topo = topology.load("s1")
    assert sorted(topo.hosts()) == ["client", "client2", "fw", "server"]
    assert topo.nodeInfo("fw")["role"] == "firewall"
    assert topology_problems(topo) == []


@pytest.mark.parametrize("name", sorted(topology.available()))
def test_every_topology_loads_and_the_lab_can_honour_it(name):
    topo = topology.load(name)
    assert topology_problems(topo) == []
    from lab.devices import ROLES

    roles = {topo.nodeInfo(h).get("role") for h in topo.hosts()} - {None}
    assert roles <= set(ROLES), f"{name}: roles without a device class: {roles - set(ROLES)}"


def test_unknown_topology():
    with pytest.raises(ConfigError, match="unknown topology 'nope'"):
        topology.load("nope")


class _Delayed(Topo):
    def build(self):
        a, b = self.addHost("a"), self.addHost("b")
        self.addLink(a, b, delay="-10ms", loss=101)


def test_bad_impairments_are_refused_with_the_link_named(tmp_path: Path):
    with pytest.raises(ConfigError) as caught, Lab(_Delayed(), tmp_path):
        pass
    assert caught.value.problems == [
        "link a-b: delay '-10ms' is negative",
        "link a-b: loss 101 is not a percentage (0-100)",
    ]


def test_an_impaired_link_gets_an_element_with_the_ends_as_they_were():
    topo = Topo()
    topo.addHost("fw1")
    topo.addSwitch("a1", dpid="1")
    topo.addLink("fw1", "a1", intfName1="fw1-sync", params1={"ip": "10.0.3.1/24", "loss": 1}, delay="2ms")
    elements: list = []
    tagged, names = tagged_topo(topo, "sl0000", elements)
    (element,) = elements
    assert (element.name, element.link) == ("imp0", "fw1-a1")
    assert element.impairments["a"].loss == 1 and element.impairments["b"].loss == 0
    assert element.impairments["a"].delay == element.impairments["b"].delay == 0.002
    links = {(i["node1"], i["node2"]): i for _, _, i in tagged.links(withInfo=True)}
    first = links[("fw1", "imp0")]
    assert first["intfName1"] == "fw1-sync" and first["params1"] == {"ip": "10.0.3.1/24"}
    assert "delay" not in first and links[("imp0", "sl0000a1")]["intfName1"] == "imp0-b"


def test_with_netem_an_impaired_link_stays_whole_and_keeps_its_rate_for_tclink():
    from lab.links import NetemLink, netem_argv

    topo = Topo()
    topo.addHost("h1")
    topo.addSwitch("s1", dpid="1")
    topo.addLink("h1", "s1", delay="5ms", jitter="1ms", bw=20, params2={"reorder": 10})
    impaired: list = []
    tagged, _ = tagged_topo(topo, "sl0000", impaired, netem=True)
    (link,) = impaired
    assert isinstance(link, NetemLink) and link.link == "h1-s1"
    assert link.impairments["b"].reorder == 10 and link.impairments["a"].reorder == 0
    ((_, _, info),) = tagged.links(withInfo=True)
    assert info["bw"] == 20 and "delay" not in info and "jitter" not in info
    assert "reorder" not in info["params2"]
    assert netem_argv("h1-eth0", link.impairments["b"], "parent 5:1") == [
        "tc", "qdisc", "replace", "dev", "h1-eth0", "parent", "5:1", "handle", "10:", "netem",
        "delay", "5000us", "1000us", "reorder", "10%",
    ]  # fmt: skip
    assert netem_argv("h1-eth0", Impairment()) == [
        "tc",
        "qdisc",
        "replace",
        "dev",
        "h1-eth0",
        "root",
        "handle",
        "10:",
        "netem",
    ]


def test_bad_node_names_are_refused():
    topo = Topo()
    topo.addHost("Bad-Name")
    assert any("Bad-Name" in p for p in topology_problems(topo))


def test_a_switch_name_too_long_for_its_tagged_interfaces_is_refused():
    topo = Topo()
    topo.addSwitch("core1", dpid="1")
    topo.addLink(topo.addHost("h1"), "core1")
    (problem,) = topology_problems(topo)
    assert problem.startswith("switch 'core1': its interface names would be 16 characters")
    assert "at most 4 characters" in problem


def test_duplicate_dpids_are_refused_and_missing_ones_never_collide():
    topo = Topo()
    topo.addSwitch("so", dpid="1")
    topo.addSwitch("si", dpid="0000000000000001")
    assert any("same dpid 0x1" in p for p in topology_problems(topo))
    plain = Topo()
    for name in ("s1", "a1", "so", "si"):  # Mininet's default dpids (the digits) collide here
        plain.addSwitch(name)
    tagged, names = tagged_topo(plain, "sl0000")
    dpids = [tagged.nodeInfo(names[n])["dpid"] for n in ("s1", "a1", "so", "si")]
    assert len(set(dpids)) == 4


def test_roles_map_to_device_classes_layered_on_the_topology_class():
    from mininet.node import Node

    from lab.devices import Firewall, device_class

    class Router(Node):
        pass

    cls = device_class("firewall", Router)
    assert issubclass(cls, Firewall) and issubclass(cls, Router)
    with pytest.raises(ConfigError, match=r"unknown role 'switch' \(known: balancer, firewall\)"):
        device_class("switch")


def test_stock_mininet_builds_s1_with_a_wan_link_from_its_command_line():
    import runpy

    from mininet.util import buildTopo

    from lab.topology import TOPOLOGY_DIR

    topos = runpy.run_path(str(TOPOLOGY_DIR / "s1_idle_timeout.py"))["topos"]
    delays = {
        (a, b): i.get("delay") for a, b, i in buildTopo(topos, "s1,wan_delay=25ms").links(withInfo=True)
    }
    assert delays[("server", "s2")] == "25ms"
    assert all(d is None for link, d in delays.items() if link != ("server", "s2"))


CORPUS = Path(__file__).resolve().parent / "corpus" / "topologies"
BAD_TOPOLOGY_FILES = [
    ("sys_exit.py", "sys_exit.py: calls sys.exit(3) while it loads"),
    (
        "exit_in_build.py",
        "exit_in_build.py: topology 'quits' calls sys.exit('no hosts today') while it builds",
    ),
    ("not_a_class.py", "not_a_class.py: topos['number'] is int 42, not a Topo class"),
    ("not_a_class.py:fine", "not_a_class.py: topos['number'] is int 42"),  # named at once, whichever is asked
    ("not_a_topo.py", "not_a_topo.py: topos['plain'] is class Plain, not a subclass of mininet's Topo"),
    ("empty_topos.py", "empty_topos.py: `topos` is empty"),
    ("no_topos.py", "no_topos.py: has no `topos` dict"),
    ("two_topos.py:one", "two_topos.py: topology 'one': bad parameters (got an unexpected keyword"),
]


@pytest.mark.parametrize(("spec", "says"), BAD_TOPOLOGY_FILES, ids=[s for s, _ in BAD_TOPOLOGY_FILES])
def test_a_bad_topology_file_is_one_problem_naming_the_file(spec, says):
    params = {"colour": "red"} if spec == "two_topos.py:one" else {}
    with pytest.raises(ConfigError) as caught:
        topology.load_spec(str(CORPUS / spec), **params)
    (problem,) = caught.value.problems
    assert problem.startswith(str(CORPUS)) and says in problem, problem
    assert "\n" not in problem


@pytest.mark.parametrize("spec", ["sys_exit.py", "exit_in_build.py", "empty_topos.py", "not_a_class.py"])
def test_topo_says_what_is_wrong_with_a_file_and_builds_nothing(spec):
    """The command a person runs: one line, exit 2 (before anything is built)."""
    import subprocess
    import sys

    sessionlab = str(Path(sys.executable).with_name("sessionlab"))
    result = subprocess.run(
        [sessionlab, "topo", str(CORPUS / spec)], capture_output=True, text=True, timeout=60, cwd="/"
    )
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"sessionlab: {CORPUS / spec}: "), line


def test_a_function_in_topos_is_taken_as_stock_mininet_takes_it(tmp_path: Path):
    path = tmp_path / "by_function.py"
    path.write_text(
        "from mininet.topo import Topo\n\n\n"
        "def two(hosts=2):\n    topo = Topo()\n"
        "    for n in range(hosts):\n        topo.addHost(f'h{n}')\n    return topo\n\n\n"
        "topos = {'two': two, 'odd': lambda: 'not a topo'}\n"
    )
    name, topo = topology.load_spec(f"{path}:two", hosts=3)
    assert name == "two" and sorted(topo.hosts()) == ["h0", "h1", "h2"]
    with pytest.raises(ConfigError, match=r"topos\['odd'\] returned str 'not a topo', not a Topo"):
        topology.load_spec(f"{path}:odd")
    with pytest.raises(ConfigError, match=r"bad parameters \(.*'colour'.*; it takes hosts\)"):
        topology.load_spec(f"{path}:two", colour="red")
