"""The impairment benchmark's per-hop counters, read from the tools' own output."""

import os

from bench.impairment_path import Counters, cpu_seconds, socket_drops, udp_rcvbuf_errors

SS = """Netid Recv-Q Send-Q Local Address:Port Peer Address:PortProcess
p_raw 0 0 [0]:* * skmem:(r0,rb212992,t0,tb212992,f0,w0,o0,bl0,d0)
p_raw 0 0   *:sl459ds1-eth1   * skmem:(r0,rb212992,t0,tb212992,f0,w0,o176,bl0,d1234)
p_raw 0 0   *:sl459ds1-eth11  * skmem:(r0,rb212992,t0,tb212992,f0,w0,o176,bl0,d99)
"""

SNMP = """Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors
Udp: 296084 3 1102 12 1102 0 0
UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors
UdpLite: 0 0 0 0 0 0 0
"""


def test_the_switch_ports_socket_drops_are_its_own():
    assert socket_drops(SS, "sl459ds1-eth1") == 1234  # not eth11's
    assert socket_drops(SS, "sl459ds1-eth2") == 0


def test_the_receivers_udp_buffer_drops():
    assert udp_rcvbuf_errors(SNMP) == 1102


def test_counters_since_a_reading_and_this_process_cpu():
    before = Counters(arrived=10, left=10, switch_dropped=0, receiver_dropped=1, relay_cpu=0.5)
    after = Counters(arrived=110, left=109, switch_dropped=7, receiver_dropped=2, relay_cpu=0.75)
    assert after.since(before) == {
        "arrived": 100,
        "left": 99,
        "switch_dropped": 7,
        "receiver_dropped": 1,
        "relay_cpu": 0.25,
    }
    assert cpu_seconds(os.getpid()) >= 0.0
