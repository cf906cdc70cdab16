"""Adc -> haproxy.cfg text: the L7 balancer. Pure: golden-file tested, checked with
`haproxy -c` before it starts.

haproxy runs in the foreground (`-db`), logs every request to stdout (the lab keeps it),
and answers on a stats socket (server states: up, down, and why).

IPv6: a VIP, a server or a peer with an IPv6 address is written in brackets
(`bind [fd00:4:1::100]:80`, `server web1 [fd00:4:2::11]:80`); haproxy checks such a server
over IPv6. A source stick table keys IPv6 clients with an IPv6 VIP (`type ipv6`: `type ip`
holds IPv4 only). X-Forwarded-For carries the client's address as haproxy sees it: an IPv6
one unbracketed, without a port.
"""

from __future__ import annotations

from lab.config import Adc, Pool
from lab.config.balancing import family, host_port, split_host_port

COMPRESSED_TYPES = "text/html text/plain text/css application/json application/javascript"


PEERS = "sessionlab"


def _peer(address: str) -> str:
    """A peer's address:port, an IPv6 one bracketed (given bare or bracketed)."""
    host, port = split_host_port(address)
    return host_port(host, int(port))


def _pool_lines(pool: Pool, adc: Adc) -> list[str]:
    lines = [f"backend {pool.name}", f"    balance {pool.algorithm}"]
    if adc.persist_source:
        shared = f" peers {PEERS}" if adc.peers else ""
        key = "ipv6" if family(adc.vip) == 6 else "ip"  # the clients' family: the VIP's
        lines += [f"    stick-table type {key} size 100k expire 30m{shared}", "    stick on src"]
    if pool.cookie:
        lines.append("    cookie SRV insert indirect nocache")
    check = pool.check
    if check is not None:
        if check.kind == "http":
            lines.append(f"    option httpchk GET {check.path}")
        lines.append(f"    default-server inter {check.interval_ms}ms rise {check.rise} fall {check.fall}")
    for i, server in enumerate(pool.servers, start=1):
        options = [f"weight {server.weight}"] if server.weight != 1 else []  # 1: haproxy's own
        if check is not None:
            options.append("check")
        if pool.cookie:
            options.append(f"cookie {pool.name}{i}")
        if pool.tls:
            options.append("ssl verify none")  # the lab's servers: encrypted, not authenticated
        lines.append(
            f"    server {pool.name}{i} {host_port(server.address, server.port)}"
            + "".join(f" {o}" for o in options)
        )
    return lines


def render_haproxy(adc: Adc, stats_socket: str) -> str:
    """The whole haproxy.cfg; `stats_socket` is the path of its admin socket."""
    tls = f" ssl crt {adc.certificate}" if adc.certificate else ""
    lines = [
        "global",
        "    log stdout format raw local0 info",
        f"    stats socket {stats_socket} mode 600 level admin",
        "    maxconn 4096",
        "",
        "defaults",
        "    mode http",
        "    log global",
        "    option httplog",
        "    timeout connect 2s",
        "    timeout client 30s",
        "    timeout server 30s",
        "",
    ]
    if adc.peers:
        # Each haproxy finds itself in the list by its local peer name (-L, the node's).
        lines += [f"peers {PEERS}", *[f"    peer {name} {_peer(address)}" for name, address in adc.peers], ""]
    if adc.cache_pattern is not None:
        lines += ["cache static", "    total-max-size 16", f"    max-age {adc.cache_seconds}", ""]
    lines += [
        "frontend adc",
        f"    bind {host_port(adc.vip, adc.port)}{tls}",
    ]
    if adc.forwarded_for:
        lines.append("    option forwardfor")
    if adc.compression:
        lines += ["    compression algo gzip", f"    compression type {COMPRESSED_TYPES}"]
    if adc.deny_pattern is not None:
        lines.append(f"    http-request deny deny_status 403 if {{ path_reg {adc.deny_pattern} }}")
    for prefix, location in adc.redirects:
        lines.append(f"    http-request redirect location {location} code 302 if {{ path_beg {prefix} }}")
    if adc.cache_pattern is not None:
        lines += [
            # The path is the request's: remembered for the response, which has no path.
            f"    http-request set-var(txn.cacheable) bool(true) if {{ path_reg {adc.cache_pattern} }}",
            "    http-request cache-use static if { var(txn.cacheable) -m bool }",
            "    http-response cache-store static if { var(txn.cacheable) -m bool }",
        ]
    for route in adc.routes:
        conditions = []
        if route.path_prefix is not None:
            conditions.append(f"{{ path_beg {route.path_prefix} }}")
        if route.header is not None:
            conditions.append(f"{{ req.hdr({route.header}) -m str {route.value} }}")
        lines.append(f"    use_backend {route.pool} if {' '.join(conditions)}")
    lines.append(f"    default_backend {adc.pools[0].name}")
    for pool in adc.pools:
        lines += ["", *_pool_lines(pool, adc)]
    return "\n".join(lines) + "\n"
