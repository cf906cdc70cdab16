"""Send one marker datagram out of an interface (limited broadcast, UDP port 9, discarded).

A capture that sees the marker has seen everything sent out of that interface before it.
"""

from __future__ import annotations

import socket
import sys

MARKER_PORT = 9
PAYLOAD = b"sessionlab-capture-marker"


def main(argv: list[str] | None = None) -> int:
    (intf,) = argv if argv is not None else sys.argv[1:]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, intf.encode())
        sock.sendto(PAYLOAD, ("255.255.255.255", MARKER_PORT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
