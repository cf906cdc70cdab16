"""os-ken adapter for controllers.l4lb.logic: sends its flows (translated by
controllers.ofp), answers ARP for the VIP, hands the packets to the VIP to the logic and
carries out its verdicts, reads the balancer's conntrack zone (removing idle sessions),
and follows the backends in service.

Configuration: the JSON file named by SESSIONLAB_APP_CONFIG (written by the harness). The
app starts by emptying its conntrack zone (a clean start, as for the flows). The
addresses in service are read from `service_file` when it changes (the health-check
agent writes it from the lab, replacing it whole). Events (JSON lines): switch_ready,
session (a decision, with the open sessions per backend the controller counted before
it), session_end, idle_removed, in_service.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import MAIN_DISPATCHER, set_ev_cls
from os_ken.lib import hub
from os_ken.lib.packet import arp, ethernet, ipv4, packet, tcp
from os_ken.ofproto import ofproto_v1_3

from controllers import conntrack
from controllers.l4lb.logic import CLOSED_STATES, Backend, Balancer
from controllers.ofp import Flow, SwitchAdapter, log, packet_out


class L4Balancer(SwitchAdapter, app_manager.OSKenApp):
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
            zone=int(data["zone"]),
            idle_timeout=int(data.get("idle_timeout", 10)),
        )
        self.poll_interval = float(data.get("poll_interval", 2.0))
        self.service_file = Path(data["service_file"]) if data.get("service_file") else None
        conntrack.flush(self.lb.zone)
        hub.spawn(self._watch_service)
        hub.spawn(self._watch_connections)
        log("app_started", algorithm=self.lb.algorithm, in_switch=self.lb.in_switch, zone=self.lb.zone)

    # --- the switches (controllers.ofp.SwitchAdapter handles their events) ---------------
    def switch_flows(self, dpid: int) -> list[Flow]:
        return self.lb.flows(dpid)

    # --- the logic's events ---------------------------------------------------------------
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
        verdict = self.lb.packet_in((ip.src, segment.src_port), segment.bits, time.time())
        self.carry_out(verdict, dp, in_port, msg.data)

    def _answer_arp(self, dp: Any, in_port: int, request: Any) -> None:
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
        dp.send_msg(packet_out(dp, dp.ofproto.OFPP_CONTROLLER, (("output", in_port),), reply.data))
        log("arp_answered", asker=request.src_ip)

    # --- the sessions: the zone's connections -----------------------------------------
    def _watch_connections(self) -> None:
        """Read the zone every `poll_interval`: idle sessions removed, ends reported."""
        while True:
            hub.sleep(self.poll_interval)
            connections = conntrack.dump(self.lb.zone, stats=True, skip=CLOSED_STATES)
            if connections is None:
                continue  # a failed read is no empty zone: it ends no session
            verdict, idle = self.lb.connections_read(connections, time.time())
            for entry in idle:
                conntrack.flush(self.lb.zone, entry)
            if idle:
                named = [f"{e['src']}:{e['sport']}" for e in idle[:20]]
                log("idle_removed", count=len(idle), sessions=named)
            self.carry_out(verdict)

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
            self.carry_out(self.lb.service_changed(addresses))
