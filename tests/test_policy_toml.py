"""A policy written as TOML (what a case applied, beside its ruleset) reads back equal."""

from __future__ import annotations

import tomllib

import pytest

from lab.config import FirewallPolicy
from lab.config.checks import to_toml
from lab.config.firewall import Helper, Service, TimeoutRule, policy_from_dict

POLICIES = {
    "defaults": FirewallPolicy(),
    "s1 fix a": FirewallPolicy(tcp_timeout=2, timeouts=(TimeoutRule(timeout=20, port=9000),)),
    "s3 alg nat": FirewallPolicy(
        tcp_timeout=30,
        snat=True,
        helpers=(Helper(port=21),),
        allow_inbound=(Service(port=21, address="10.0.2.10"), Service(port=30000, port_end=30009)),
    ),
    "s5 defences": FirewallPolicy(
        max_sessions=200,
        per_source_limit=20,
        synproxy=True,
        early_drop=True,
        half_open_timeout=5,
        allow_inbound=(Service(port=80),),
    ),
    "udp": FirewallPolicy(udp_timeout=3, udp_stream_timeout=6, loose_pickup=True),
}


@pytest.mark.parametrize("name", POLICIES)
def test_a_policy_as_toml_reads_back_equal(name):
    policy = POLICIES[name]
    assert policy_from_dict(tomllib.loads(to_toml(policy))) == policy


def test_only_what_differs_from_the_defaults_is_written():
    assert to_toml(FirewallPolicy()) == ""
    assert to_toml(FirewallPolicy(tcp_timeout=2)).strip() == "tcp_timeout = 2"


def test_the_balancer_examples_as_toml_read_back_equal():
    """The L4 balancer and the ADC (pools with servers and a check, routes, redirects as
    pairs) written as TOML read back equal: what S4's cases applied, redone by `topo`."""
    from pathlib import Path

    from lab.config.balancing import adc_from_dict, balancer_from_dict, load_adc, load_balancer

    examples = Path(__file__).resolve().parent.parent / "examples"
    adc = load_adc(examples / "s4-adc.toml")
    assert adc_from_dict(tomllib.loads(to_toml(adc))) == adc
    balancer = load_balancer(examples / "s4-l4.toml")
    assert balancer_from_dict(tomllib.loads(to_toml(balancer, "a header\nof two lines"))) == balancer
    assert to_toml(balancer, "a header\nof two lines").startswith("# a header\n# of two lines\n")
