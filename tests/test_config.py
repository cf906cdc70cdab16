"""Policies as typed data: loading, validation, every problem named at once."""

from pathlib import Path

import pytest

from lab.config import FirewallPolicy, Helper, Service, TimeoutRule, load_policy, policy_from_dict
from lab.errors import ConfigError


def test_defaults_are_linux_defaults():
    policy = policy_from_dict({})
    assert policy == FirewallPolicy()
    assert policy.tcp_timeout == 432000 and not policy.loose_pickup


def test_full_policy_from_toml(tmp_path: Path):
    path = tmp_path / "p.toml"
    path.write_text(
        "tcp_timeout = 30\nloose_pickup = true\n"
        "[[timeouts]]\nport = 9000\ntimeout = 600\n"
        "[[timeouts]]\naddress = '10.0.2.0/24'\ntimeout = 60\n"
        "[[allow_inbound]]\nport = 22\naddress = '10.0.1.10'\n"
    )
    policy = load_policy(path)
    assert policy.timeouts == (TimeoutRule(600, port=9000), TimeoutRule(60, address="10.0.2.0/24"))
    assert policy.allow_inbound == (Service(22, address="10.0.1.10"),)
    assert policy.loose_pickup


def test_every_problem_is_reported_with_its_place():
    with pytest.raises(ConfigError) as err:
        policy_from_dict(
            {
                "tcp_timeout": 0,
                "colour": "red",
                "timeouts": [{"port": 70000, "timeout": 5}, {"timeout": 5}, {"port": 1}],
                "allow_inbound": [{"port": 22, "proto": "sctp", "address": "10.0.1.300"}],
            }
        )
    problems = err.value.problems
    assert any("unknown key 'colour'" in p for p in problems)
    assert any(p.startswith("tcp_timeout:") for p in problems)
    assert any(p.startswith("timeouts[0].port") for p in problems)
    assert any(p.startswith("timeouts[1]: names neither") for p in problems)
    assert any(p.startswith("timeouts[2]: missing 'timeout'") for p in problems)
    assert any(p.startswith("allow_inbound[0].proto") for p in problems)
    assert any(p.startswith("allow_inbound[0].address") for p in problems)


def test_reset_with_loose_pickup_is_refused():
    with pytest.raises(ConfigError, match="reset_on_expiry with loose_pickup"):
        FirewallPolicy().with_changes(loose_pickup=True, reset_on_expiry=True)


def test_bad_toml_names_the_file(tmp_path: Path):
    path = tmp_path / "broken.toml"
    path.write_text("tcp_timeout = = 3")
    with pytest.raises(ConfigError, match="broken.toml: not valid TOML"):
        load_policy(path)


def test_ftp_options_from_toml_and_their_bad_values(tmp_path: Path):
    good = tmp_path / "ftp.toml"
    good.write_text(
        "snat = true\n[[helpers]]\nport = 2121\n[[allow_inbound]]\nport = 30000\nport_end = 30009\n"
    )
    policy = load_policy(good)
    assert policy.snat and policy.helpers == (Helper(2121),)
    assert policy.allow_inbound == (Service(30000, port_end=30009),)
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[helpers]]\nport = 21\ntype = "ftpx"\n[[allow_inbound]]\nport = 30009\nport_end = 30000\n'
        "[[allow_inbound]]\nport = 1\nport_end = 70000\n"
    )
    with pytest.raises(ConfigError) as err:
        load_policy(bad)
    assert err.value.problems == [
        f"{bad}: allow_inbound[0]: port range 30009-30000 is reversed (port_end below port)",
        f"{bad}: allow_inbound[1].port_end: 70000 is not a port number (1-65535)",
        f"{bad}: helpers[0].type: 'ftpx' is not a conntrack helper (known: ftp, tftp, irc, sip)",
    ]


def test_s6_options_from_toml_and_their_bad_values(tmp_path: Path):
    good = tmp_path / "s6.toml"
    good.write_text('udp_timeout = 5\nudp_stream_timeout = 40\nsnat = true\nfull_cone = "10.0.1.10"\n')
    policy = load_policy(good)
    assert (policy.udp_timeout, policy.udp_stream_timeout, policy.full_cone) == (5, 40, "10.0.1.10")
    assert FirewallPolicy().udp_timeout is None and FirewallPolicy().full_cone is None
    with pytest.raises(ConfigError) as err:
        policy_from_dict({"udp_timeout": 0, "udp_stream_timeout": "2m", "full_cone": "10.0.1.0/24"})
    assert err.value.problems == [
        "udp_timeout: 0 is not a timeout in whole seconds (1-2000000)",
        "udp_stream_timeout: '2m' is not a timeout in whole seconds (1-2000000)",
        "full_cone: '10.0.1.0/24' is not an IPv4 address",
        "full_cone: needs snat (the mapping it opens to everyone outside)",
    ]
    with pytest.raises(ConfigError, match="full_cone: 'ci' is not an IPv4 address"):
        FirewallPolicy(snat=True).with_changes(full_cone="ci")
