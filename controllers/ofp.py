"""What the os-ken adapters share: their event lines, a switch's clean start, the
readiness barrier, and the flow messages for the logic's `Flow`s (OpenFlow 1.3).

The decisions stay in each app's logic module; this only speaks OpenFlow.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

from controllers.fwlb.logic import Flow


def log(event: str, **fields: Any) -> None:
    """One event line on stdout (the lab reads them), in one write: print() writes the
    text and its newline apart, and two of an app's green threads interleaved there once."""
    sys.stdout.write(json.dumps({"event": event, "t": time.time(), **fields}) + "\n")
    sys.stdout.flush()


def clear_switch(dp: Any) -> None:
    """Start clean: whatever an earlier controller left (flows, learned sessions) goes."""
    p, ofp = dp.ofproto_parser, dp.ofproto
    dp.send_msg(
        p.OFPFlowMod(
            dp,
            table_id=ofp.OFPTT_ALL,
            command=ofp.OFPFC_DELETE,
            out_port=ofp.OFPP_ANY,
            out_group=ofp.OFPG_ANY,
            match=p.OFPMatch(),
        )
    )


def send_barrier(dp: Any) -> int:
    """A barrier after the switch's configuration: its reply says the switch is ready."""
    msg = dp.ofproto_parser.OFPBarrierRequest(dp)
    dp.send_msg(msg)
    return msg.xid if msg.xid is not None else 0


def send_flow(dp: Any, flow: Flow, action: Callable[[Any, tuple[Any, ...]], Any]) -> None:
    """A `Flow` as a flow-mod: add (with its idle timeout and removal notice), or delete
    the flows its table and match cover. `action` translates one action spec."""
    p, ofp = dp.ofproto_parser, dp.ofproto
    match = p.OFPMatch(**dict(flow.match))
    if flow.command == "delete":
        dp.send_msg(
            p.OFPFlowMod(
                dp,
                table_id=flow.table,
                command=ofp.OFPFC_DELETE,
                out_port=ofp.OFPP_ANY,
                out_group=ofp.OFPG_ANY,
                match=match,
            )
        )
        return
    instructions = []
    if flow.actions:
        actions = [action(dp, a) for a in flow.actions]
        instructions.append(p.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions))
    if flow.goto is not None:
        instructions.append(p.OFPInstructionGotoTable(flow.goto))
    dp.send_msg(
        p.OFPFlowMod(
            dp,
            cookie=flow.cookie,
            table_id=flow.table,
            command=ofp.OFPFC_ADD,
            priority=flow.priority,
            idle_timeout=flow.idle_timeout,
            flags=ofp.OFPFF_SEND_FLOW_REM if flow.notify_removed else 0,
            match=match,
            instructions=instructions,
        )
    )


def session_match_specs(p: Any) -> list[Any]:
    """`learn` specs matching a TCP session's own 5-tuple (addresses and ports)."""
    return [
        p.NXFlowSpecMatch(src=0x0800, dst=("eth_type_nxm", 0), n_bits=16),
        p.NXFlowSpecMatch(src=6, dst=("ip_proto_nxm", 0), n_bits=8),
        p.NXFlowSpecMatch(src=("ipv4_src_nxm", 0), dst=("ipv4_src_nxm", 0), n_bits=32),
        p.NXFlowSpecMatch(src=("ipv4_dst_nxm", 0), dst=("ipv4_dst_nxm", 0), n_bits=32),
        p.NXFlowSpecMatch(src=("tcp_src_nxm", 0), dst=("tcp_src_nxm", 0), n_bits=16),
        p.NXFlowSpecMatch(src=("tcp_dst_nxm", 0), dst=("tcp_dst_nxm", 0), n_bits=16),
    ]
