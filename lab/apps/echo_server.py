"""A line echo server that logs what it sees as JSON lines: the server end of a probe.

Every accept, every line received (with its text), every error (ECONNRESET) and close is
logged with the peer, so a test can say whether the server ever saw a given segment.
"""

from __future__ import annotations

import argparse
import json
import select
import signal
import socket
import sys
import time


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, "t": time.time(), **fields}), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, action="append", required=True, help="port to listen on (repeat)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    listeners = {}
    for port in args.port:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", port))
        sock.listen(128)
        listeners[sock] = port
        emit("listening", port=port)
    conns: dict[socket.socket, tuple[str, int, int, bytes]] = {}
    while True:
        readable, _, _ = select.select([*listeners, *conns], [], [])
        for sock in readable:
            if sock in listeners:
                conn, peer = sock.accept()
                conns[conn] = (peer[0], peer[1], listeners[sock], b"")
                emit("accept", peer=f"{peer[0]}:{peer[1]}", port=listeners[sock])
                continue
            host, pport, port, pending = conns[sock]
            peer = f"{host}:{pport}"
            try:
                data = sock.recv(65536)
            except OSError as exc:
                emit("error", peer=peer, port=port, error=exc.__class__.__name__, errno=exc.errno)
                sock.close()
                del conns[sock]
                continue
            if not data:
                emit("close", peer=peer, port=port)
                sock.close()
                del conns[sock]
                continue
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                emit("recv", peer=peer, port=port, data=line.decode(errors="replace"))
                try:
                    sock.sendall(line + b"\n")
                except OSError as exc:
                    emit("error", peer=peer, port=port, error=exc.__class__.__name__, errno=exc.errno)
            conns[sock] = (host, pport, port, pending)


if __name__ == "__main__":
    sys.exit(main())
