"""Health-check agent of the kernel balancer: runs in the balancer's namespace.

Every `interval_ms` it checks each real server, all at once: a TCP connect, or an HTTP
GET of the check's path answered with 2xx/3xx, each within the interval. `fall` failures
in a row take a server out, `rise` successes put it back (`lab.health`); each change
reloads the balancer's ruleset with the servers in service (rendered by
`lab.render.balancer`, loaded with `nft -f`, its return code checked). Sessions the
kernel still holds to a server taken out are listed with the event: they stay on it
(conntrack keeps their NAT binding); only new sessions avoid it.

With a `service_file` instead (an SDN balancer: the controller decides), each change
writes the addresses in service there, as JSON; the controller follows that file.

Checks leave from the source ports given (the case's block), closed with RST. Prints one
JSON line per event: ready (after the first round), down, up, and what went wrong. A down
or up event is stamped once its change is in place; `applying` is when it was handed on
(the ruleset loading, the service file written), from which it may already take effect.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from lab import conntrack
from lab.apps.events import abort, connect, emit, stop_on_sigterm
from lab.config import HealthCheck, balancer_from_dict
from lab.config.balancing import host_port
from lab.health import ServerHealth, live
from lab.render.balancer import DsrPorts, render_balancer, render_clear


def check_once(kind: str, path: str, address: str, port: int, sport: int, timeout: float) -> tuple[bool, str]:
    """One check: (passed, why not)."""
    sock = None
    try:
        sock = connect(address, port, sport, timeout)
        if kind == "tcp":
            return True, ""
        conn = http.client.HTTPConnection(address, port, timeout=timeout)
        conn.sock = sock
        conn.request("GET", path, headers={"User-Agent": "sessionlab-health"})
        status = conn.getresponse().status
        return 200 <= status < 400, f"HTTP {status}"
    except (OSError, http.client.HTTPException) as exc:
        return False, "timeout" if isinstance(exc, TimeoutError) else exc.__class__.__name__
    finally:
        if sock is not None:
            abort(sock)


def write_service(path: str, addresses: list[str]) -> None:
    """The addresses in service, replaced whole (the reader never sees half a file)."""
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_text(json.dumps({"in_service": addresses, "t": time.time()}))
    tmp.replace(path)


def load(text: str) -> None:
    # nft -f is atomic: on an error the old ruleset silently stays, so the code matters.
    done = subprocess.run(["nft", "-f", "-"], input=text, text=True, capture_output=True)
    if done.returncode != 0:
        raise RuntimeError(f"nft -f failed: {done.stderr.strip()}")


def sessions_to(address: str, vip: str) -> list[str]:
    """The clients' sessions to the VIP that the kernel keeps on the server `address`
    (the checks' own sessions, from the balancer itself, are not listed)."""
    out = subprocess.run(
        ["conntrack", "-L", "-p", "tcp", "--reply-src", address], capture_output=True, text=True
    ).stdout
    return [f"{s.src}:{s.sport} {s.state}" for s in conntrack.parse_table(out) if s.dst == vip]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True, help="JSON: balancer, check, server_side, dsr")
    parser.add_argument("--first-port", type=int, required=True, help="checks' source ports from here")
    parser.add_argument("--ports", type=int, required=True, help="how many source ports to cycle through")
    args = parser.parse_args(argv)
    stop_on_sigterm()
    data = json.loads(args.config)
    balancer = balancer_from_dict(data["balancer"])
    check = HealthCheck(**data["check"])
    dsr = DsrPorts(**data["dsr"]) if data.get("dsr") else None
    servers = {host_port(s.address, s.port): s for s in balancer.servers}
    health = {name: ServerHealth(name, check.rise, check.fall) for name in servers}
    ports = itertools.cycle(range(args.first_port, args.first_port + args.ports))
    interval = check.interval_ms / 1000
    service_file = data.get("service_file")
    if service_file:
        write_service(service_file, [s.address for s in balancer.servers])
    first = True
    with ThreadPoolExecutor(max_workers=len(servers)) as pool:
        while True:
            start = time.monotonic()
            jobs = {
                name: pool.submit(
                    check_once, check.kind, check.path, s.address, s.port, next(ports), interval * 0.9
                )
                for name, s in servers.items()
            }
            now = time.time()
            changes = []
            for name, job in jobs.items():
                ok, why = job.result()
                change = health[name].record(ok, now)
                if change:
                    changes.append((name, change, why))
            # When the new service set is handed on (the ruleset reloaded, or the service
            # file written): from here it may take effect, and each change's event, stamped
            # once it has, says so (`applying`): a request may reach a server put back in
            # between (seen: 10 ms before the event's own time).
            applying = time.time()
            if changes and service_file:
                write_service(service_file, [servers[n].address for n in live(health)])
            elif changes:
                up = [servers[n] for n in live(health)]
                text = (
                    render_balancer(replace(balancer, servers=tuple(up)), data.get("server_side"), dsr)
                    if up
                    else render_clear()
                )
                load(text)
            for name, change, why in changes:
                # The kernel's NAT keeps a removed server's sessions: list them (a
                # controller keeps its own; DSR keeps none).
                kept = change == "down" and dsr is None and not service_file
                held = sessions_to(servers[name].address, balancer.vip) if kept else []
                emit(
                    change,
                    server=name,
                    reason=why,
                    in_service=live(health),
                    sessions_kept=held,
                    applying=applying,
                )
            if first:
                emit("ready", servers=list(servers), interval_ms=check.interval_ms)
                first = False
            time.sleep(max(0.0, interval - (time.monotonic() - start)))


if __name__ == "__main__":
    sys.exit(main())
