"""Real traffic between lab hosts, one module per client family; each runs one app of
`lab/apps` (JSON lines, read by `lab.events`) or a real tool.

- `load`: what every client load shares (`Load`: argv, budget, parse; `Records` with
  their timeout margins, returned to the case; one run / start / finish);
- `sessions`: short TCP sessions (`tcp_sessions`);
- `http`: the HTTP server and client apps, curl;
- `ftp`: the FTP client app, and curl / lftp as FTP clients;
- `probes`: idle probes, the echo server, bulk transfers;
- `tools`: wrk, hand-made segments.
- `udp`: UDP lifetime probes (outbound, bidirectional) and the UDP echo server.

Every client takes a source port (or a first port), so a case can keep its flows inside
its own port block; 0 lets the kernel pick.
"""

from lab.traffic.ftp import (
    FTP_TOOLS,
    FtpDownload,
    finish_ftp,
    ftp_record,
    ftp_tool_argv,
    run_ftp,
    run_ftp_tool,
    start_ftp,
)
from lab.traffic.http import (
    HttpLoad,
    curl,
    finish_http,
    http_log,
    http_records,
    run_http,
    start_http,
    start_http_server,
)
from lab.traffic.load import (
    MIN_MARGIN,
    Load,
    Records,
    app_argv,
    finish_load,
    listening,
    run_load,
    start_load,
    thin_margins,
    timeout_margin,
)
from lab.traffic.probes import (
    IdleProbe,
    ProbeResult,
    bulk_outcome,
    bulk_series,
    listening_ports,
    run_probes,
    server_events,
    start_bulk_receiver,
    start_bulk_sender,
    start_echo_server,
)
from lab.traffic.sessions import (
    SessionLoad,
    finish_sessions,
    run_sessions,
    run_sessions_from,
    sessions_records,
    start_sessions,
)
from lab.traffic.tools import parse_wrk, run_wrk, send_segment
from lab.traffic.udp import (
    UDP_MODES,
    UdpProbe,
    UdpProbeResult,
    run_udp_probes,
    start_udp_server,
    udp_datagrams,
    udp_probe_problems,
)

__all__ = [
    "FTP_TOOLS",
    "MIN_MARGIN",
    "FtpDownload",
    "HttpLoad",
    "IdleProbe",
    "Load",
    "ProbeResult",
    "Records",
    "SessionLoad",
    "app_argv",
    "bulk_outcome",
    "bulk_series",
    "curl",
    "finish_ftp",
    "finish_http",
    "finish_load",
    "finish_sessions",
    "ftp_record",
    "ftp_tool_argv",
    "http_log",
    "http_records",
    "listening",
    "listening_ports",
    "parse_wrk",
    "run_ftp",
    "run_ftp_tool",
    "run_http",
    "run_load",
    "run_probes",
    "run_sessions",
    "run_sessions_from",
    "run_wrk",
    "send_segment",
    "server_events",
    "sessions_records",
    "start_bulk_receiver",
    "start_bulk_sender",
    "start_echo_server",
    "start_ftp",
    "start_http",
    "start_http_server",
    "start_load",
    "start_sessions",
    "thin_margins",
    "timeout_margin",
    "UDP_MODES",
    "UdpProbe",
    "UdpProbeResult",
    "run_udp_probes",
    "start_udp_server",
    "udp_datagrams",
    "udp_probe_problems",
]
