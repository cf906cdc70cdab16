"""Send one hand-made TCP segment from this namespace (an out-of-state ACK, say), over
IPv4 or IPv6 (the addresses say which)."""

from __future__ import annotations

import argparse
import sys

from lab.apps.events import report
from lab.packets import TcpSegment, send_tcp


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--src", required=True)
    parser.add_argument("--dst", required=True)
    parser.add_argument("--sport", type=int, required=True)
    parser.add_argument("--dport", type=int, required=True)
    parser.add_argument("--flags", default="A")
    parser.add_argument("--seq", type=int, default=1000)
    parser.add_argument("--ack", type=int, default=1000)
    args = parser.parse_args(argv)
    seg = TcpSegment(args.src, args.dst, args.sport, args.dport, args.seq, args.ack, args.flags, 0)
    send_tcp(seg)
    report({"sent": seg.to_dict()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
