"""A paced bulk TCP transfer: `receive` logs bytes per interval, `send` streams for a while.

receive: one JSON line per --interval with the bytes received in it (and errors, close);
on SIGTERM it aborts (RST) the connection still open and exits 0.
send: streams --rate bytes/s for --duration s from --sport with TCP_USER_TIMEOUT, so a path
that stops carrying the session breaks the connection within --user-timeout; prints the
outcome. A broken transfer is aborted (RST), so none of its retransmissions outlive it.
"""

from __future__ import annotations

import argparse
import select
import socket
import sys
import time

from lab.apps.events import abort, connect, emit, stop_on_sigterm


def receive(args: argparse.Namespace) -> int:
    server = socket.socket()
    conn: socket.socket | None = None
    peer = ""
    try:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("0.0.0.0", args.port))
        server.listen(4)
        emit("listening", port=server.getsockname()[1])
        conn, (host, pport) = server.accept()
        peer = f"{host}:{pport}"
        emit("accept", peer=peer)
        total, window, next_tick = 0, 0, time.monotonic() + args.interval
        while True:
            ready, _, _ = select.select([conn], [], [], max(0.0, next_tick - time.monotonic()))
            if ready:
                try:
                    data = conn.recv(262144)
                except OSError as exc:
                    emit("error", error=exc.__class__.__name__, total=total)
                    return 0
                if not data:
                    emit("close", total=total + window)
                    conn.close()
                    conn = None
                    return 0
                window += len(data)
            if time.monotonic() >= next_tick:
                total += window
                emit("bytes", bytes=window, total=total)
                window = 0
                next_tick += args.interval
    finally:
        server.close()
        if conn is not None:
            emit("abort", peer=peer)
            abort(conn)


def send(args: argparse.Namespace) -> int:
    sock = connect(args.server, args.port, args.sport, timeout=5)
    completed = False
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(args.user_timeout * 1000))
        local = sock.getsockname()
        emit("connected", client=f"{local[0]}:{local[1]}")
        chunk = b"x" * 8192
        per_tick = max(1, int(args.rate * 0.01 / len(chunk)))  # chunks every 10 ms
        start = time.monotonic()
        sent = 0
        sock.settimeout(args.user_timeout + 2)
        try:
            while time.monotonic() - start < args.duration:
                for _ in range(per_tick):
                    sock.sendall(chunk)
                    sent += len(chunk)
                time.sleep(0.01)
            sock.shutdown(socket.SHUT_WR)
            sock.recv(1)  # the receiver's close: everything arrived
            completed = True
            emit("done", outcome="completed", sent=sent, elapsed=time.monotonic() - start)
        except OSError as exc:
            emit(
                "done",
                outcome="broken",
                error=exc.__class__.__name__,
                sent=sent,
                elapsed=time.monotonic() - start,
            )
    finally:
        if completed:
            sock.close()
        else:
            abort(sock)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="mode", required=True)
    rx = sub.add_parser("receive")
    rx.add_argument("--port", type=int, required=True, help="port to listen on (0: any)")
    rx.add_argument("--interval", type=float, default=0.1)
    tx = sub.add_parser("send")
    tx.add_argument("--server", required=True)
    tx.add_argument("--port", type=int, required=True)
    tx.add_argument("--sport", type=int, default=0, help="source port (0: the kernel picks)")
    tx.add_argument("--duration", type=float, required=True)
    tx.add_argument("--rate", type=float, default=2_500_000, help="bytes per second")
    tx.add_argument("--user-timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    stop_on_sigterm()
    return receive(args) if args.mode == "receive" else send(args)


if __name__ == "__main__":
    sys.exit(main())
