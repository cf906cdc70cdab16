"""TCP idle probe: connect, exchange a line, stay idle, send again, report what happened.

The outcome is what the application experiences:
- delivered: the line after the idle period was echoed;
- hung: no answer and no error within the application's own timeout;
- reset: the connection was reset (ECONNRESET), during the idle period or after the send.
Prints one JSON object. Times are seconds since the end of the first exchange.
Options keep the session alive while idle: TCP keepalive, or an application heartbeat.
"""

from __future__ import annotations

import argparse
import errno
import json
import socket
import sys
import time


def _recv_line(sock: socket.socket, deadline: float) -> bytes | None:
    """One line, or None if the deadline passed first; raises OSError on reset."""
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            return None
        if not chunk:
            raise ConnectionResetError(errno.ECONNRESET, "closed by peer (FIN)")
        data += chunk
    return data.split(b"\n", 1)[0]


def run(args: argparse.Namespace) -> dict[str, object]:
    sock = socket.create_connection((args.server, args.port), timeout=args.app_timeout)
    if args.tcp_keepalive:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, args.tcp_keepalive)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, args.tcp_keepalive)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
    local = sock.getsockname()
    result: dict[str, object] = {
        "client": f"{local[0]}:{local[1]}",
        "server": f"{args.server}:{args.port}",
        "idle": args.idle,
        "app_timeout": args.app_timeout,
        "heartbeats": 0,
    }
    sock.sendall(b"hello\n")
    if _recv_line(sock, time.monotonic() + args.app_timeout) != b"hello":
        raise SystemExit("probe: the first exchange failed; the path is broken before any idle time")
    start = time.monotonic()
    result["wall_start"] = time.time()
    try:
        # Idle: wait on the socket, so a reset during the idle period is seen when it comes.
        idle_end = start + args.idle
        next_beat = start + args.heartbeat if args.heartbeat else None
        while True:
            now = time.monotonic()
            until = min(idle_end, next_beat) if next_beat else idle_end
            if now >= idle_end:
                break
            if next_beat and now >= next_beat:
                sock.sendall(b"heartbeat\n")
                if _recv_line(sock, now + args.app_timeout) != b"heartbeat":
                    result.update(outcome="hung", learned_after=time.monotonic() - start, phase="heartbeat")
                    return result
                result["heartbeats"] = int(result["heartbeats"]) + 1  # type: ignore[call-overload]
                next_beat += args.heartbeat
                continue
            sock.settimeout(max(0.001, until - now))
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                continue
            if not chunk:
                raise ConnectionResetError(errno.ECONNRESET, "closed by peer (FIN)")
        result["sent_after"] = time.monotonic() - start
        sock.sendall(b"after-idle\n")
        answer = _recv_line(sock, time.monotonic() + args.app_timeout)
        result["outcome"] = "delivered" if answer == b"after-idle" else "hung"
        result["phase"] = "after idle"
    except OSError as exc:
        result.update(outcome="reset", error=errno.errorcode.get(exc.errno or 0, str(exc)))
        result["phase"] = "after idle" if "sent_after" in result else "idle"
    result["learned_after"] = time.monotonic() - start
    sock.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--idle", type=float, required=True, help="seconds to stay idle")
    parser.add_argument("--app-timeout", type=float, default=3.0, help="the application's own reply timeout")
    parser.add_argument("--tcp-keepalive", type=int, default=0, help="TCP keepalive period (s), 0: off")
    parser.add_argument(
        "--heartbeat", type=float, default=0.0, help="application heartbeat period (s), 0: off"
    )
    args = parser.parse_args(argv)
    print(json.dumps(run(args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
