"""`sessionlab policy` agrees with the device: conflicting or mis-typed conntrack helpers
and bad interface names are refused in one line naming the place, and every ruleset it
prints was checked by nft itself (`nft -c` in a throwaway network namespace)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab.config import FirewallPolicy, Helper, Service, checks, validate_policy
from lab.errors import ConfigError
from lab.records import LAB_MADE, root_links
from lab.render.check import nft_check, nft_message
from lab.render.nftables import helper_name, render_ruleset

POLICIES = Path(__file__).resolve().parent / "corpus" / "policies"
SESSIONLAB = str(Path(sys.executable).with_name("sessionlab"))


def sessionlab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SESSIONLAB, *args], capture_output=True, text=True, timeout=60, cwd="/")


def needs_nft() -> None:
    if shutil.which("nft") is None or shutil.which("unshare") is None:
        pytest.skip("nft -c needs nft and unshare (scripts/bootstrap.sh)")


# --- helpers: what the kernel registers, one per port and protocol ---------------------
def test_a_helper_takes_the_protocol_it_is_registered_for():
    assert Helper(69, "tftp").proto == "udp" and Helper(21).proto == "tcp"
    assert Helper(5060, "sip").proto == "udp" and Helper(5060, "sip", "tcp").problems() == []
    assert Helper(69, "tftp", "tcp").problems() == [
        "helper.proto: the kernel's tftp helper follows udp only, not tcp"
    ]


def test_two_helpers_on_one_port_and_protocol_are_refused_naming_both():
    with pytest.raises(ConfigError) as err:
        validate_policy(FirewallPolicy(helpers=(Helper(21), Helper(21, "irc"), Helper(21))))
    assert err.value.problems == [
        "helpers[1]: irc on 21/tcp clashes with helpers[0] (ftp on 21/tcp): a session gets one helper",
        "helpers[2]: the same helper as helpers[0] (ftp on 21/tcp)",
    ]
    # Another protocol on the same port is another session: both stand.
    assert FirewallPolicy(helpers=(Helper(21), Helper(21, "tftp"))).problems() == []


def test_sip_over_udp_and_tcp_on_one_port_gets_two_objects_nft_accepts():
    helpers = (Helper(5060, "sip"), Helper(5060, "sip", "tcp"))
    assert [helper_name(h) for h in helpers] == ["sip_5060", "sip_5060_tcp"]
    policy = FirewallPolicy(helpers=(Helper(21), Helper(69, "tftp"), Helper(6667, "irc"), *helpers))
    assert policy.problems() == []
    needs_nft()
    nft_check(render_ruleset(policy, "fw-in", "fw-out"), "helpers.toml")


# --- interface names, as the kernel's dev_valid_name() takes them -----------------------
@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("", "is not an interface name (1-15 characters)"),
        ("a" * 16, "is 16 bytes; Linux interface names have at most 15"),
        ("fw/in", "holds '/', which Linux interface names cannot"),
        ("fw:0", "holds ':', which Linux interface names cannot"),
        ("fw in", "holds ' ', which Linux interface names cannot"),
        ("..", "is not an interface name"),
        ("à", "holds 'à'"),  # its UTF-8 holds 0xa0, a space to the kernel
        ('fw"in', "which an nftables rule cannot quote"),
    ],
)
def test_bad_interface_names_are_refused(name, says):
    problems: list[str] = []
    checks.interface(name, "--inside", problems)
    assert len(problems) == 1 and problems[0].startswith(f"--inside: {name!r}") and says in problems[0]


@pytest.mark.parametrize("name", ["fw-in", "a" * 15, "é", "eth0.100", "veth_1-x"])
def test_good_interface_names_pass(name):
    problems: list[str] = []
    checks.interface(name, "--inside", problems)
    assert problems == []


# --- nft's own check ---------------------------------------------------------------------
def test_nfts_complaint_becomes_one_line():
    output = (
        "/dev/stdin:24:12-18: Error: Could not process rule: No such file or directory\n"
        "\tct helper tftp_69 {\n"
        "\t          ^^^^^^^\n"
        "/dev/stdin:30:43-51: Error: Could not process rule: No such file or directory\n"
        '\t\tct state new tcp dport 69 ct helper set "tftp_69"\n'
    )
    assert nft_message(output) == (
        "line 24 (ct helper tftp_69 {): Could not process rule: No such file or directory (and 1 more)"
    )
    assert nft_message("Error: something else entirely") is None


def test_a_ruleset_nft_rejects_is_one_line_naming_the_file():
    needs_nft()
    text = render_ruleset(FirewallPolicy(helpers=(Helper(69, "tftp"),)), "fw-in", "fw-out")
    nft_check(text, "p.toml")  # as rendered: accepted
    with pytest.raises(ConfigError) as err:
        nft_check(text.replace("protocol udp", "protocol tcp"), "p.toml")  # what was rendered before
    (problem,) = err.value.problems
    assert problem.startswith("p.toml: nft rejects the rendered ruleset: line ")
    assert "ct helper tftp_69" in problem and "Could not process rule" in problem


def test_a_netdev_chain_is_checked_with_its_device_made_in_the_namespace():
    needs_nft()
    if os.geteuid() != 0:
        pytest.skip("veth pairs in the check's namespace need root here")
    text = 'table netdev t {\n\tchain c {\n\t\ttype filter hook ingress device "lb1-c" priority 0;\n\t}\n}\n'
    before = _root_links()
    nft_check(text, "dsr", devices=["lb1-c"])
    assert _root_links() == before


def _root_links() -> set[str]:
    """The root namespace's interfaces but the labs' (other workers' labs come and go beside
    the unit tests)."""
    return {n for n in root_links() if not LAB_MADE.match(n)}


# --- the command ------------------------------------------------------------------------
BAD_POLICIES = [
    ("tftp_over_tcp.toml", "helpers[0].proto: the kernel's tftp helper follows udp only, not tcp"),
    ("helpers_same_port.toml", "helpers[1]: irc on 21/tcp clashes with helpers[0] (ftp on 21/tcp)"),
    ("helpers_twice.toml", "helpers[1]: the same helper as helpers[0] (ftp on 2121/tcp)"),
    ("ftp_and_tftp_on_21.toml", "helpers[1]: tftp on 21/tcp clashes with helpers[0] (ftp on 21/tcp)"),
]


@pytest.mark.parametrize(("name", "says"), BAD_POLICIES, ids=[n for n, _ in BAD_POLICIES])
def test_conflicting_helpers_are_one_line_naming_the_file(name, says):
    result = sessionlab("policy", str(POLICIES / name))
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"sessionlab: {POLICIES / name}: ") and says in line, line
    assert result.stdout == ""


def test_bad_interface_names_are_one_line(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text("tcp_timeout = 5\n")
    result = sessionlab("policy", str(path), "--inside", "inside interface", "--outside", "x" * 16)
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert "--inside: 'inside interface' holds ' '" in line and "--outside: 'xxxxxxxxxxxxxxxx' is 16" in line
    same = sessionlab("policy", str(path), "--inside", "eth0", "--outside", "eth0")
    assert same.returncode == 2 and "both are 'eth0'" in same.stderr


def test_a_good_policy_is_printed_after_nft_accepted_it(tmp_path):
    needs_nft()
    path = tmp_path / "p.toml"
    path.write_text('[[helpers]]\nport = 69\ntype = "tftp"\n[[allow_inbound]]\nport = 80\n')
    result = sessionlab("policy", str(path), "--inside", "lan0", "--outside", "wan0")
    assert result.returncode == 0, result.stderr
    assert 'type "tftp" protocol udp' in result.stdout and 'oifname "lan0"' in result.stdout
    assert result.stderr.strip() == f"{path}: good: nft -c accepts its ruleset"
    unchecked = sessionlab("policy", str(path), "--no-check")
    assert unchecked.returncode == 0 and unchecked.stderr.strip() == f"{path}: not checked (--no-check)"


def test_every_golden_policy_is_accepted_by_nft():
    """The rulesets the suites load, checked the way `policy` checks them."""
    needs_nft()
    from test_render import POLICIES as GOLDEN_POLICIES

    for name, policy in GOLDEN_POLICIES.items():
        nft_check(render_ruleset(policy, "fw-in", "fw-out", "fw-sync"), name)
    nft_check(render_ruleset(FirewallPolicy(allow_inbound=(Service(22),)), "a", "b"), "plain")
