"""An echo server for `sessionlab try`: listens on SERVER_PORT (default 9000), sends back
every line it receives, one thread per connection, and says what it sees on stdout.

    sessionlab try s1 --server 'python3 examples/echo_server.py' --client '...'
"""

import os
import socket
import socketserver
import sys


class Echo(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        peer = f"{self.client_address[0]}:{self.client_address[1]}"
        print(f"connection from {peer}", flush=True)
        for line in self.rfile:
            print(f"{peer}: {line.decode(errors='replace').rstrip()}", flush=True)
            self.wfile.write(line)
        print(f"{peer} closed", flush=True)


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    address_family = socket.AF_INET


if __name__ == "__main__":
    port = int(os.environ.get("SERVER_PORT", "9000"))
    with Server(("0.0.0.0", port), Echo) as server:
        print(f"echo server listening on port {port}", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            sys.exit(0)
