"""FirewallPolicy -> nftables ruleset text. Pure: golden-file tested, checked with `nft -c`
(`lab.render.check` offline, as `sessionlab policy` does; the firewall device in its node)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from lab.config import FirewallPolicy, Helper, Service, TimeoutRule
from lab.config.firewall import HELPER_PROTOCOLS, LINUX_UDP_STREAM_TIMEOUT, LINUX_UDP_TIMEOUT

TABLE = "sessionlab"
# Packets the reset agent crafts carry this mark, so the firewall's own conntrack ignores them.
AGENT_MARK = 0x5E55
# Packets handed to the peer firewall carry this mark; a routing rule sends them there.
HANDOFF_MARK = 0x5E56
# Named counters, read back as the reason a packet was dropped.
# (the last three exist only in policies that limit sessions or drop ICMP errors)
DROP_COUNTERS = (
    "drop_invalid",
    "drop_new_not_syn",
    "drop_denied",
    "drop_table_full",
    "drop_per_source",
    "drop_icmp_error",
)
SYNPROXY_COUNTER = "synproxied"
HANDOFF_COUNTER = "handed_to_peer"


def _match(proto: str, address: str | None, port: int | None, port_end: int | None = None) -> str:
    parts = []
    if address is not None:  # an IPv6 rule matches IPv6 sessions only, an IPv4 one IPv4's
        parts.append(f"{'ip6' if ':' in address else 'ip'} daddr {address}")
    parts.append(f"meta l4proto {proto}")
    if port is not None:
        parts.append(f"{proto} dport {port}" + (f"-{port_end}" if port_end not in (None, port) else ""))
    return " ".join(parts)


def _ports(services: Iterable[Service]) -> str:
    """An nftables set of the services' ports (ranges included)."""
    items = [f"{s.port}-{s.port_end}" if s.port_end not in (None, s.port) else f"{s.port}" for s in services]
    return "{ " + ", ".join(items) + " }"


def helper_name(helper: Helper) -> str:
    """The name of a helper's object in the ruleset (and in `conntrack -L`'s helper=); a
    helper on its type's second protocol (SIP over TCP) says so, so both can share a port."""
    default = HELPER_PROTOCOLS.get(helper.type, (helper.proto,))[0]
    return f"{helper.type}_{helper.port}" + ("" if helper.proto == default else f"_{helper.proto}")


def _helper_lines(helpers: tuple[Helper, ...]) -> list[str]:
    # Linux assigns no helper by itself (since 4.7): only the ports named here get one.
    # `l3proto inet`: the object holds the helper of both families (an IPv4-only object
    # assigns none to an IPv6 session, so its FTP data session would be dropped).
    lines = []
    for helper in helpers:
        lines += [
            f"\tct helper {helper_name(helper)} {{",
            f'\t\ttype "{helper.type}" protocol {helper.proto}',
            "\t\tl3proto inet",
            "\t}",
        ]
    lines += ["\tchain alg {", "\t\ttype filter hook prerouting priority filter; policy accept;"]
    for helper in helpers:
        lines.append(
            f'\t\tct state new {helper.proto} dport {helper.port} ct helper set "{helper_name(helper)}"'
        )
    return [*lines, "\t}"]


def _timeout_object(name: str, proto: str, states: Mapping[str, int]) -> list[str]:
    """A ct timeout object: seconds per conntrack state; a state not named keeps nft's default."""
    policy = ", ".join(f"{state} : {seconds}" for state, seconds in states.items())
    return [
        f"\tct timeout {name} {{",
        f"\t\tprotocol {proto}",
        "\t\tl3proto ip",
        f"\t\tpolicy = {{ {policy} }}",
        "\t}",
    ]


def _tcp_states(policy: FirewallPolicy) -> dict[str, int]:
    states = {"established": policy.tcp_timeout}
    if policy.half_open_timeout is not None:
        states |= {"syn_sent": policy.half_open_timeout, "syn_recv": policy.half_open_timeout}
    if policy.closed_timeout is not None:
        states |= {"time_wait": policy.closed_timeout, "close": policy.closed_timeout}
    return states


def _udp_states(policy: FirewallPolicy) -> dict[str, int] | None:
    """Both UDP states when the policy sets either (None: Linux's own, no object at all).
    Both are written: nft fills a missing state with its own table, which is not the
    kernel's on every version (nftables had 180 s for replied until 2021)."""
    if policy.udp_timeout is None and policy.udp_stream_timeout is None:
        return None
    unreplied, replied = policy.udp_timeout, policy.udp_stream_timeout
    return {
        "unreplied": LINUX_UDP_TIMEOUT if unreplied is None else unreplied,
        "replied": LINUX_UDP_STREAM_TIMEOUT if replied is None else replied,
    }


