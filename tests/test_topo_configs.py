"""`topo`'s configurations by node: the balancer and ADC loaders (unknown keys rejected,
every problem at once), the example files, and every bad option refused before the build
(one line, exit 2, no run folder); the live progress's pause for `--pause-on-fail`."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from lab import topology
from lab.cli_topo import _per_node
from lab.config import load_policy
from lab.config.balancing import adc_from_dict, load_adc, load_balancer
from lab.errors import ConfigError
from lab.progress import RunProgress

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SESSIONLAB = str(Path(sys.executable).with_name("sessionlab"))


def test_the_examples_load_as_the_suites_configure_them():
    fwc, fws = load_policy(EXAMPLES / "s3-fwc.toml"), load_policy(EXAMPLES / "s3-fws.toml")
    assert fwc.snat and [h.port for h in fwc.helpers] == [21] and not fwc.allow_inbound
    assert [(s.port, s.address) for s in fws.allow_inbound] == [(21, topology.plan("s3").address("server"))]
    l4 = load_balancer(EXAMPLES / "s4-l4.toml")
    servers = dict(topology.plan("s4").hosts["servers"])
    assert l4.vip == topology.plan("s4").vips["web"] and l4.algorithm == "weighted"
    assert [s.address for s in l4.servers] == list(servers.values())
    adc = load_adc(EXAMPLES / "s4-adc.toml")
    assert adc.pools[0].name == "web" and adc.pools[0].check is not None
    assert adc.redirects == (("/old/", "/new/"),)


def test_an_adc_lists_every_problem_at_once_naming_its_place():
    data = {
        "vip": "10.0.1.300",
        "port": 80,
        "colour": "red",
        "pools": [
            {
                "name": "web",
                "servers": [{"address": "10.0.2.11", "port": 80, "wieght": 2}],
                "check": {"kind": "icmp", "every": 1},
            }
        ],
        "routes": [{"pool": "api", "path_prefix": "/api"}],
        "redirects": ["/old/"],
    }
    with pytest.raises(ConfigError) as caught:
        adc_from_dict(data)
    text = "\n".join(caught.value.problems)
    assert "adc: unknown key 'colour'" in text
    assert "adc.pools[0].servers[0]: unknown key 'wieght'" in text
    assert "adc.pools[0].check: unknown key 'every'" in text
    assert "adc.redirects: expected a list of [text, text] pairs" in text
    assert len(caught.value.problems) == 3 + 1  # the structure's problems first, all of them


def test_an_adc_with_good_structure_reports_its_values_problems():
    data = {
        "vip": "10.0.1.300",
        "port": 80,
        "pools": [
            {"name": "web", "servers": [{"address": "10.0.2.11", "port": 80}], "check": {"kind": "icmp"}}
        ],
        "routes": [{"pool": "api", "path_prefix": "/api"}],
    }
    with pytest.raises(ConfigError) as caught:
        adc_from_dict(data)
    text = "\n".join(caught.value.problems)
    assert "adc.vip: '10.0.1.300' is not an IPv4 address" in text
    assert "adc.pools[0].check.kind: 'icmp' is not tcp or http" in text
    assert "adc.routes[0].pool: no pool 'api' (pools: web)" in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("vip = 1\n", "missing 'port'"),
        ("vip = \n", "not valid TOML"),
        ('vip = "10.0.1.100"\nport = 80\n[[servers]]\naddress = "10.0.2.11"\n', "servers[0]: missing 'port'"),
        ('vip = "10.0.1.100"\nport = 80\nservers = 3\n', "servers: expected a list of tables"),
    ],
)
def test_a_balancer_file_is_refused_naming_the_file(tmp_path, text, expected):
    path = tmp_path / "lb.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_balancer(path)
    assert all(p.startswith(f"{path}: ") for p in caught.value.problems)
    assert expected in str(caught.value)


def test_a_bare_policy_is_every_firewalls_and_a_node_one_only_its_own():
    topo = topology.load("s3")
    policy = str(EXAMPLES / "s3-open.toml")
    every = _per_node((policy,), "--policy", "firewall", topo, "s3", load_policy)
    assert [(s.node, s.path.name) for s in every] == [("fwc", "s3-open.toml"), ("fws", "s3-open.toml")]
    assert every[0].config is every[1].config  # read once
    fwc = _per_node((f"fwc={EXAMPLES / 's3-fwc.toml'}",), "--policy", "firewall", topo, "s3", load_policy)
    assert [(s.node, s.config.snat) for s in fwc] == [("fwc", True)]


def _topo(*args: str, results: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SESSIONLAB, "topo", *args, "--results", str(results)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        stdin=subprocess.DEVNULL,
    )


BAD_TOPO = [
    (["s4", "--policy", f"{EXAMPLES}/s3-fwc.toml"], "topology 's4' has no firewall: --policy does not apply"),
    (
        ["s3", "--policy", f"fwx={EXAMPLES}/s3-fwc.toml"],
        "'fwx' is not a firewall of topology 's3' (firewalls: fwc, fws)",
    ),
    (
        ["s3", "--policy", f"fwc={EXAMPLES}/s3-fwc.toml", "--policy", f"{EXAMPLES}/s3-open.toml"],
        "fwc given more than one file",
    ),
    (["s3", "--policy", "fwc="], "--policy fwc=: no file after fwc="),
    (["s3", "--policy", "fws=/nonexistent.toml"], "/nonexistent.toml: cannot read"),
    (["s2", "--mode"], "--mode needs a value for topology 's2' (modes: independent, symmetric,"),
    (["s4-sdn", "--mode", "fastest"], "unknown mode 'fastest' for topology 's4-sdn' (modes: round-robin,"),
    (["s1", "--mode", "x"], "topology 's1' has no controller: --mode does not apply"),
    (["s4", "--balancer", f"lb1={EXAMPLES}/s3-fwc.toml"], "balancer: unknown key 'helpers'"),
    (
        ["s4", "--adc", f"lb3={EXAMPLES}/s4-adc.toml"],
        "'lb3' is not a balancer of topology 's4' (balancers: lb1, lb2)",
    ),
    (["s3", "--adc", f"lb1={EXAMPLES}/s4-adc.toml"], "topology 's3' has no balancer: --adc does not apply"),
    (
        ["s4", "--balancer", f"lb1={EXAMPLES}/s4-l4.toml", "--adc", f"lb1={EXAMPLES}/s4-adc.toml"],
        "lb1: --balancer and --adc on one node",
    ),
    (["s4", "--adc", f"lb1={EXAMPLES}/s4-adc.toml", "--adc-daemon", "nginx"], "cookie persistence"),
]


@pytest.mark.parametrize(("args", "expected"), BAD_TOPO, ids=[" ".join(a[:2]) for a, _ in BAD_TOPO])
def test_topo_refuses_bad_options_before_building(tmp_path, args, expected):
    results = tmp_path / "results"
    out = _topo(*args, results=results)
    assert out.returncode == 2, out.stdout + out.stderr
    assert expected in out.stderr, out.stderr
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("sessionlab: "), out.stderr
    assert not results.exists(), "a run folder was made: the lab was being built"


def test_topo_help_says_where_the_modes_are_listed():
    out = subprocess.run([SESSIONLAB, "topo", "--help"], capture_output=True, text=True, timeout=60, cwd="/")
    assert "--mode alone lists" in " ".join(out.stdout.split()), out.stdout


def test_the_live_progress_stops_while_a_prompt_has_the_terminal():
    progress = RunProgress(Console(file=io.StringIO(), force_terminal=True))
    progress.pytest_collection_finish(SimpleNamespace(items=[1, 2]))
    assert progress._progress is not None and progress._progress.live.is_started
    with progress.suspended():
        assert not progress._progress.live.is_started
    assert progress._progress.live.is_started
    progress.pytest_sessionfinish(None)
    with progress.suspended():  # stopped for good: stays stopped
        pass
    assert not progress._progress.live.is_started


def test_pytest_knows_the_pause_on_fail_option():
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--help", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert "--pause-on-fail" in out.stdout
