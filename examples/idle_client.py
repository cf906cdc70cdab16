"""A client that idles: connects to SERVER_ADDR:SERVER_PORT, sends a line and reads its
echo, stays quiet for --idle seconds, sends again and waits --wait seconds for the echo.

Exit 0 when both echoes came back, 1 when the second did not (or the connection broke).
Behind a firewall whose idle timeout is shorter than --idle, the second send is dropped:
the session was forgotten. `--keepalive S` turns on TCP keepalive every S seconds (no
data: the kernel sends empty ACKs the peer answers), which keeps the session fresh.

    python3 examples/idle_client.py --idle 4                 # fails behind a 2 s timeout
    python3 examples/idle_client.py --idle 4 --keepalive 1   # passes
"""

import argparse
import os
import socket
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=float, default=4.0, help="seconds to stay quiet (default 4)")
    parser.add_argument("--wait", type=float, default=3.0, help="seconds to wait for each echo (default 3)")
    parser.add_argument("--keepalive", type=int, help="TCP keepalive every this many seconds")
    args = parser.parse_args()
    server = (os.environ["SERVER_ADDR"], int(os.environ.get("SERVER_PORT", "9000")))
    sock = socket.create_connection(server, timeout=args.wait)
    if args.keepalive:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, args.keepalive)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, args.keepalive)
    print(
        f"connected from {sock.getsockname()[0]}:{sock.getsockname()[1]} to {server[0]}:{server[1]}",
        flush=True,
    )
    for i, line in enumerate((b"hello\n", b"after idle\n")):
        if i:
            print(f"idle for {args.idle:g} s", flush=True)
            time.sleep(args.idle)
        started = time.monotonic()
        try:
            sock.sendall(line)
            echo = sock.recv(1024)
        except TimeoutError:
            print(
                f"no echo of {line.strip().decode()!r} within {args.wait:g} s: the session is gone",
                flush=True,
            )
            return 1
        except OSError as exc:
            print(f"connection broke: {exc}", flush=True)
            return 1
        if echo != line:
            print(f"unexpected reply {echo!r}", flush=True)
            return 1
        print(
            f"echo of {line.strip().decode()!r} after {1000 * (time.monotonic() - started):.1f} ms",
            flush=True,
        )
    sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
