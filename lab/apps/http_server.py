"""A real server behind a balancer: HTTP/1.1 on one port, naming itself in every answer.

Every request is logged as an event with what the server saw: the peer's address and
port (the client's, or the balancer's when it source-NATs or proxies), the path, Host and
X-Forwarded-For. So a case asserts which server answered, and what the server learned of
the client, from the server's own log, not from the balancer.

Paths: `/health` (200, or 503 while in maintenance), `/static/<name>` (a cacheable text
body), `/text/<n>` (n KiB of compressible text), anything else: a short text naming the
server. SIGUSR1 toggles maintenance (a draining server: up, but failing its health check).
With `--tls` it answers HTTPS (a balancer that re-encrypts towards its servers).

The port is served over IPv4 and IPv6, one socket per family (an IPv6 socket taking IPv4
too would log IPv4 peers as ::ffff:a.b.c.d); an IPv6 peer is logged unbracketed
(fd00:4:2::2). A namespace without IPv6 gets IPv4 only; the `listening` event names the
families. With `--bind` an address other than 0.0.0.0, that address only.
"""

from __future__ import annotations

import argparse
import errno
import signal
import socket
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType

from lab.apps.events import emit, stop_on_sigterm

LOREM = (
    "A stateful device keeps a session per flow; when it forgets one, the flow's next packet is new to it.\n"
)


class State:
    maintenance = False
    answered = 0  # requests answered, counted apart from the log (reported at exit)
    lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    server_version = "sessionlab-http"
    protocol_version = "HTTP/1.1"  # keep-alive: one connection may carry many requests
    # Headers and body are two writes: with Nagle the body waits for the client's
    # delayed ACK (40 ms) on a kept-open connection.
    disable_nagle_algorithm = True
    name = "server"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = self.path.split("?", 1)[0]
        status, body, kind, extra = 200, f"served by {self.name}\n", "text/plain", {}
        if path == "/health":
            status = 503 if State.maintenance else 200
            body = "maintenance\n" if State.maintenance else "ok\n"
        elif path.startswith("/static/"):
            body = f"static {path[8:]} from {self.name}\n"
            extra = {"Cache-Control": "public, max-age=60"}
        elif path.startswith("/text/"):
            size = int(path[6:]) if path[6:].isdigit() else 1
            body = (LOREM * (size * 1024 // len(LOREM) + 1))[: size * 1024]
        data = body.encode()
        # Logged before the answer leaves: a client that has its answer finds the
        # request in this log already.
        emit(
            "request",
            server=self.name,
            peer=self.client_address[0],
            peer_port=self.client_address[1],
            path=self.path,
            status=status,
            host=self.headers.get("Host"),
            xff=self.headers.get("X-Forwarded-For"),
            proto=self.headers.get("X-Forwarded-Proto"),
            bytes=len(data),
        )
        with State.lock:
            State.answered += 1
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Served-By", self.name)
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # the request event above is the log


class Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 512

    def handle_error(self, request: object, client_address: tuple[str, int]) -> None:
        # socketserver prints a traceback to stderr, in many writes, into the log this
        # server's events go to: a request line landing in its middle was lost to the
        # reader. A peer that resets a kept-open connection (haproxy does) is no error.
        error = sys.exc_info()[1]
        kind = "connection_reset" if isinstance(error, ConnectionError) else "error"
        emit(kind, peer=client_address[0], peer_port=client_address[1], error=repr(error))


class Server6(Server):
    """The same server on IPv6 only (IPV6_V6ONLY: IPv4 stays the IPv4 socket's)."""

    address_family = socket.AF_INET6

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        super().server_bind()


def listeners(bind: str, port: int) -> dict[str, Server]:
    """Family -> server: `bind` (IPv4 or IPv6), and with the default 0.0.0.0 IPv6's "::"
    too where the namespace has IPv6."""
    if ":" in bind:
        return {"ipv6": Server6((bind, port), Handler)}
    servers = {"ipv4": Server((bind, port), Handler)}
    if bind == "0.0.0.0":
        try:
            servers["ipv6"] = Server6(("::", port), Handler)
        except OSError as exc:
            if exc.errno not in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                raise
    return servers


def _toggle(signum: int, frame: FrameType | None) -> None:
    State.maintenance = not State.maintenance
    emit("maintenance", on=State.maintenance)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True, help="the name it answers with (X-Served-By)")
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--bind", default="0.0.0.0")
    parser.add_argument("--tls", help="a PEM with key and certificate: answer HTTPS")
    args = parser.parse_args(argv)
    stop_on_sigterm()
    signal.signal(signal.SIGUSR1, _toggle)
    Handler.name = args.name
    servers = listeners(args.bind, args.port)
    if args.tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls)
        for server in servers.values():
            server.socket = context.wrap_socket(server.socket, server_side=True)
    # A short poll: stopped, it stops accepting within 50 ms (the default waits 0.5 s).
    threads = [
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        for server in servers.values()
    ]
    for thread in threads:
        thread.start()
    emit("listening", port=args.port, name=args.name, tls=bool(args.tls), families=list(servers))
    try:
        # Python runs signal handlers (SIGTERM, SIGUSR1) in the main thread only, when it
        # runs: the kernel may deliver a signal to a serving thread, and a main thread
        # blocked in join() for good would never run the handler (a maintenance toggle
        # was missed once). Waking it every 50 ms runs them.
        while all(thread.is_alive() for thread in threads):
            threads[0].join(0.05)
    finally:
        for server in servers.values():
            server.shutdown()
            server.server_close()
        emit("stopped", answered=State.answered)
    return 0


if __name__ == "__main__":
    sys.exit(main())