def _rule_name(i: int, rule: TimeoutRule) -> str:
    return f"timeout_{i}_{rule.proto}"


def _inbound_rule(service: Service, inside: str, outside: str, strict: bool, stateful: bool = True) -> str:
    syn = " tcp flags & (fin | syn | rst | ack) == syn" if strict and service.proto == "tcp" else ""
    match = _match(service.proto, service.address, service.port, service.port_end)
    state = " ct state new" if stateful else ""
    return f'\t\tiifname "{outside}" oifname "{inside}" {match}{syn}{state} accept'


def _handoff_chain(inside: str, outside: str) -> list[str]:
    # After conntrack: a TCP packet with no session here (invalid: a SYN-ACK or a
    # mid-stream segment) that came in from either side, never from the peer, is marked.
    return [
        "\tchain peer_handoff {",
        "\t\ttype filter hook prerouting priority mangle; policy accept;",
        f'\t\tiifname {{ "{inside}", "{outside}" }} meta l4proto tcp ct state invalid '
        f"meta mark set {HANDOFF_MARK:#x}",
        "\t}",
    ]


def _full_cone_chain(host: str, outside: str) -> list[str]:
    # Endpoint-independent filtering: a new UDP flow from anyone outside to the firewall's
    # own outside address (fib: local on the interface it came in by, whatever the address)
    # goes to the host on the same port. A reply to a session the firewall already has is
    # not new and never reaches a nat chain; masquerade (no `random`) keeps the host's
    # source port where it is free, so the port it sent from is the port reached here.
    match = _match("udp", None, 1024, 65535)
    return [
        "\tchain full_cone {",
        "\t\ttype nat hook prerouting priority dstnat; policy accept;",
        f'\t\tiifname "{outside}" {match} fib daddr . iif type local dnat ip to {host}',
        "\t}",
    ]


def _path_mtu_lines(policy: FirewallPolicy) -> list[str]:
    """The forward chain's first rules, before established and related packets are let
    through: the MSS clamp (a SYN-ACK is already established) and the ICMP errors' drop.

    `rt mtu` is the MSS the routes allow: the smaller MTU of the route towards the packet's
    destination and of the route back to its source, less the IP and TCP headers; nft
    only ever lowers an MSS with it. Either family (an inet table). Neighbour discovery
    is never forwarded: the ruleset has no input or output chain, so it is not filtered."""
    lines = []
    if policy.clamp_mss:
        lines.append("\t\ttcp flags syn tcp option maxseg size set rt mtu")
    if policy.icmp_errors == "drop":
        lines.append(
            '\t\tmeta l4proto { icmp, ipv6-icmp } ct state related counter name "drop_icmp_error" drop'
        )
    return lines


