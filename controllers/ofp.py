"""The one OpenFlow layer of the controller apps: the `Flow` record their logic returns, its
translation into OpenFlow 1.3 messages (with the Nicira extensions), the event lines, and
`SwitchAdapter`, the switch handling both os-ken adapters share (a clean start, the
switch's flows, the readiness barrier, errors).

The decisions stay in each app's `logic.py`; this module only speaks OpenFlow. It imports
no os-ken at import time (a logic module imports `Flow` from here and stays testable
offline): the translators reach OpenFlow through the datapath's own parser, and os-ken's
handler registration happens when an app subclasses `SwitchAdapter`.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Action = tuple[Any, ...]  # ("kind", arguments...): see `action` for the kinds
Match = tuple[tuple[str, Any], ...]  # (OXM field name, value) pairs, sorted

NAT_DST = 0x02  # OVS's NX_NAT_F_DST (os-ken names the range bits only)
# OVS nx_hash_fields, by the name a logic module uses.
HASH_FIELDS = {"symmetric_l3l4": 2, "symmetric_l3": 6}


@dataclass(frozen=True)
class Flow:
    """One flow entry to add (or, with command "delete", the entries to remove)."""

    dpid: int
    table: int
    priority: int
    match: Match
    actions: tuple[Action, ...] = ()
    goto: int | None = None
    cookie: int = 0
    command: str = "add"
    idle_timeout: int = 0  # s; 0: the flow stays
    notify_removed: bool = False  # the switch reports its removal (OFPFF_SEND_FLOW_REM)


@dataclass(frozen=True)
class Group:
    """One select group to add (or, with command "modify", to replace): each bucket an
    action list, all of weight 1. Without a selection method, Open vSwitch (3.1 here: its
    group_set_selection_method) picks the bucket in the datapath by `dp_hash`, a symmetric
    hash of addresses, protocol and ports (basis 0), its 16 lowest values dealt to equal
    buckets in turn (value v to bucket v mod n): no upcall per new session."""

    dpid: int
    group_id: int
    buckets: tuple[tuple[Action, ...], ...]
    command: str = "add"


Message = Flow | Group  # what a logic module asks a switch to hold


@dataclass(frozen=True)
class Verdict:
    """What an app does about one event: the flows (and groups) to send, the actions to send
    the event's packet out with (None: the packet is not sent), and the event lines to
    write, in order."""

    flows: tuple[Message, ...] = ()
    packet: tuple[Action, ...] | None = None
    events: tuple[tuple[str, dict[str, Any]], ...] = ()


def match(**fields: Any) -> Match:
    """A flow's match from OXM fields, in one order (so equal matches compare equal)."""
    return tuple(sorted(fields.items()))


def log(event: str, **fields: Any) -> None:
    """One event line on stdout (the lab reads them), in one write: print() writes the
    text and its newline apart, and two of an app's green threads interleaved there once."""
    sys.stdout.write(json.dumps({"event": event, "t": time.time(), **fields}) + "\n")
    sys.stdout.flush()


