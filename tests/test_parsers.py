"""Parsers of what the kernel, tools and lab apps print: conntrack lines, packets, pcap files,
the apps' JSON-lines logs."""

import struct
from pathlib import Path

import pytest

from lab import conntrack
from lab.errors import LabError
from lab.events import proc_events, read_events, read_json_lines, read_lines, read_records
from lab.packets import TcpSegment, build_tcp, checksum, parse_ethernet_tcp, parse_ipv4_tcp, read_tcp_pcap

LIST = """\
tcp      6 2 ESTABLISHED src=10.0.1.10 dst=10.0.2.10 sport=45964 dport=8080 src=10.0.2.10 dst=10.0.1.10 \
sport=8080 dport=45964 [ASSURED] mark=0 use=1
udp      17 28 src=10.0.1.10 dst=10.0.2.10 sport=5000 dport=53 [UNREPLIED] src=10.0.2.10 dst=10.0.1.10 \
sport=53 dport=5000 mark=0 use=1
conntrack v1.4.7 (conntrack-tools): 2 flow entries have been shown.
"""


def test_conntrack_list():
    tcp, udp = conntrack.parse_table(LIST)
    assert (tcp.src, tcp.sport, tcp.dst, tcp.dport, tcp.state, tcp.timeout) == (
        "10.0.1.10",
        45964,
        "10.0.2.10",
        8080,
        "ESTABLISHED",
        2,
    )
    assert tcp.flags == ("ASSURED",)
    assert udp.proto == "udp" and udp.state is None and udp.flags == ("UNREPLIED",)


def test_conntrack_events():
    new = conntrack.parse_line(
        "[1795873459.885000]\t    [NEW] tcp      6 120 SYN_SENT src=1.1.1.1 dst=2.2.2.2 "
        "sport=1 dport=2 [UNREPLIED] src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1"
    )
    gone = conntrack.parse_line(
        " [DESTROY] tcp      6 src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 "
        "src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1 [ASSURED]"
    )
    assert new is not None and gone is not None
    assert (new.event, new.state, new.timeout, new.stamp) == ("NEW", "SYN_SENT", 120, 1795873459.885)
    assert (gone.event, gone.timeout, gone.state) == ("DESTROY", None, None)
    assert new.key == gone.key


def test_tcp_round_trip_with_valid_checksums():
    seg = TcpSegment("10.0.2.10", "10.0.1.10", 8080, 40000, 0xFFFFFFFF, 7, "R", 0)
    packet = build_tcp(seg, b"")
    assert checksum(packet[:20]) == 0
    pseudo = packet[12:20] + struct.pack("!BBH", 0, 6, len(packet) - 20)
    assert checksum(pseudo + packet[20:]) == 0
    back = parse_ipv4_tcp(packet)
    assert back is not None and back.key == seg.key and back.flags == "R" and back.seq == 0xFFFFFFFF


def test_flags_and_payload_length():
    seg = parse_ipv4_tcp(build_tcp(TcpSegment("1.1.1.1", "2.2.2.2", 1, 2, 0, 0, "PA", 0), b"hello\n"))
    assert seg is not None and seg.flags == "PA" and seg.payload_len == 6
    assert parse_ipv4_tcp(b"\x45" + b"\0" * 8 + b"\x11" + b"\0" * 10) is None  # UDP


def test_pcap_reader(tmp_path: Path):
    frame = b"\xff" * 12 + b"\x08\x00" + build_tcp(TcpSegment("1.1.1.1", "2.2.2.2", 1, 2, 5, 6, "SA", 0))
    arp = b"\xff" * 12 + b"\x08\x06" + b"\0" * 28
    data = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for sec, usec, body in ((10, 500000, frame), (11, 0, arp)):
        data += struct.pack("<IIII", sec, usec, len(body), len(body)) + body
    path = tmp_path / "x.pcap"
    path.write_bytes(data)
    (seg,) = read_tcp_pcap(path)
    assert seg.time == 10.5 and seg.flags == "SA" and (seg.seq, seg.ack) == (5, 6)
    assert parse_ethernet_tcp(arp) is None


