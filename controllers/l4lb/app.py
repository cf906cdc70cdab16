"""os-ken adapter for controllers.l4lb.logic: translates its flows into OpenFlow 1.3 (with
Nicira extensions: multipath, learn), answers ARP for the VIP, hands new sessions to the
logic (controller-decided algorithms), and follows the backends in service.

Configuration: the JSON file named by SESSIONLAB_APP_CONFIG (written by the harness). The
addresses in service are read from `service_file` when it changes (the health-check
agent writes it from the lab, replacing it whole). Events (JSON lines): switch_ready,
session (a decision, with the open sessions per backend the controller counted before
it), session_end, in_service.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import CONFIG_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
from os_ken.lib import hub
from os_ken.lib.packet import arp, ethernet, ipv4, packet, tcp
from os_ken.ofproto import nicira_ext, ofproto_v1_3

from controllers.fwlb.logic import Flow
from controllers.l4lb.logic import PORT_REG, Backend, Balancer
from controllers.ofp import clear_switch, log, send_barrier, send_flow, session_match_specs

HASH_FIELDS = {"symmetric_l3l4": 2, "symmetric_l3": 6}  # OVS nx_hash_fields


class L4Balancer(app_manager.OSKenApp):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        data = json.loads(Path(os.environ["SESSIONLAB_APP_CONFIG"]).read_text())
        backends = tuple(Backend(**b) for b in data["backends"])
        self.lb = Balancer(
            data["dpid"],
            data["vip"],
            data["vmac"],
            data["vport"],
            backends,
            data["algorithm"],
            idle_timeout=int(data.get("idle_timeout", 10)),
        )
        self.service_file = Path(data["service_file"]) if data.get("service_file") else None
        self.datapaths: dict[int, Any] = {}
        self.pending: dict[int, int] = {}
        hub.spawn(self._watch_service)
        log("app_started", algorithm=self.lb.algorithm, in_switch=self.lb.in_switch)

    # --- translation ----------------------------------------------------------------
    def _action(self, dp: Any, spec: tuple[Any, ...]) -> Any:
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
        if kind == "multipath":
            _, fields, slots, reg = spec
            return p.NXActionMultipath(
                fields=HASH_FIELDS[fields],
                basis=0,
                algorithm=nicira_ext.NX_MP_ALG_HRW,
                max_link=slots - 1,
                arg=0,
                ofs_nbits=nicira_ext.ofs_nbits(0, 31),
                dst=reg,
            )
        if kind == "learn_session":
            # The session's own 5-tuple, rewritten to this backend: its MAC and address
            # as constants, its port from PORT_REG (set just before).
            _, table, cookie, idle, mac, ip = spec
            specs = [
                *session_match_specs(p),
                p.NXFlowSpecLoad(src=int(mac.replace(":", ""), 16), dst=("eth_dst_nxm", 0), n_bits=48),
                p.NXFlowSpecLoad(src=_ip_int(ip), dst=("ipv4_dst_nxm", 0), n_bits=32),
                p.NXFlowSpecOutput(src=(PORT_REG, 0), dst="", n_bits=32),
            ]
            return p.NXActionLearn(
                table_id=table, specs=specs, idle_timeout=idle, priority=100, cookie=cookie
            )
        raise ValueError(f"unknown action {spec!r}")

    def send(self, flow: Flow) -> None:
        dp = self.datapaths.get(flow.dpid)
        if dp is not None:
            send_flow(dp, flow, self._action)

    # --- events ---------------------------------------------------------------------
    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def switch_features(self, ev: Any) -> None:
        dp = ev.msg.datapath
        self.datapaths[dp.id] = dp
        clear_switch(dp)
        if dp.id == self.lb.dpid:
            for flow in self.lb.static_flows():
                self.send(flow)
        else:  # every other switch: a plain learning switch
            self.send(Flow(dp.id, 0, 0, (), (("normal",),)))
        self.pending[dp.id] = send_barrier(dp)
        log("switch_connected", dpid=dp.id)

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    def barrier_reply(self, ev: Any) -> None:
        dpid = ev.msg.datapath.id
        if self.pending.pop(dpid, None) is not None:
            log("switch_ready", dpid=dpid)

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def error(self, ev: Any) -> None:
        msg = ev.msg
        log("openflow_error", dpid=msg.datapath.id, type=msg.type, code=msg.code, data=msg.data.hex()[:80])

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def packet_in(self, ev: Any) -> None:
        msg = ev.msg
        dp = msg.datapath
        pkt = packet.Packet(msg.data)
        in_port = msg.match["in_port"]
        request = pkt.get_protocol(arp.arp)
        if request is not None:
            if request.opcode == arp.ARP_REQUEST and request.dst_ip == self.lb.vip:
                self._answer_arp(dp, in_port, request)
            return
        ip, segment = pkt.get_protocol(ipv4.ipv4), pkt.get_protocol(tcp.tcp)
        if ip is None or segment is None or ip.dst != self.lb.vip:
            return
        session = (ip.src, segment.src_port)
        if segment.bits & (tcp.TCP_FIN | tcp.TCP_RST):
            ended = self.lb.session_ended(session)  # the copy: the switch forwarded it already
            if ended is not None:
                log(
                    "session_end",
                    client=f"{ip.src}:{segment.src_port}",
                    backend=ended.name,
                    why="RST" if segment.bits & tcp.TCP_RST else "FIN",
                    open=self.lb.open_sessions(),
                )
            return
        if not segment.bits & tcp.TCP_SYN and session not in self.lb.sessions:
            return  # a late packet of a session that has ended: nothing to pin
        before, known = self.lb.open_sessions(), session in self.lb.sessions
        try:
            backend, flows = self.lb.new_session(session, time.time())
        except LookupError:
            log("session_refused", client=f"{ip.src}:{segment.src_port}", why="no backend in service")
            return
        for flow in flows:
            self.send(flow)
        p, ofp = dp.ofproto_parser, dp.ofproto
        actions = [self._action(dp, a) for a in self.lb.rewrite(backend)]
        dp.send_msg(
            p.OFPPacketOut(dp, buffer_id=ofp.OFP_NO_BUFFER, in_port=in_port, actions=actions, data=msg.data)
        )
        if known:
            return  # a retransmitted first packet: the session is pinned already
        log(
            "session",
            client=f"{ip.src}:{segment.src_port}",
            backend=backend.name,
            open_before=before,
        )

    def _answer_arp(self, dp: Any, in_port: int, request: Any) -> None:
        p, ofp = dp.ofproto_parser, dp.ofproto
        reply = packet.Packet()
        reply.add_protocol(ethernet.ethernet(dst=request.src_mac, src=self.lb.vmac, ethertype=0x0806))
        reply.add_protocol(
            arp.arp(
                opcode=arp.ARP_REPLY,
                src_mac=self.lb.vmac,
                src_ip=self.lb.vip,
                dst_mac=request.src_mac,
                dst_ip=request.src_ip,
            )
        )
        reply.serialize()
        actions = [p.OFPActionOutput(in_port)]
        dp.send_msg(
            p.OFPPacketOut(
                dp, buffer_id=ofp.OFP_NO_BUFFER, in_port=ofp.OFPP_CONTROLLER, actions=actions, data=reply.data
            )
        )
        log("arp_answered", asker=request.src_ip)

    @set_ev_cls(ofp_event.EventOFPFlowRemoved, MAIN_DISPATCHER)
    def flow_removed(self, ev: Any) -> None:
        match = ev.msg.match
        if "ipv4_src" not in match or "tcp_src" not in match:
            return
        ended = self.lb.session_ended((match["ipv4_src"], match["tcp_src"]))
        if ended is not None:
            log(
                "session_end",
                client=f"{match['ipv4_src']}:{match['tcp_src']}",
                backend=ended.name,
                why="idle",
                open=self.lb.open_sessions(),
            )

    # --- health -----------------------------------------------------------------------
    def _watch_service(self) -> None:
        """Follow the backends in service (the health-check agent's file)."""
        seen = 0.0
        while True:
            hub.sleep(0.05)
            if self.service_file is None or not self.service_file.exists():
                continue
            stamp = self.service_file.stat().st_mtime
            if stamp == seen:
                continue
            seen = stamp
            try:
                addresses = set(json.loads(self.service_file.read_text())["in_service"])
            except (ValueError, KeyError):
                continue
            names = {b.name for b in self.lb.backends if b.ip in addresses}
            for flow in self.lb.set_in_service(names):
                self.send(flow)
            log(
                "in_service",
                backends=[b.name for b in self.lb.in_service],
                sessions_kept=self.lb.sessions_out_of_service(),
            )


def _ip_int(address: str) -> int:
    a, b, c, d = (int(x) for x in address.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d
