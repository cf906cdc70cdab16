"""TCP idle probe: connect, exchange a line, stay idle, send again, report what happened.

The outcome is what the application experiences:
- delivered: the line after the idle period was echoed;
- hung: no answer and no error within the application's own timeout;
- reset: the connection was reset (ECONNRESET), during the idle period or after the send.
With --push the service speaks first after the idle period (the service direction): the
probe asks the echo server for `pushed` in <idle> seconds, stays idle and waits for it
until idle + app timeout; delivered if it came.
Prints one JSON object. Times are seconds since the end of the first exchange.
Options keep the session alive while idle: TCP keepalive, or an application heartbeat.
A connection that did not deliver is aborted (RST), so none of its retransmissions outlive
the probe. The server may be an IPv4 or an IPv6 address.
"""

from __future__ import annotations

import argparse
import errno
import socket
import sys
import time

from lab.apps.events import abort, connect, probe_parser, probe_record, run_probe


class Lines:
    """Lines read from a socket: answers that arrive together are still told apart."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buffer = b""

    def next(self, deadline: float) -> bytes | None:
        """The next line, or None if the deadline passed first; raises OSError on reset."""
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(4096)
            except TimeoutError:
                return None
            if not chunk:
                raise ConnectionResetError(errno.ECONNRESET, "closed by peer (FIN)")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line


def probe(sock: socket.socket, args: argparse.Namespace) -> dict[str, object]:
    """The exchange, the idle period and the answer after it, as a result record."""
    if args.tcp_keepalive:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, args.tcp_keepalive)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, args.tcp_keepalive)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
    result = probe_record(sock, args, push=args.push, heartbeats=0)
    lines = Lines(sock)
    sock.sendall(b"hello\n")
    if lines.next(time.monotonic() + args.app_timeout) != b"hello":
        raise SystemExit("probe: the first exchange failed; the path is broken before any idle time")
    start = time.monotonic()
    result["wall_start"] = time.time()
    idle_end = start + args.idle
    expected = b"pushed" if args.push else b"after-idle"
    next_beat = start + args.heartbeat if args.heartbeat else None
    beat_due: float | None = None  # the deadline of the heartbeat echo awaited
    answer_due: float | None = None  # the deadline of the answer after idle
    heartbeats = 0
    try:
        if args.push:
            sock.sendall(f"push {args.idle}\n".encode())
            answer_due = idle_end + args.app_timeout
        # Idle: wait on the socket, so a reset during the idle period is seen when it comes.
        while True:
            now = time.monotonic()
            if beat_due is not None and now >= beat_due:
                result.update(outcome="hung", phase="heartbeat")
                break
            if answer_due is not None and now >= answer_due:
                result.update(outcome="hung", phase="after idle")
                break
            beating = beat_due is None and next_beat is not None and now < idle_end
            if beating and next_beat is not None and now >= next_beat:
                sock.sendall(b"heartbeat\n")
                beat_due = now + args.app_timeout
                next_beat += args.heartbeat
                continue
            sending = not args.push and answer_due is None and beat_due is None
            if sending and now >= idle_end:
                result["sent_after"] = now - start
                sock.sendall(b"after-idle\n")
                answer_due = time.monotonic() + args.app_timeout
                continue
            # Every timer here lies ahead: the ones due were handled above.
            timers = [beat_due, answer_due, next_beat if beating else None, idle_end if sending else None]
            line = lines.next(min(t for t in timers if t is not None))
            # The heartbeat echo and the answer after idle may come in either order.
            if line == b"heartbeat" and beat_due is not None:
                beat_due = None
                heartbeats += 1
                result["heartbeats"] = heartbeats
            elif line == expected and answer_due is not None:
                result.update(outcome="delivered", phase="after idle")
                break
    except OSError as exc:
        after = "sent_after" in result or (args.push and time.monotonic() >= idle_end)
        result.update(
            outcome="reset",
            error=errno.errorcode.get(exc.errno or 0, str(exc)),
            phase="after idle" if after else "idle",
        )
    result["learned_after"] = time.monotonic() - start
    return result


def run(args: argparse.Namespace) -> dict[str, object]:
    sock = connect(args.server, args.port, args.sport, args.app_timeout)
    result: dict[str, object] = {}
    try:
        result = probe(sock, args)
    finally:
        if result.get("outcome") == "delivered":
            sock.close()
        else:
            abort(sock)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = probe_parser(__doc__, "seconds to stay idle")
    parser.add_argument("--app-timeout", type=float, default=3.0, help="the application's own reply timeout")
    parser.add_argument("--tcp-keepalive", type=int, default=0, help="TCP keepalive period (s), 0: off")
    parser.add_argument(
        "--heartbeat", type=float, default=0.0, help="application heartbeat period (s), 0: off"
    )
    parser.add_argument(
        "--push", action="store_true", help="the server sends after the idle period (`push <idle>`)"
    )
    return run_probe(parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