def test_conntrack_accounting_per_direction():
    line = (
        "tcp      6 115 TIME_WAIT src=10.0.0.11 dst=10.0.1.11 sport=10006 dport=8080 packets=6 bytes=328 "
        "src=10.0.1.11 dst=10.0.0.11 sport=8080 dport=10006 packets=4 bytes=250 [ASSURED] mark=0 use=1"
    )
    session = conntrack.parse_line(line)
    assert session is not None and (session.packets, session.reply_packets) == (6, 4)
    unreplied = conntrack.parse_line(
        "tcp 6 100 SYN_SENT src=10.0.0.11 dst=10.0.1.11 sport=1 dport=2 packets=3 bytes=180 [UNREPLIED] "
        "src=10.0.1.11 dst=10.0.0.11 sport=2 dport=1 packets=0 bytes=0 mark=0 use=1"
    )
    assert unreplied is not None and (unreplied.packets, unreplied.reply_packets) == (3, 0)


EXPECT = """\
    [NEW] 300 proto=6 src=10.0.3.10 dst=10.0.1.10 sport=0 dport=20210 mask-src=255.255.255.255 \
mask-dst=255.255.255.255 sport=0 dport=65535 master-src=10.0.1.10 master-dst=10.0.3.10 sport=20200 \
dport=21 class=0 helper=ftp
297 proto=6 src=10.0.1.10 dst=10.0.3.10 sport=0 dport=30004 mask-src=255.255.255.255 \
mask-dst=255.255.255.255 sport=0 dport=65535 master-src=10.0.1.10 master-dst=10.0.3.10 sport=20403 \
dport=21 class=0 helper=ftp
conntrack v1.4.7 (conntrack-tools): 2 expectation events have been shown.
"""


def test_expectations_as_data():
    from lab.conntrack import Expectation, parse_expectations

    active, passive = parse_expectations(EXPECT)
    assert active == Expectation(
        300, "tcp", "10.0.3.10", "10.0.1.10", 20210, ("10.0.1.10", 20200, "10.0.3.10", 21), "ftp", "NEW"
    )
    assert (passive.event, passive.dport, passive.timeout) == (None, 30004, 297)


def test_vsftpd_log_as_data():
    from lab.devices.ftp_server import FtpLogLine, parse_vsftpd_log

    log = (
        'Sat Nov 28 21:40:01 2026 [pid 4711] CONNECT: Client "10.0.2.1"\n'
        'Sat Nov 28 21:40:01 2026 [pid 4711] FTP command: Client "10.0.2.1", "PORT 10,0,1,10,78,52"\n'
        'Sat Nov 28 21:40:01 2026 [pid 4711] FTP response: Client "10.0.2.1", "500 Illegal PORT command."\n'
        'Sat Nov 28 21:40:02 2026 [pid 4712] [ftp] OK DOWNLOAD: Client "10.0.1.10", "/file.bin", 26 bytes\n'
    )
    lines = parse_vsftpd_log(log)
    assert lines[1] == FtpLogLine(4711, "FTP command", "10.0.2.1", "PORT 10,0,1,10,78,52")
    assert lines[2].text == "500 Illegal PORT command."
    assert (lines[3].kind, lines[3].client) == ("OK DOWNLOAD", "10.0.1.10")


def test_ovs_flows_parse_with_their_counters_and_matches():
    from lab.ovs import parse_flows

    text = (Path(__file__).parent / "samples" / "ovs-dump-flows.txt").read_text()
    arp_flow, session, miss = parse_flows(text)
    assert (arp_flow.priority, arp_flow.n_packets, arp_flow.actions) == (200, 3, "CONTROLLER:65535")
    assert arp_flow.match == {"arp": "", "arp_tpa": "10.0.1.100"}
    assert session.cookie == 0x4C420001 and session.idle_timeout == 10
    assert session.match["nw_src"] == "10.0.1.12" and session.match["tp_src"] == "22100"
    assert (miss.table, miss.priority, miss.match) == (1, 0, {})


