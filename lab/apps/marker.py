"""Send one marker frame out of an interface: broadcast, a local experimental ethertype
(0x88B5), no IP, so it reaches no address and any switch or host drops it harmlessly.

A capture that sees the marker has seen everything sent out of that interface before it.
It works on any interface, a switch port in the root namespace included.
"""

from __future__ import annotations

import socket
import struct
import sys

ETHERTYPE = 0x88B5
PAYLOAD = b"sessionlab-capture-marker"


def frame(source_mac: bytes) -> bytes:
    return b"\xff" * 6 + source_mac + struct.pack("!H", ETHERTYPE) + PAYLOAD


def main(argv: list[str] | None = None) -> int:
    (intf,) = argv if argv is not None else sys.argv[1:]
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind((intf, 0))
        sock.send(frame(sock.getsockname()[4]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