# --- translation: Flow records -> OpenFlow ----------------------------------------------
def action(dp: Any, spec: Action) -> Any:
    """One action spec as the datapath's OpenFlow action. The kinds:

    ("output", port), ("normal",), ("controller",) (the whole packet),
    ("set_field", field, value), ("resubmit", table), ("push_mpls", ethertype),
    ("pop_mpls", ethertype), ("group", group_id),
    ("ct", zone, table): track the packet in conntrack `zone`, continue in `table` with its
    ct_state and ct_mark; ("ct_nat", zone, table): the same, the connection's NAT applied
    (a known connection's packets rewritten both ways); ("ct_commit", zone, mark): commit
    its connection, with `mark`; ("ct_pin", zone, mark, ip, table): commit it with `mark`
    and a destination NAT to `ip`, the packet (rewritten) continuing in `table`;
    ("multipath", fields, basis, links, reg): hash `fields` (a HASH_FIELDS name) with key
    `basis` into one of `links` slots, written to `reg`.
    """
    p, ofp = dp.ofproto_parser, dp.ofproto
    kind = spec[0]
    if kind == "output":
        return p.OFPActionOutput(spec[1])
    if kind == "normal":
        return p.OFPActionOutput(ofp.OFPP_NORMAL)
    if kind == "controller":
        return p.OFPActionOutput(ofp.OFPP_CONTROLLER, ofp.OFPCML_NO_BUFFER)
    if kind == "set_field":
        return p.OFPActionSetField(**{spec[1]: spec[2]})
    if kind == "resubmit":
        return p.NXActionResubmitTable(table_id=spec[1])
    if kind == "push_mpls":
        return p.OFPActionPushMpls(spec[1])
    if kind == "pop_mpls":
        return p.OFPActionPopMpls(spec[1])
    if kind == "group":
        return p.OFPActionGroup(spec[1])
    if kind in ("ct", "ct_nat", "ct_commit", "ct_pin"):
        from os_ken.ofproto import nicira_ext

        if kind in ("ct", "ct_nat"):
            _, zone, table = spec
            return p.NXActionCT(0, "", zone, table, 0, [p.NXActionNAT(0)] if kind == "ct_nat" else [])
        if kind == "ct_commit":
            _, zone, mark = spec
            marked = [p.OFPActionSetField(ct_mark=mark)]
            return p.NXActionCT(nicira_ext.NX_CT_F_COMMIT, "", zone, nicira_ext.NX_CT_RECIRC_NONE, 0, marked)
        _, zone, mark, ip, table = spec
        nat = p.NXActionNAT(NAT_DST, range_ipv4_min=ip, range_ipv4_max=ip)
        pinned = [nat, p.OFPActionSetField(ct_mark=mark)]
        return p.NXActionCT(nicira_ext.NX_CT_F_COMMIT, "", zone, table, 0, pinned)
    if kind == "multipath":
        from os_ken.ofproto import nicira_ext  # os-ken only where a switch is (module docstring)

        _, fields, basis, links, reg = spec
        return p.NXActionMultipath(
            fields=HASH_FIELDS[fields],
            basis=basis,
            algorithm=nicira_ext.NX_MP_ALG_HRW,
            max_link=links - 1,
            arg=0,
            ofs_nbits=nicira_ext.ofs_nbits(0, 31),
            dst=reg,
        )
    raise ValueError(f"unknown action {spec!r}")


def _delete(dp: Any, table: int, fields: Match) -> Any:
    """A flow-mod deleting the flows of `table` (OFPTT_ALL: every table) that `fields` cover."""
    p, ofp = dp.ofproto_parser, dp.ofproto
    return p.OFPFlowMod(
        dp,
        table_id=table,
        command=ofp.OFPFC_DELETE,
        out_port=ofp.OFPP_ANY,
        out_group=ofp.OFPG_ANY,
        match=p.OFPMatch(**dict(fields)),
    )


def flow_mod(dp: Any, flow: Flow) -> Any:
    """A `Flow` as a flow-mod: add (with its idle timeout and removal notice), or delete
    the flows its table and match cover."""
    if flow.command == "delete":
        return _delete(dp, flow.table, flow.match)
    p, ofp = dp.ofproto_parser, dp.ofproto
    instructions = []
    if flow.actions:
        actions = [action(dp, a) for a in flow.actions]
        instructions.append(p.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions))
    if flow.goto is not None:
        instructions.append(p.OFPInstructionGotoTable(flow.goto))
    return p.OFPFlowMod(
        dp,
        cookie=flow.cookie,
        table_id=flow.table,
        command=ofp.OFPFC_ADD,
        priority=flow.priority,
        idle_timeout=flow.idle_timeout,
        flags=ofp.OFPFF_SEND_FLOW_REM if flow.notify_removed else 0,
        match=p.OFPMatch(**dict(flow.match)),
        instructions=instructions,
    )


def group_mod(dp: Any, group: Group) -> Any:
    """A `Group` as a group-mod: a select group added or replaced."""
    p, ofp = dp.ofproto_parser, dp.ofproto
    command = {"add": ofp.OFPGC_ADD, "modify": ofp.OFPGC_MODIFY}[group.command]
    buckets = [p.OFPBucket(weight=1, actions=[action(dp, a) for a in b]) for b in group.buckets]
    return p.OFPGroupMod(dp, command, ofp.OFPGT_SELECT, group.group_id, buckets)


def message(dp: Any, msg: Message) -> Any:
    """A flow's flow-mod or a group's group-mod."""
    return group_mod(dp, msg) if isinstance(msg, Group) else flow_mod(dp, msg)


