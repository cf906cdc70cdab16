"""An FTP download with Python's ftplib, step by step, so a failure names its step.

Modes: PORT and EPRT (active: the server connects back to a port this client listens on)
and PASV and EPSV (passive: this client connects to the port the server announced). The
control connection and the data connection use source or listening ports the harness
gives (the case's port block). With `--hold`, it waits between the announcement and its
use (so another host can try the announced port first). With `--noop`, the client sends NOOP on the control
session every so many seconds during the transfer (the keepalive FTP clients offer).

Over IPv6 (the server's address is an IPv6 one) EPRT names the client's IPv6 address
(|2|addr|port|, RFC 2428) and EPSV's reply is read against the control session's peer, as
ftplib does. PORT and PASV carry four IPv4 octets and are IPv4 only: over IPv6 a PORT
names `--port-address` (an IPv4 address; without one the client refuses to send it), and
a 227 reply's address is not used (the client fails the data command, saying so), so the
server's answer to each is the evidence.

Prints JSON events (connected, reply to each command, data_connected, transferred) and
one result record: outcome "ok", or "failed" with the step (login, data command, data
connection, transfer, final reply) and the error; bytes, SHA-256 and times.
"""

from __future__ import annotations

import argparse
import contextlib
import ftplib
import hashlib
import select
import socket
import sys
import time
from typing import Any

from lab.apps.events import abort, connect, emit, report, stop_on_sigterm

ACTIVE, PASSIVE = ("PORT", "EPRT"), ("PASV", "EPSV")


class Step(Exception):
    """A step of the download failed: which, and why."""

    def __init__(self, step: str, error: str):
        super().__init__(f"{step}: {error}")
        self.step, self.error = step, error


def command(ftp: ftplib.FTP, line: str, step: str) -> str:
    """Send a command and return its reply; a 4xx/5xx reply fails `step`."""
    try:
        reply = ftp.sendcmd(line)
    except ftplib.all_errors as exc:
        emit("reply", command=line, reply=str(exc))
        raise Step(step, str(exc)) from None
    emit("reply", command=line, reply=reply)
    return reply


def announcement(mode: str, host: str, port: int, port_address: str = "") -> str:
    """The PORT or EPRT command announcing `host`:`port` (RFC 959, RFC 2428). An IPv6
    `host` has no PORT form: it names `port_address`, an IPv4 address, or is refused."""
    six = ":" in host
    if mode == "EPRT":
        return f"EPRT |{2 if six else 1}|{host}|{port}|"
    if six:
        if not port_address:
            raise Step("data command", f"PORT names an IPv4 address only, not {host}: use EPRT over IPv6")
        host = port_address
    return "PORT " + ",".join(host.split(".") + [str(port >> 8), str(port & 0xFF)])


def open_data(
    ftp: ftplib.FTP,
    mode: str,
    data_port: int,
    timeout: float,
    path: str,
    hold: float = 0.0,
    port_address: str = "",
) -> socket.socket:
    """Set up the data connection of RETR `path` in `mode`; returns its socket. With
    `hold`, wait that long after the announcement before using it."""
    control = ftp.sock
    assert control is not None
    six = control.family == socket.AF_INET6
    if mode in PASSIVE:
        if mode == "PASV":
            host, port = ftplib.parse227(command(ftp, "PASV", "data command"))
        else:
            host, port = ftplib.parse229(command(ftp, "EPSV", "data command"), control.getpeername())
        emit("announced", mode=mode, host=host, port=port)
        if six and mode == "PASV":
            raise Step("data command", f"227 names {host}, an IPv4 address: PASV is IPv4 only")
        time.sleep(hold)
        try:
            data = connect(host, port, data_port, timeout)
        except OSError as exc:
            raise Step("data connection", _why(exc)) from None
        emit("data_connected", local=data.getsockname()[1], remote=f"{host}:{port}")
        reply = command(ftp, f"RETR {path}", "data command")
        if not reply.startswith("1"):
            abort(data)
            raise Step("data command", reply)
        return data
    host = control.getsockname()[0]
    line = announcement(mode, host, data_port, port_address)
    listener = socket.socket(control.family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, data_port))
    listener.listen(1)
    try:
        command(ftp, line, "data command")
        emit("announced", mode=mode, host=host, port=data_port)
        time.sleep(hold)
        ftp.putcmd(f"RETR {path}")
        # The server connects back, then answers 150; or answers 425 when it cannot.
        ready, _, _ = select.select([listener, control], [], [], timeout)
        if listener in ready:
            data, peer = listener.accept()
            emit("data_connected", local=data_port, remote=f"{peer[0]}:{peer[1]}")
            reply = ftp.getresp()
            emit("reply", command=f"RETR {path}", reply=reply)
            return data
        if control in ready:
            try:
                reply = ftp.getresp()
            except ftplib.all_errors as exc:
                emit("reply", command=f"RETR {path}", reply=str(exc))
                raise Step("data connection", str(exc)) from None
            emit("reply", command=f"RETR {path}", reply=reply)
            raise Step("data connection", f"no connection from the server, reply {reply}")
        raise Step("data connection", f"neither a connection nor a reply in {timeout:g} s")
    finally:
        listener.close()