def test_a_daemons_refusal_becomes_its_first_error_line():
    from lab.devices.adc import first_complaint

    haproxy = (
        "[NOTICE]   (2673) : haproxy version is 2.6.12\n"
        "[ALERT]    (2673) : config : parsing [/x.cfg:15] : cannot stat certificate '/n.pem'\n"
        "[ALERT]    (2673) : config : Fatal errors found in configuration.\n"
    )
    assert first_complaint(haproxy) == "config : parsing [/x.cfg:15] : cannot stat certificate '/n.pem'"
    nginx = (
        'nginx: [emerg] unknown directive "foo" in /x.conf:3\nnginx: configuration file /x.conf test failed\n'
    )
    assert first_complaint(nginx) == 'unknown directive "foo" in /x.conf:3'
    assert first_complaint("") == "no output"


def test_wrk_summary_parses_with_errors_and_rate():
    from lab.traffic import parse_wrk

    got = parse_wrk((Path(__file__).parent / "samples" / "wrk.txt").read_text())
    assert got["requests"] == 3690 and got["seconds"] == 3.0 and got["requests_per_s"] == 1230.0
    assert got["socket_errors"] == {"connect": 0, "read": 2, "write": 0, "timeout": 1}
    assert got["non_2xx"] == 5
    with pytest.raises(LabError, match="no summary"):
        parse_wrk("unable to connect to 10.0.1.100:80 Connection refused")


SESSION_EVENTS = (Path(__file__).parent / "samples" / "conntrack-session-events.txt").read_text()


def test_a_session_log_gives_each_sessions_span_counts_and_end_reason():
    records = conntrack.session_log(SESSION_EVENTS.splitlines() + ["conntrack v1.4.7: 15 flow events"])
    by_port = {r.sport: r for r in records}
    assert [r.sport for r in records] == [12000, 12001, 12002, 12003]  # in order of start
    fin = by_port[12000]
    assert (fin.end_reason, fin.last_state, fin.start, fin.end) == (
        "FIN",
        "TIME_WAIT",
        1795900000.1,
        1795900120.301,
    )
    assert (fin.packets, fin.bytes, fin.reply_packets, fin.reply_bytes) == (6, 420, 5, 1500)
    assert (by_port[12001].end_reason, by_port[12001].last_state) == ("RST", "CLOSE")
    assert by_port[12002].end_reason == "timeout" and by_port[12002].proto == "udp"
    assert (by_port[12003].end_reason, by_port[12003].last_state) == ("timeout", "ESTABLISHED")
    still = conntrack.session_log(SESSION_EVENTS.splitlines()[:3])
    assert [(r.end_reason, r.end, r.bytes) for r in still] == [("open", None, None)]


APP_LOG = (
    '{"event": "listening", "t": 1.0, "port": 80}\n'
    "Traceback (most recent call last): not JSON\n"
    '{"event": "accept", "t": 2.0, "peer": "10.0.1.10:40000"}\n'
    '{"event": "recv", "t": 2.1, "peer": "10.0.1.10:40000", "data": "hi"}\n'
    '{"event": "accept", "t": 3.0, "peer": "10.0.1.11:40001"}\n'
    '{"i": 0, "ok": true}\n'
    '{"event": "recv", "t": 3.1, "pe'
)


class _Logged:
    """A process as the reader sees one: its output so far."""

    def __init__(self, text: str):
        self.text = text

    def output(self) -> str:
        return self.text


def test_the_event_reader_keeps_whole_json_lines_only():
    assert read_lines("a\nb") == ["a"] and read_lines("a\nb\n") == ["a", "b"] and read_lines("") == []
    rows = read_json_lines(APP_LOG)  # the half-written last line and the traceback are left out
    assert len(rows) == 5
    assert [e["event"] for e in read_events(APP_LOG)] == ["listening", "accept", "recv", "accept"]
    assert read_records(APP_LOG) == [{"i": 0, "ok": True}]
    assert read_events(APP_LOG + 'er": "10.0.1.11:40001", "data": "x"}\n')[-1]["data"] == "x"


def test_proc_events_filter_by_kind_and_peer():
    proc = _Logged(APP_LOG)
    assert [e["t"] for e in proc_events(proc, "accept")] == [2.0, 3.0]
    assert [e["event"] for e in proc_events(proc, peer="10.0.1.10:40000")] == ["accept", "recv"]
    assert [e["t"] for e in proc_events(proc, "recv", "10.0.1.10:40000")] == [2.1]
    assert proc_events(proc, "done") == []
