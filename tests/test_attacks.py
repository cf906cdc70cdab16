"""Crafted packets and floods: bounded command lines aimed at lab addresses, reports as data."""

from pathlib import Path

import pytest

from lab.attacks import (
    CRAFTED,
    NO_SESSION,
    conntrack_slab,
    crafted_nmap_argv,
    hping3_argv,
    nmap_argv,
    nmap_flags,
    parse_hping3,
    parse_nmap_xml,
)
from lab.errors import ConfigError, LabError

SAMPLES = Path(__file__).parent / "samples"


def test_a_flood_is_bounded_and_stays_in_the_lab():
    argv = hping3_argv("10.0.1.10", 80, ("-S",), 5000, interval_us=200, random_source=True)
    assert argv == [
        "hping3",
        "-q",
        "-n",
        "-c",
        "5000",
        "-i",
        "u200",
        "-p",
        "80",
        "-S",
        "--rand-source",
        "10.0.1.10",
    ]
    assert hping3_argv("10.0.1.10", 80, ("-A",), 1, source_port=12000)[-4:] == [
        "-s",
        "12000",
        "-k",
        "10.0.1.10",
    ]
    with pytest.raises(ConfigError, match="only to lab addresses"):
        hping3_argv("8.8.8.8", 53, ("-S",), 1)
    with pytest.raises(ConfigError, match="always ends"):
        hping3_argv("10.0.1.10", 80, ("-S",), 0)
    assert {c.name for c in CRAFTED} >= {"ACK scan", "XMAS scan", "NULL scan", "out-of-state RST"}


def test_tool_reports_as_data():
    out = "HPING 10.0.1.10 (fw 10.0.1.10): S set, 40 headers + 0 data bytes\n\n"
    out += "--- 10.0.1.10 hping statistic ---\n"
    assert parse_hping3(out + "500 packets tramitted, 12 packets received, 98% packet loss\n") == {
        "sent": 500,
        "received": 12,
    }
    with pytest.raises(LabError, match="no statistics"):
        parse_hping3("hping3: unknown host")
    assert parse_nmap_xml((SAMPLES / "nmap-ack.xml").read_text()) == {
        22: "filtered",
        80: "unfiltered",
        443: "filtered",
    }
    assert nmap_argv("ACK scan", "10.0.1.10", "22,80,443", 12000)[:2] == ["nmap", "-sA"]
    with pytest.raises(ConfigError, match="no scan"):
        nmap_argv("ping scan", "10.0.1.10", "80", 12000)


def test_the_kernels_size_of_a_session_entry():
    slab = (
        "slabinfo - version: 2.1\n"
        "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables ...\n"
        "nf_conntrack        1234   1400    320   25    2 : tunables 0 0 0 : slabdata 56 56 0\n"
    )
    assert conntrack_slab(slab) == (1234, 320)
    assert conntrack_slab("kmalloc-64 1 1 64 64 1\n") is None


def test_a_spoofed_flood_from_consecutive_ports():
    argv = hping3_argv(
        "10.0.1.10",
        80,
        ("-S",),
        100,
        interval_us=10_000,
        source_port=12000,
        keep_port=False,
        spoof="10.0.2.166",
    )
    assert argv[-5:] == ["-s", "12000", "-a", "10.0.2.166", "10.0.1.10"], "hping3 counts up from -s unless -k"
    with pytest.raises(ConfigError, match="only to lab addresses"):
        hping3_argv("10.0.1.10", 80, ("-S",), 1, spoof="192.0.2.1")


def test_the_early_drop_agent_reads_what_conntrack_deleted():
    from lab.agents.early_drop import _DELETED

    found = _DELETED.search("conntrack v1.4.7 (conntrack-tools): 57 flow entries have been deleted.")
    assert found is not None and found[1] == "57"


def test_nmap_over_ipv6_and_crafted_segments():
    # IPv4 unchanged; IPv6 targets in the lab's ULA plans get -6, others are refused.
    ipv4 = nmap_argv("ACK scan", "10.0.1.10", "80,5001", 12000)
    assert ipv4 == ["nmap", "-sA", "-p", "80,5001", "-g", "12000", "-n", "-Pn", "--max-retries", "0",
                    "-oX", "-", "10.0.1.10"]  # fmt: skip
    assert nmap_argv("ACK scan", "fd00:5:1::10", "80", 12000)[:3] == ["nmap", "-6", "-sA"]
    for outside in ("2001:db8::1", "fe80::1", "8.8.8.8", "srv"):
        with pytest.raises(ConfigError, match="only to lab addresses"):
            nmap_argv("SYN scan", outside, "80", 12000)
    # hping3 speaks IPv4 only: an IPv6 target is refused.
    with pytest.raises(ConfigError, match="only to lab addresses"):
        hping3_argv("fd00:5:1::10", 80, ("-A",), 1)
    # --scanflags takes the TCP flags byte: FIN 1, SYN 2, RST 4, PSH 8, ACK 16, URG 32.
    assert [nmap_flags(f) for f in ("A", "F", "FPU", "", "R", "SA", "FA", "PA")] == [
        "16", "1", "41", "0", "4", "18", "17", "24"
    ]  # fmt: skip
    mid = next(c for c in NO_SESSION if c.flags == "PA")
    argv = crafted_nmap_argv(mid, "fd00:5:1::10", 5001, 12001)
    assert argv[:7] == ["nmap", "-6", "-sS", "--scanflags", "24", "--data-length", "20"]
    assert argv[-1] == "fd00:5:1::10" and argv[argv.index("-g") + 1] == "12001"
    fragmented = next(c for c in CRAFTED if "-f" in c.hping3)
    with pytest.raises(ConfigError, match="fragments"):
        crafted_nmap_argv(fragmented, "fd00:5:1::10", 5001, 12001)


def test_nmap_ipv6_report_as_data():
    """The same reader as over IPv4: nmap -6's SYN scan of c1 behind the stateful policy."""
    assert parse_nmap_xml((SAMPLES / "nmap6-syn.xml").read_text()) == {80: "closed", 5001: "filtered"}
