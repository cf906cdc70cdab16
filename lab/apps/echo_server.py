"""A line echo server that logs what it sees as JSON lines: the server end of a probe.

Every accept, every line received (with its text), every error (ECONNRESET) and close is
logged with the peer (address:port, an IPv6 address unbracketed as the probes log their
own end), so a test can say whether the server ever saw a given segment.

Each port is served over IPv4 and IPv6, one socket per family (an IPv6 socket taking IPv4
too would log IPv4 peers as ::ffff:a.b.c.d); a namespace without IPv6 gets IPv4 only, and
the `listening` event names the families.

A line `push <seconds>` is not echoed: after <seconds> the server sends `pushed` on that
connection by itself (logged as `push`), the service-initiated direction of a probe.
On SIGTERM it aborts (RST) every open connection, logged as `abort`, and exits 0.
"""

from __future__ import annotations

import argparse
import errno
import select
import socket
import sys
import time
from dataclasses import dataclass, field

from lab.apps.events import abort, emit, raise_open_files, stop_on_sigterm

PUSHED = b"pushed\n"


@dataclass
class Conn:
    """One accepted connection: who, on which service port, and what it still owes."""

    sock: socket.socket
    peer: str  # the client's address:port
    port: int  # the service port it came in on
    pending: bytes = b""  # received, not yet a full line
    pushes: list[float] = field(default_factory=list)  # monotonic times a `pushed` is due


def push_delay(line: bytes) -> float | None:
    """The delay asked by a `push <seconds>` line; None for any other line."""
    words = line.split()
    if len(words) != 2 or words[0] != b"push":
        return None
    try:
        delay = float(words[1])
    except ValueError:
        return None
    return delay if delay >= 0 else None


class EchoServer:
    """Listeners and connections in one select loop; pushes are timers of that loop."""

    def __init__(self) -> None:
        self.listeners: dict[socket.socket, int] = {}
        self.conns: dict[socket.socket, Conn] = {}

    def listen(self, ports: list[int]) -> None:
        for port in ports:
            sock = self._listener(socket.AF_INET, "0.0.0.0", port)
            port = sock.getsockname()[1]  # the kernel's pick for port 0: IPv6 takes the same
            families = ["ipv4"]
            if self._listener6(port) is not None:
                families.append("ipv6")
            emit("listening", port=port, families=families)

    def _listener(self, family: int, address: str, port: int) -> socket.socket:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address, port))
            sock.listen(1024)
        except OSError:
            sock.close()
            raise
        self.listeners[sock] = sock.getsockname()[1]
        return sock

    def _listener6(self, port: int) -> socket.socket | None:
        """The IPv6 listener of `port`, or None where the namespace has no IPv6."""
        try:
            return self._listener(socket.AF_INET6, "::", port)
        except OSError as exc:
            if exc.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                return None
            raise

    def serve(self) -> None:
        while True:
            due = [d for c in self.conns.values() for d in c.pushes]
            timeout = max(0.0, min(due) - time.monotonic()) if due else None
            # poll, not select: no FD_SETSIZE (1024) ceiling on the sessions one server holds.
            poller = select.poll()
            socks = {sock.fileno(): sock for sock in [*self.listeners, *self.conns]}
            for fd in socks:
                poller.register(fd, select.POLLIN)
            events = poller.poll(None if timeout is None else timeout * 1000)
            for sock in [socks[fd] for fd, _ in events]:
                if sock in self.listeners:
                    self._accept(sock)
                else:
                    self._read(self.conns[sock])
            self._push_due()

    def close(self) -> None:
        """Abort every open connection (no FIN, no retransmission outlives the server)."""
        for conn in self.conns.values():
            emit("abort", peer=conn.peer, port=conn.port)
            abort(conn.sock)
        self.conns.clear()
        for sock in self.listeners:
            sock.close()
        self.listeners.clear()

    def _accept(self, listener: socket.socket) -> None:
        sock, address = listener.accept()  # IPv6: (host, port, flowinfo, scope_id)
        conn = Conn(sock, f"{address[0]}:{address[1]}", self.listeners[listener])
        self.conns[sock] = conn
        emit("accept", peer=conn.peer, port=conn.port)

    def _read(self, conn: Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except OSError as exc:
            self._error(conn, exc)
            self._drop(conn, failed=True)
            return
        if not data:
            emit("close", peer=conn.peer, port=conn.port)
            self._drop(conn, failed=False)
            return
        conn.pending += data
        while b"\n" in conn.pending:
            line, conn.pending = conn.pending.split(b"\n", 1)
            emit("recv", peer=conn.peer, port=conn.port, data=line.decode(errors="replace"))
            delay = push_delay(line)
            if delay is not None:
                conn.pushes.append(time.monotonic() + delay)
            else:
                self._send(conn, line + b"\n")

    def _push_due(self) -> None:
        now = time.monotonic()
        for conn in list(self.conns.values()):
            due = [d for d in conn.pushes if d <= now]
            conn.pushes = [d for d in conn.pushes if d > now]
            for _ in due:
                # Logged first, as every line is before its echo: a client that has the
                # line finds it in the log.
                emit("push", peer=conn.peer, port=conn.port)
                self._send(conn, PUSHED)

    def _send(self, conn: Conn, data: bytes) -> None:
        try:
            conn.sock.sendall(data)
        except OSError as exc:
            self._error(conn, exc)

    def _error(self, conn: Conn, exc: OSError) -> None:
        emit("error", peer=conn.peer, port=conn.port, error=exc.__class__.__name__, errno=exc.errno)

    def _drop(self, conn: Conn, failed: bool) -> None:
        """Forget a connection the client ended: close it, or abort it if it failed."""
        del self.conns[conn.sock]
        if failed:
            abort(conn.sock)
        else:
            conn.sock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--port", type=int, action="append", required=True, help="port to listen on (repeat; 0: any)"
    )
    args = parser.parse_args(argv)
    stop_on_sigterm()
    raise_open_files()
    server = EchoServer()
    try:
        server.listen(args.port)
        server.serve()
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