def _why(exc: OSError) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError):
        return "reset"
    return str(exc)


def download(args: argparse.Namespace, result: dict[str, Any]) -> None:
    ftp = ftplib.FTP(timeout=args.timeout)
    try:
        ftp.sock = connect(args.server, args.port, args.sport, args.timeout)
        ftp.af = ftp.sock.family
        ftp.file = ftp.sock.makefile("r", encoding=ftp.encoding)
        ftp.welcome = ftp.getresp()
    except (OSError, ftplib.Error) as exc:
        raise Step("connect", _why(exc) if isinstance(exc, OSError) else str(exc)) from None
    emit("connected", sport=ftp.sock.getsockname()[1], welcome=ftp.welcome)
    try:
        command(ftp, "USER anonymous", "login")
        command(ftp, "PASS lab@", "login")
        command(ftp, "TYPE I", "login")
        started = time.monotonic()
        data = open_data(
            ftp, args.mode, args.data_port, args.timeout, args.file, args.hold, args.port_address
        )
        digest, size = hashlib.sha256(), 0
        next_noop = time.monotonic() + args.noop if args.noop else None
        data.settimeout(args.timeout)
        try:
            while True:
                if next_noop is not None and time.monotonic() >= next_noop:
                    # The server may answer only after the transfer (vsftpd does): the
                    # replies are read then; the segment alone refreshes the session.
                    ftp.putcmd("NOOP")
                    emit("noop")
                    next_noop += args.noop
                    result["noops"] = result.get("noops", 0) + 1
                try:
                    chunk = data.recv(65536)
                except OSError as exc:
                    raise Step("transfer", _why(exc)) from None
                if not chunk:
                    break
                digest.update(chunk)
                size += len(chunk)
        finally:
            data.close()
        result.update(bytes=size, sha256=digest.hexdigest(), transfer_s=round(time.monotonic() - started, 3))
        emit("transferred", bytes=size)
        # The transfer's final reply and one per NOOP, in the order the server sends them.
        replies = []
        try:
            for _ in range(1 + result.get("noops", 0)):
                replies.append(ftp.getresp())
                emit("reply", command="RETR (end) or NOOP", reply=replies[-1])
        except ftplib.all_errors as exc:
            raise Step("final reply", _why(exc) if isinstance(exc, OSError) else str(exc)) from None
        result["final_reply"] = next(r for r in replies if not r.startswith("200"))
        with contextlib.suppress(*ftplib.all_errors):
            ftp.quit()
    finally:
        if ftp.sock is not None:
            abort(ftp.sock)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", required=True)
    parser.add_argument("--port", type=int, default=21)
    parser.add_argument("--mode", choices=ACTIVE + PASSIVE, required=True)
    parser.add_argument("--file", required=True)
    parser.add_argument("--sport", type=int, default=0, help="the control connection's source port")
    parser.add_argument(
        "--data-port", type=int, required=True, help="active: listen here; passive: bind here"
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="each step's wait (s)")
    parser.add_argument("--noop", type=float, default=0.0, help="NOOP every so many s during a transfer")
    parser.add_argument("--hold", type=float, default=0.0, help="wait this long after the announcement (s)")
    parser.add_argument(
        "--port-address", default="", help="over IPv6: the IPv4 address a PORT names (IPv4 only)"
    )
    args = parser.parse_args(argv)
    stop_on_sigterm()
    result: dict[str, Any] = {
        "mode": args.mode,
        "server": f"{args.server}:{args.port}",
        "wall_start": time.time(),
    }
    started = time.monotonic()
    try:
        download(args, result)
        result["outcome"] = "ok"
    except Step as exc:
        result.update(outcome="failed", step=exc.step, error=exc.error)
    result["seconds"] = round(time.monotonic() - started, 3)
    report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
