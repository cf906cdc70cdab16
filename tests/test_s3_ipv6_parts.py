"""S3 over IPv6, the parts that need no network: the dual-stack plan and topology, vsftpd on
[::] (its configuration and its log's IPv6 and IPv4-mapped clients), the FTP client's
announcements per family (EPRT |2|, PORT IPv4 only) and the suite's EPRT reader, as the
kernel's helper writes a rewritten IPv6 address (in full)."""

import ftplib
import ipaddress

import pytest

from lab import topology
from lab.apps.ftp_client import Step, announcement
from lab.config import FtpServerConfig
from lab.devices.ftp_server import FtpLogLine, parse_vsftpd_log
from lab.render.vsftpd import render_vsftpd
from lab.traffic import FtpDownload
from testcases.s3_common import PortNaming, announced_port, endpoint, eprt

CLIENT6, SERVER6, FWC_OUT6 = "fd00:3:1::10", "fd00:3:3::10", "fd00:3:2::1"


def test_s3_plan6_puts_the_ipv4_numbers_in_fd00_3():
    plan, plan6 = topology.plan("s3"), topology.plan("s3", family=6)
    assert (plan6.address("client"), plan6.address("server"), plan6.address("fwc-out")) == (
        CLIENT6,
        SERVER6,
        FWC_OUT6,
    )
    assert plan6.networks == {
        "inside": "fd00:3:1::/64",
        "transit": "fd00:3:2::/64",
        "servers": "fd00:3:3::/64",
    }
    assert plan6.roles == plan.roles and set(plan6.addresses) == set(plan.addresses)


def test_s3_topology_gives_every_node_its_ipv6_address_and_routes():
    topo, plan6 = topology.load("s3"), topology.plan("s3", family=6)
    fwc, fws = topo.nodeInfo("fwc"), topo.nodeInfo("fws")
    assert fwc["addresses6"] == {"fwc-in": "fd00:3:1::1/64", "fwc-out": "fd00:3:2::1/64"}
    assert fws["addresses6"] == {"fws-out": "fd00:3:2::2/64", "fws-in": "fd00:3:3::1/64"}
    assert fwc["routes6"] == ("fd00:3:3::/64 via fd00:3:2::2",)
    assert fws["routes6"] == ("fd00:3:1::/64 via fd00:3:2::1",)
    for host, gateway in (("client", "fwc-in"), ("server", "fws-in"), ("other", "fws-out")):
        info = topo.nodeInfo(host)
        assert (info["ip6"], info["gw6"]) == (f"{plan6.address(host)}/64", plan6.address(gateway))
    assert topo.nodeInfo("client")["ip"] == "10.0.1.10/24"  # the IPv4 plan untouched


def test_vsftpd_on_both_families_listens_on_one_ipv6_socket():
    """vsftpd takes one of listen / listen_ipv6 (it exits at once with both): [::] serves
    IPv4 too (as mapped addresses); the default stays IPv4 only (the golden file)."""
    both = render_vsftpd(FtpServerConfig(root="/r", ipv6=True), "/l", "/e").splitlines()
    assert "listen=NO" in both and "listen_ipv6=YES" in both
    plain = render_vsftpd(FtpServerConfig(root="/r"), "/l", "/e").splitlines()
    assert "listen=YES" in plain and "listen_ipv6=NO" in plain
    assert FtpServerConfig(root="/r", ipv6="yes").problems() == [
        "ftp_server.ipv6: 'yes' is not true or false"
    ]


def test_vsftpd_log_with_ipv6_and_ipv4_mapped_clients():
    log = (
        f'Wed Dec  2 14:37:25 2026 [pid 16233] CONNECT: Client "{CLIENT6}"\n'
        f'Wed Dec  2 14:37:25 2026 [pid 16239] [ftp] FTP response: Client "{CLIENT6}", '
        '"227 Entering Passive Mode (0,0,0,0,117,55)."\n'
        'Wed Dec  2 14:34:02 2026 [pid 9599] CONNECT: Client "::ffff:10.0.1.10"\n'
    )
    lines = parse_vsftpd_log(log)
    assert lines[0] == FtpLogLine(16233, "CONNECT", CLIENT6, "")
    assert lines[1].text == "227 Entering Passive Mode (0,0,0,0,117,55)."
    assert lines[2].client == "10.0.1.10"  # an IPv4 client of [::], as the address it maps


@pytest.mark.parametrize(
    ("mode", "host", "port_address", "line"),
    [
        ("EPRT", CLIENT6, "", f"EPRT |2|{CLIENT6}|10001|"),
        ("EPRT", "10.0.1.10", "", "EPRT |1|10.0.1.10|10001|"),
        ("PORT", "10.0.1.10", "", "PORT 10,0,1,10,39,17"),
        ("PORT", CLIENT6, "10.0.1.10", "PORT 10,0,1,10,39,17"),  # over IPv6: an IPv4 address
    ],
)
def test_the_clients_announcement_per_family(mode, host, port_address, line):
    assert announcement(mode, host, 10001, port_address) == line


def test_the_client_refuses_a_port_over_ipv6_without_an_ipv4_address():
    with pytest.raises(Step) as err:
        announcement("PORT", CLIENT6, 10001)
    assert err.value.step == "data command" and "IPv4 address only" in err.value.error


def test_port_naming_adds_only_its_address():
    plain = FtpDownload("PORT", "f", 10000, 10001)
    assert PortNaming("PORT", "f", 10000, 10001).argv("s") == plain.argv("s")
    named = PortNaming("PORT", "f", 10000, 10001, port_address="10.0.1.10").argv(SERVER6)
    assert named == [*plain.argv(SERVER6), "--port-address", "10.0.1.10"]


# As the captures carry them: the client's EPRT, the kernel's helper rewriting it under
# NAT66 (the address in full: %pI6), vsftpd's 229 and its 227 over IPv6.
FULL = ipaddress.ip_address(FWC_OUT6).exploded


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        (f"EPRT |2|{CLIENT6}|11001|", (2, CLIENT6, 11001)),
        (f"EPRT |2|{FULL}|11001|", (2, "fd00:0003:0002:0000:0000:0000:0000:0001", 11001)),
        ("EPRT !1!10.0.1.10!5000!", (1, "10.0.1.10", 5000)),  # any delimiter
        ("EPRT |2|::1|", None),
        ("EPRT |x|::1|5|", None),
        ("EPRT", None),
    ],
)
def test_eprt_fields(text, fields):
    assert eprt(text) == fields
    assert announced_port(text) == (fields[2] if fields else None)


def test_replies_over_ipv6_through_ftplibs_parsers():
    assert announced_port("229 Entering Extended Passive Mode (|||30003|)") == 30003
    pasv = "227 Entering Passive Mode (0,0,0,0,117,55)."
    assert ftplib.parse227(pasv) == ("0.0.0.0", 30007) and announced_port(pasv) == 30007


def test_an_ipv6_endpoint_is_written_in_brackets():
    assert (endpoint(CLIENT6, 10001), endpoint("10.0.1.10", 10001)) == (
        f"[{CLIENT6}]:10001",
        "10.0.1.10:10001",
    )
