"""Case isolation: port blocks, and the check that names another case's flows."""

from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from lab.isolation import PortBlocks, foreign_flows


def test_blocks_are_disjoint_and_wrap_round():
    blocks = PortBlocks(first=1000, last=2000, size=400)
    a, b, c = blocks.take(), blocks.take(), blocks.take()
    assert (a, b) == (range(1000, 1400), range(1400, 1800))
    assert c == a  # 1800 + 400 > 2000: round again
    assert blocks.take(500) == range(1400, 1900)


def test_a_flow_of_another_case_is_named(tmp_path: Path):
    def seg(sport: int, dport: int) -> Ether:
        return Ether() / IP(src="10.0.1.10", dst="10.0.2.10") / TCP(sport=sport, dport=dport)

    wrpcap(str(tmp_path / "mine.pcap"), [seg(12001, 8080), seg(8080, 12001)])
    wrpcap(str(tmp_path / "mixed.pcap"), [seg(12001, 8080), seg(11007, 8080)])
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "events.log").write_text(
        "[1.0] [NEW] tcp 6 120 SYN_SENT src=10.0.1.10 dst=10.0.2.10 sport=11999 dport=8080 [UNREPLIED] "
        "src=10.0.2.10 dst=10.0.1.10 sport=8080 dport=11999\n"
        "[1.1] [NEW] udp 17 5 src=127.0.0.1 dst=127.0.0.2 sport=9000 dport=9\n"
    )
    found = foreign_flows(tmp_path, range(12000, 12500))
    assert found == {
        "mixed.pcap": ["10.0.1.10:11007 > 10.0.2.10:8080"],
        "logs/events.log": ["10.0.1.10:11999 > 10.0.2.10:8080"],
    }
