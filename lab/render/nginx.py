"""Adc -> nginx.conf text: the same L7 balancer as haproxy's, on nginx. Pure: golden-file
tested, checked with `nginx -t` before it starts.

What nginx (open source) does differently, said where it matters: no cookie persistence
(that is nginx Plus), so a pool asking for it is refused; no active health checks, so a
pool's check becomes passive (`max_fails` = fall, `fail_timeout` = rise x interval): a
server is taken out after failed requests, not by probes. Caching is nginx's proxy cache.

IPv6: a VIP or server with an IPv6 address is written in brackets (`listen
[fd00:4:1::100]:80`, `server [fd00:4:2::11]:80`); X-Forwarded-For appends $remote_addr, an
IPv6 client's address unbracketed, without a port.
"""

from __future__ import annotations

from lab.config import Adc, Pool
from lab.config.balancing import host_port
from lab.render.haproxy import COMPRESSED_TYPES

NGINX_BALANCE = {"roundrobin": "", "leastconn": "least_conn;", "source": "ip_hash;"}
# A client address keeps its server: nginx's ip_hash (a hash, not a table).


def _upstream(pool: Pool, persist: bool = False) -> list[str]:
    lines = [f"    upstream {pool.name} {{"]
    if NGINX_BALANCE[pool.algorithm]:
        lines.append(f"        {NGINX_BALANCE[pool.algorithm]}")
    elif persist:
        lines.append("        ip_hash;")
    passive = ""
    if pool.check is not None:
        window = max(1, pool.check.rise * pool.check.interval_ms // 1000)
        passive = f" max_fails={pool.check.fall} fail_timeout={window}s"
    for server in pool.servers:
        weight = f" weight={server.weight}" if server.weight != 1 else ""  # 1: nginx's own
        lines.append(f"        server {host_port(server.address, server.port)}{weight}{passive};")
    # Kept-open connections to the servers (with HTTP/1.1 and no Connection header, see
    # the proxy settings): without them nginx opens one per request, and under load runs
    # out of source ports (TIME_WAIT) and answers 502.
    return [*lines, "        keepalive 32;", "    }"]


def nginx_problems(adc: Adc) -> list[str]:
    """What nginx open source cannot do of `adc` (its device adds these to the ADC's own
    problems): cookie persistence and shared stick tables are nginx Plus."""
    problems = [
        f"adc.pools: {p.name!r} asks for cookie persistence, which nginx OSS has not"
        for p in adc.pools
        if p.cookie
    ]
    if adc.peers:
        problems.append("adc.peers: sharing persistence between balancers is nginx Plus (zone_sync), not OSS")
    return problems


def render_nginx(adc: Adc, workdir: str) -> str:
    """The whole nginx.conf; `workdir` holds its pid file, temporary files and cache."""
    scheme = {p.name: "https" if p.tls else "http" for p in adc.pools}
    lines = [
        "daemon off;",
        "worker_processes 1;",
        f"pid {workdir}/nginx.pid;",
        "error_log stderr info;",
        "events { worker_connections 1024; }",
        "http {",
        "    access_log /dev/stdout;",
        f"    client_body_temp_path {workdir}/body;",
        f"    proxy_temp_path {workdir}/proxy;",
        f"    fastcgi_temp_path {workdir}/fastcgi;",
        f"    uwsgi_temp_path {workdir}/uwsgi;",
        f"    scgi_temp_path {workdir}/scgi;",
    ]
    if adc.cache_pattern is not None:
        lines.append(f"    proxy_cache_path {workdir}/cache keys_zone=static:1m max_size=16m;")
    if adc.compression:
        # text/html is always compressed by nginx: naming it again draws a warning
        types = " ".join(t for t in COMPRESSED_TYPES.split() if t != "text/html")
        lines += ["    gzip on;", "    gzip_proxied any;", f"    gzip_types {types};"]
    header_routes = [r for r in adc.routes if r.header is not None and r.path_prefix is None]
    if header_routes:
        # A header picks the pool: a map from the header to the pool's name.
        variable = "$http_" + header_routes[0].header.lower().replace("-", "_")  # type: ignore[union-attr]
        lines += [f"    map {variable} $by_header {{", f"        default {adc.pools[0].name};"]
        lines += [f"        {r.value} {r.pool};" for r in header_routes]
        lines.append("    }")
    for pool in adc.pools:
        lines += _upstream(pool, adc.persist_source)
    listen = host_port(adc.vip, adc.port) + (" ssl" if adc.certificate else "")
    lines += ["    server {", f"        listen {listen};"]
    if adc.certificate:
        lines += [
            f"        ssl_certificate {adc.certificate};",
            f"        ssl_certificate_key {adc.certificate};",
        ]
    proxy = ["proxy_http_version 1.1;", 'proxy_set_header Connection "";', "proxy_set_header Host $host;"]
    if adc.forwarded_for:
        proxy.append("proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;")
    if adc.deny_pattern is not None:
        lines += [f'        location ~ "{adc.deny_pattern}" {{ return 403; }}']
    for prefix, location in adc.redirects:
        lines += [f"        location ^~ {prefix} {{ return 302 {location}; }}"]
    if adc.cache_pattern is not None:
        lines += [
            f'        location ~ "{adc.cache_pattern}" {{',
            "            proxy_cache static;",
            f"            proxy_cache_valid 200 {adc.cache_seconds}s;",
            "            add_header X-Cache $upstream_cache_status;",
            *[f"            {p}" for p in proxy],
            f"            proxy_pass {scheme[adc.pools[0].name]}://{adc.pools[0].name};",
            "        }",
        ]
    for route in adc.routes:
        if route.path_prefix is not None:
            lines += [
                f"        location ^~ {route.path_prefix} {{",
                *[f"            {p}" for p in proxy],
                f"            proxy_pass {scheme[route.pool]}://{route.pool};",
                "        }",
            ]
    target = "$by_header" if header_routes else adc.pools[0].name
    default_scheme = "http" if header_routes else scheme[adc.pools[0].name]
    lines += [
        "        location / {",
        *[f"            {p}" for p in proxy],
        f"            proxy_pass {default_scheme}://{target};",
        "        }",
        "    }",
        "}",
    ]
    return "\n".join(lines) + "\n"
