"""A UDP echo server that logs every datagram in and out as JSON lines: the server end of
a UDP lifetime probe (`udp_probe`).

- `echo <n>` is answered at once with the same text;
- `push <seconds>` is answered with `pushed` after <seconds>, to the address:port it came
  from and from the same socket: a datagram the client's side of the path must still let
  in after that idle time;
- anything else is logged and not answered.

Every datagram is logged with its peer (the address:port the server saw, a NAT's rewritten
source included), the service port and the local address it was sent to (`recv`); every
answer is logged just before it leaves (`send`), so a client that has it finds it in the
log. Answers leave from the address the request was sent to (IP_PKTINFO), so a server with
several addresses answers as the one the client spoke to. On SIGTERM it exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import select
import socket
import struct
import sys
import time
from dataclasses import dataclass, field

from lab.apps.echo_server import push_delay
from lab.apps.events import emit, stop_on_sigterm

IP_PKTINFO = 8  # linux/in.h; Python's socket module does not export it
PKTINFO = struct.Struct("=i4s4s")  # struct in_pktinfo {ipi_ifindex, ipi_spec_dst, ipi_addr}
PUSHED = b"pushed"


@dataclass(order=True)
class Push:
    """A `pushed` owed to a client: when, on which socket, to whom, from which address."""

    due: float
    peer: tuple[str, int] = field(compare=False)
    local: str = field(compare=False)
    port: int = field(compare=False)


def answer(data: bytes) -> bytes | None:
    """The immediate answer to a datagram: the same text for `echo <n>`, else None."""
    words = data.split()
    return data if len(words) == 2 and words[0] == b"echo" else None


class UdpServer:
    """UDP sockets, one per port, in one poll loop; pushes are timers of that loop."""

    def __init__(self, ports: list[int]) -> None:
        self.socks: dict[int, socket.socket] = {}  # service port -> its socket
        self.pushes: list[Push] = []  # a heap, the next one due first
        try:
            self._listen(ports)
        except BaseException:
            self.close()
            raise

    def _listen(self, ports: list[int]) -> None:
        for port in ports:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            sock.bind(("0.0.0.0", port))
            bound = sock.getsockname()[1]  # the kernel's pick for port 0
            self.socks[bound] = sock
            emit("listening", port=bound)

    def serve(self) -> None:
        poller = select.poll()
        by_fd = {}
        for port, sock in self.socks.items():
            poller.register(sock.fileno(), select.POLLIN)
            by_fd[sock.fileno()] = port
        while True:
            timeout = max(0.0, self.pushes[0].due - time.monotonic()) if self.pushes else None
            for fd, _ in poller.poll(None if timeout is None else timeout * 1000):
                self._read(by_fd[fd])
            self._push_due()

    def close(self) -> None:
        for sock in self.socks.values():
            sock.close()
        self.socks.clear()

    def _read(self, port: int) -> None:
        sock = self.socks[port]
        try:
            data, ancillary, _, peer = sock.recvmsg(65535, socket.CMSG_SPACE(PKTINFO.size))
        except OSError as exc:  # an ICMP error of an earlier answer, reported here
            emit("error", port=port, error=exc.__class__.__name__, errno=exc.errno)
            return
        local = "0.0.0.0"
        for level, kind, value in ancillary:
            if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(value) >= PKTINFO.size:
                local = socket.inet_ntoa(PKTINFO.unpack_from(value)[2])
        text = data.decode(errors="replace")
        emit("recv", peer=f"{peer[0]}:{peer[1]}", port=port, to=local, data=text)
        delay = push_delay(data)
        if delay is not None:
            heapq.heappush(self.pushes, Push(time.monotonic() + delay, peer, local, port))
            return
        reply = answer(data)
        if reply is not None:
            self._send(port, peer, local, reply)

    def _push_due(self) -> None:
        now = time.monotonic()
        while self.pushes and self.pushes[0].due <= now:
            push = heapq.heappop(self.pushes)
            self._send(push.port, push.peer, push.local, PUSHED)

    def _send(self, port: int, peer: tuple[str, int], local: str, data: bytes) -> None:
        """Send `data` to `peer` from the service `port` and the address `local`."""
        emit("send", peer=f"{peer[0]}:{peer[1]}", port=port, data=data.decode(errors="replace"))
        ancillary = []
        if local != "0.0.0.0":
            source = PKTINFO.pack(0, socket.inet_aton(local), bytes(4))
            ancillary = [(socket.IPPROTO_IP, IP_PKTINFO, source)]
        try:
            self.socks[port].sendmsg([data], ancillary, 0, peer)
        except OSError as exc:
            emit(
                "error", peer=f"{peer[0]}:{peer[1]}", port=port, error=exc.__class__.__name__, errno=exc.errno
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--port", type=int, action="append", required=True, help="UDP port to listen on (repeat; 0: any)"
    )
    args = parser.parse_args(argv)
    stop_on_sigterm()
    with contextlib.closing(UdpServer(args.port)) as server:
        server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
