"""S3's reading of FTP announcements (`testcases.s3_common.announced_port`): the data port a
PORT/EPRT command or a 227/229 reply names, as vsftpd logs them and as a capture carries
them. The replies go through ftplib's parsers (those the lab's FTP client uses); PORT and
EPRT, which ftplib only writes, through the suite's own small parser."""

import ftplib

import pytest

from lab.devices.ftp_server import parse_vsftpd_log
from testcases.s3_common import announced_port

# Announcements as the wire carries them (a control session's payload, CRLF and all): the
# lab's client (ftplib) and curl / lftp announcing, vsftpd answering, and fwc's ALG
# rewriting a PORT and an EPRT to its own address under NAT.
ON_THE_WIRE = [
    ("PORT 10,0,1,10,39,16\r\n", 10000),
    ("PORT 10,0,2,1,39,16\r\n", 10000),
    ("EPRT |1|10.0.1.10|40445|\r\n", 40445),
    ("EPRT |1|10.0.2.1|40445|\r\n", 40445),
    ("227 Entering Passive Mode (10,0,3,10,117,48).\r\n", 30000),
    ("229 Entering Extended Passive Mode (|||30009|)\r\n", 30009),
]

# vsftpd's log (log_ftp_protocol) of one passive and one active download, line by line.
VSFTPD_LOG = "\n".join(
    f'Wed Dec  2 01:04:46 2026 [pid {pid}] [ftp] FTP {kind}: Client "10.0.1.10", "{text}"'
    for pid, kind, text in (
        (4242, "command", "PASV"),
        (4242, "response", "227 Entering Passive Mode (10,0,3,10,117,49)."),
        (4243, "command", "EPRT |1|10.0.1.10|12001|"),
        (4243, "response", "200 EPRT command successful. Consider using EPSV."),
        (4244, "response", "229 Entering Extended Passive Mode (|||31005|)"),
    )
)


@pytest.mark.parametrize(("line", "port"), ON_THE_WIRE, ids=lambda v: str(v).split(" ")[0])
def test_announcements_on_the_wire(line, port):
    assert announced_port(line) == port


def test_announcements_in_vsftpds_log():
    announced = {
        line.text.split(" ")[0]: announced_port(line.text)
        for line in parse_vsftpd_log(VSFTPD_LOG)
        if line.text.startswith(("PORT", "EPRT", "227", "229"))
    }
    assert announced == {"227": 30001, "EPRT": 12001, "229": 31005}


def test_the_replies_read_as_the_lab_client_reads_them():
    """The same port as ftplib gives the client (lab/apps/ftp_client.py)."""
    pasv = "227 Entering Passive Mode (10,0,3,10,117,48)."
    epsv = "229 Entering Extended Passive Mode (|||30009|)"
    assert announced_port(pasv) == ftplib.parse227(pasv)[1]
    assert announced_port(epsv) == ftplib.parse229(epsv, ("10.0.3.10", 21))[1]


def test_the_commands_read_as_the_lab_client_writes_them():
    """The client's PORT and EPRT lines (lab/apps/ftp_client.py), for every byte split."""
    for port in (20, 255, 256, 10000, 65535):
        assert (
            announced_port("PORT " + ",".join(["10", "0", "1", "10", str(port >> 8), str(port & 0xFF)]))
            == port
        )
        assert announced_port(f"EPRT |1|10.0.1.10|{port}|") == port


@pytest.mark.parametrize(
    "line",
    [
        "227 Entering Passive Mode (10,0,3,10).",  # too few numbers
        "229 Entering Extended Passive Mode (|||x|)",  # not a port
        "229 Entering Extended Passive Mode",  # no parentheses
        "PORT 10,0,1",
        "EPRT |1|10.0.1.10|",
        "EPRT",
        "200 PORT command successful.",  # not an announcement
        "",
    ],
)
def test_what_is_no_announcement_names_no_port(line):
    assert announced_port(line) is None