def packet_out(dp: Any, in_port: int, actions: tuple[Action, ...], data: bytes) -> Any:
    """A packet-out of `data` (as it came in on `in_port`) with the given action specs."""
    p, ofp = dp.ofproto_parser, dp.ofproto
    return p.OFPPacketOut(
        dp, buffer_id=ofp.OFP_NO_BUFFER, in_port=in_port, actions=[action(dp, a) for a in actions], data=data
    )


def clear_switch(dp: Any) -> None:
    """Start clean: whatever an earlier controller left (flows, learned sessions, groups) goes."""
    dp.send_msg(_delete(dp, dp.ofproto.OFPTT_ALL, ()))
    p, ofp = dp.ofproto_parser, dp.ofproto
    dp.send_msg(p.OFPGroupMod(dp, ofp.OFPGC_DELETE, 0, ofp.OFPG_ALL))


def send_barrier(dp: Any) -> int:
    """A barrier after the switch's configuration: its reply says the switch is ready."""
    msg = dp.ofproto_parser.OFPBarrierRequest(dp)
    dp.send_msg(msg)
    return msg.xid if msg.xid is not None else 0


# --- the adapters' shared switch handling ---------------------------------------------
class SwitchAdapter:
    """Mixed into an app (before os-ken's `OSKenApp`): keeps the connected switches, gives
    each a clean start with the flows the app's logic names (`switch_flows`), reports
    switch_connected / switch_ready (after a barrier) / openflow_error, and sends flows
    and verdicts. An app adds its own fields to the switch lines with `switch_fields`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.datapaths: dict[int, Any] = {}
        self.pending: dict[int, int] = {}  # dpid -> the xid of its readiness barrier

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # os-ken is imported when an app subclasses this, not when a logic module imports
        # `Flow`; by then the app module (started by controllers.run) has imported it.
        super().__init_subclass__(**kwargs)
        from os_ken.controller import ofp_event
        from os_ken.controller.handler import CONFIG_DISPATCHER, MAIN_DISPATCHER, set_ev_cls

        set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)(SwitchAdapter.switch_features)
        # The readiness barrier goes out from the features handler; its reply may come back
        # before os-ken's own handler has moved the switch to MAIN: heard in either state.
        set_ev_cls(ofp_event.EventOFPBarrierReply, [CONFIG_DISPATCHER, MAIN_DISPATCHER])(
            SwitchAdapter.barrier_reply
        )
        set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])(SwitchAdapter.error)

    def switch_flows(self, dpid: int) -> Sequence[Message]:
        """Everything a switch needs when it connects (the app's logic decides), groups
        before the flows that name them."""
        raise NotImplementedError

    def switch_fields(self, dpid: int) -> dict[str, Any]:
        """Fields the app adds to a switch's event lines (none by default)."""
        return {}

    def send(self, flow: Message) -> None:
        dp = self.datapaths.get(flow.dpid)
        if dp is not None:
            dp.send_msg(message(dp, flow))

    def carry_out(self, verdict: Verdict, dp: Any = None, in_port: int = 0, data: bytes = b"") -> None:
        """Send a verdict's flows, then its packet (through `dp`, as it came in on `in_port`),
        then write its event lines."""
        for flow in verdict.flows:
            self.send(flow)
        if verdict.packet is not None and dp is not None:
            dp.send_msg(packet_out(dp, in_port, verdict.packet, data))
        for event, fields in verdict.events:
            log(event, **fields)

    def switch_features(self, ev: Any) -> None:
        dp = ev.msg.datapath
        self.datapaths[dp.id] = dp
        clear_switch(dp)
        for flow in self.switch_flows(dp.id):
            self.send(flow)
        self.pending[dp.id] = send_barrier(dp)
        log("switch_connected", dpid=dp.id, **self.switch_fields(dp.id))

    def barrier_reply(self, ev: Any) -> None:
        dpid = ev.msg.datapath.id
        if self.pending.pop(dpid, None) is not None:
            log("switch_ready", dpid=dpid, **self.switch_fields(dpid))

    def error(self, ev: Any) -> None:
        msg = ev.msg
        log("openflow_error", dpid=msg.datapath.id, type=msg.type, code=msg.code, data=msg.data.hex()[:80])