def render_ruleset(policy: FirewallPolicy, inside: str, outside: str, peer_link: str | None = None) -> str:
    """The whole ruleset of a firewall whose interfaces are `inside` and `outside`;
    `peer_link` is the interface towards the peer firewall that handed-off packets leave by.

    Starts with deleting the table, so loading it again replaces the policy atomically.
    """
    handoff = policy.peer_handoff != "off"
    if handoff and peer_link is None:
        raise ValueError("peer_handoff needs the interface to the peer firewall")
    lines = [f"table inet {TABLE}", f"delete table inet {TABLE}", f"table inet {TABLE} {{"]
    counters = list(DROP_COUNTERS[:3])  # the reasons every policy can drop for
    counters += ["drop_table_full"] if policy.max_sessions is not None else []
    counters += ["drop_per_source"] if policy.per_source_limit is not None else []
    counters += ["drop_icmp_error"] if policy.icmp_errors == "drop" else []
    counters += [HANDOFF_COUNTER] if handoff else []
    counters += [SYNPROXY_COUNTER] if policy.synproxy else []
    for name in counters:
        lines.append(f"\tcounter {name} {{ }}")
    if policy.per_source_limit is not None:  # one set per family: an address type is one family's
        for name, kind in (("per_source", "ipv4_addr"), ("per_source6", "ipv6_addr")):
            lines += [f"\tset {name} {{", f"\t\ttype {kind}", "\t\tsize 65535", "\t\tflags dynamic", "\t}"]
    lines += _timeout_object("timeout_default_tcp", "tcp", _tcp_states(policy))
    udp_states = _udp_states(policy)
    if udp_states is not None:
        lines += _timeout_object("timeout_default_udp", "udp", udp_states)
    for i, rule in enumerate(policy.timeouts):
        if rule.proto == "tcp":
            states = {"established": rule.timeout}
        else:  # both UDP states: nft fills a missing one from its own table (unreplied 30 s)
            unreplied = udp_states["unreplied"] if udp_states is not None else LINUX_UDP_TIMEOUT
            states = {"unreplied": unreplied, "replied": rule.timeout}
        lines += _timeout_object(_rule_name(i, rule), rule.proto, states)

    # Timeouts attach to a session when it is new and not yet confirmed: after conntrack
    # (priority -200) in prerouting, first matching rule wins.
    lines += ["\tchain session_timeouts {", "\t\ttype filter hook prerouting priority mangle; policy accept;"]
    for i, rule in enumerate(policy.timeouts):
        match = _match(rule.proto, rule.address, rule.port)
        lines.append(f'\t\tct state new {match} ct timeout set "{_rule_name(i, rule)}" accept')
    lines.append('\t\tct state new meta l4proto tcp ct timeout set "timeout_default_tcp"')
    if udp_states is not None:
        lines.append('\t\tct state new meta l4proto udp ct timeout set "timeout_default_udp"')
    lines.append("\t}")

    strict = not policy.loose_pickup
    lines += ["\tchain filter_forward {", "\t\ttype filter hook forward priority filter; policy drop;"]
    lines += _path_mtu_lines(policy)
    lines.append("\t\tct state established,related accept")
    if policy.synproxy:
        # The SYN arrived untracked (see synproxy_notrack); the proxy answers it with a
        # cookie and opens the real session only for a client that completes the handshake.
        # Without TCP timestamps (and so without window scaling and SACK, which the proxy
        # keeps in them): relayed, they broke one handshake in tens on this kernel (the
        # server refused the proxy's ACK, whose TSecr it never sent, then the client's data
        # echoing the proxy's later timestamp). The MSS must match the servers'.
        ports = _ports(s for s in policy.allow_inbound if s.proto == "tcp")
        lines.append(
            f'\t\tiifname "{outside}" tcp dport {ports} ct state invalid,untracked '
            f'counter name "{SYNPROXY_COUNTER}" synproxy mss 1460 wscale 9'
        )
    if handoff:
        lines.append(
            f'\t\tmeta mark {HANDOFF_MARK:#x} oifname "{peer_link}" counter name "{HANDOFF_COUNTER}" accept'
        )
    lines.append('\t\tct state invalid counter name "drop_invalid" drop')
    if strict:
        # A TCP session starts with a SYN; anything else without a session is not let in.
        lines.append(
            '\t\tct state new tcp flags & (fin | syn | rst | ack) != syn counter name "drop_new_not_syn" drop'
        )
    if policy.per_source_limit is not None:
        for name, family in (("per_source", "ip"), ("per_source6", "ip6")):
            lines.append(
                f"\t\tct state new add @{name} {{ {family} saddr ct count over {policy.per_source_limit} }} "
                'counter name "drop_per_source" drop'
            )
    if policy.max_sessions is not None:
        # The table's capacity: every new session that passes here is counted while it lives.
        lines.append(
            f'\t\tct state new ct count over {policy.max_sessions} counter name "drop_table_full" drop'
        )
    if policy.allow_outbound:
        lines.append(f'\t\tiifname "{inside}" oifname "{outside}" ct state new accept')
    for service in policy.allow_inbound:
        lines.append(_inbound_rule(service, inside, outside, strict))
    if policy.full_cone is not None:
        # What the full_cone chain sent to the host (only it DNATs in this table).
        lines.append(
            f'\t\tiifname "{outside}" oifname "{inside}" ip daddr {policy.full_cone} meta l4proto udp '
            "ct status dnat ct state new accept"
        )
    lines.append('\t\tcounter name "drop_denied" drop')
    lines.append("\t}")

    if policy.helpers:
        lines += _helper_lines(policy.helpers)
    if policy.snat:
        lines += [
            "\tchain source_nat {",
            "\t\ttype nat hook postrouting priority srcnat; policy accept;",
            f'\t\toifname "{outside}" masquerade' + (f" {policy.snat_random}" if policy.snat_random else ""),
            "\t}",
        ]
    if policy.full_cone is not None:
        lines += _full_cone_chain(policy.full_cone, outside)
    if handoff:
        lines += _handoff_chain(inside, outside)
    if policy.synproxy:
        ports = _ports(s for s in policy.allow_inbound if s.proto == "tcp")
        lines += [
            "\tchain synproxy_notrack {",
            "\t\ttype filter hook prerouting priority raw; policy accept;",
            f'\t\tiifname "{outside}" tcp dport {ports} tcp flags syn notrack',
            "\t}",
        ]
    if policy.reset_on_expiry:
        lines += [
            "\tchain agent_notrack {",
            "\t\ttype filter hook output priority raw; policy accept;",
            f"\t\tmeta mark {AGENT_MARK:#x} notrack",
            "\t}",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_sysctls(policy: FirewallPolicy) -> dict[str, str]:
    """Kernel settings of the firewall's namespace that go with the ruleset."""
    return {
        "net.ipv4.ip_forward": "1",
        # Linux picks up mid-stream TCP by default; a strict firewall must not.
        "net.netfilter.nf_conntrack_tcp_loose": "1" if policy.loose_pickup else "0",
        # Conntrack timestamps give each session's start in `conntrack -L -o timestamp`.
        "net.netfilter.nf_conntrack_timestamp": "1",
        "net.netfilter.nf_conntrack_tcp_be_liberal": "1" if policy.liberal_windows else "0",
        # Per-direction packet and byte counts of every session: which firewall carried what.
        "net.netfilter.nf_conntrack_acct": "1",
        # A handed-off packet arrives from the peer with a source routed elsewhere.
        "net.ipv4.conf.all.rp_filter": "0",
    }


EPHEMERAL = "1024-65535"  # where a router ACL expects the replies to its clients' sessions


def render_stateless(policy: FirewallPolicy, inside: str, outside: str) -> str:
    """The same intent as `render_ruleset` without session state: a router's ACL pair.
    Nothing is tracked (notrack), so a reply is recognised by its header alone: TCP with
    ACK or RST set towards an ephemeral port ("established" in router ACLs), an echo reply
    of either family (`icmp type` matches IPv4 alone in an inet table, so IPv6's has its
    own `icmpv6` rule); new inbound sessions only to the published services. What that
    lets through that a stateful firewall would not (crafted ACK, FIN-ACK or RST packets)
    is the point."""
    lines = [f"table inet {TABLE}", f"delete table inet {TABLE}", f"table inet {TABLE} {{"]
    lines += ["\tcounter passed_as_reply { }", "\tcounter drop_denied { }"]
    lines += [
        "\tchain stateless_notrack {",
        "\t\ttype filter hook prerouting priority raw; policy accept;",
        f'\t\tiifname {{ "{inside}", "{outside}" }} notrack',
        "\t}",
        "\tchain filter_forward {",
        "\t\ttype filter hook forward priority filter; policy drop;",
    ]
    if policy.allow_outbound:
        lines.append(f'\t\tiifname "{inside}" oifname "{outside}" accept')
    lines += [
        f'\t\tiifname "{outside}" oifname "{inside}" tcp dport {EPHEMERAL} tcp flags & (ack | rst) != 0 '
        'counter name "passed_as_reply" accept',
        f'\t\tiifname "{outside}" oifname "{inside}" icmp type echo-reply accept',
        f'\t\tiifname "{outside}" oifname "{inside}" icmpv6 type echo-reply accept',
    ]
    for service in policy.allow_inbound:
        lines.append(_inbound_rule(service, inside, outside, strict=False, stateful=False))
        # The server's replies go out by the inside ACL: allowed by the outbound rule,
        # or, without it, by one more rule per service.
        if service.proto == "tcp" and not policy.allow_outbound:
            lines.append(
                f'\t\tiifname "{inside}" oifname "{outside}" meta l4proto tcp tcp sport {service.port} accept'
            )
    lines += ['\t\tcounter name "drop_denied" drop', "\t}", "}"]
    return "\n".join(lines) + "\n"


def rule_count(text: str) -> int:
    """How many rules a ruleset's forward chain holds (what an operator writes and reads)."""
    count, inside = 0, False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("chain filter_forward"):
            inside = True
        elif inside and stripped == "}":
            inside = False
        elif inside and stripped and not stripped.startswith("type "):
            count += 1
    return count
