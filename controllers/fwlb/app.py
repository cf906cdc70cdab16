"""os-ken adapter for controllers.fwlb.logic: translates its flows into OpenFlow 1.3 (with
Nicira extensions), feeds it port events, and polls the learned sessions.

Configuration: the JSON file named by SESSIONLAB_APP_CONFIG (written by the harness).
The session table is written to the config's `session_file` after every read of the
switches' session flows. With `poll_request_file` in the configuration they are read only
when that file changed since the last read (`lab.controller.ControllerTable` touches it
while it waits): reading every learned flow of both switches twice a second cost this app
and the switches more than half a core at 600 new sessions/s on this 2-core machine.
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
from os_ken.ofproto import nicira_ext, ofproto_v1_3

from controllers.fwlb.logic import T_SESSIONS, Fabric, FabricConfig, Flow, SessionTable
from controllers.ofp import clear_switch, log, send_barrier, send_flow, session_match_specs

SYMMETRIC_L3L4 = 2  # OVS nx_hash_fields: addresses, protocol and ports, the same both ways


class FirewallFabric(app_manager.OSKenApp):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        data = json.loads(Path(os.environ["SESSIONLAB_APP_CONFIG"]).read_text())
        self.fabric = Fabric(FabricConfig.from_dict(data))
        self.session_file = Path(data["session_file"]) if data.get("session_file") else None
        self.poll_interval = float(data.get("poll_interval", 0.5))
        request = data.get("poll_request_file")
        self.poll_request = Path(request) if request else None
        self.last_request = ""
        self.sessions = SessionTable()
        self.datapaths: dict[int, Any] = {}
        self.pending: dict[int, int] = {}
        self.last_alive = dict(self.fabric.alive)
        hub.spawn(self._poll)
        log("app_started", mode=self.fabric.config.mode)

    # --- translation ----------------------------------------------------------------
    def _action(self, dp: Any, spec: tuple[Any, ...]) -> Any:
        p, ofp = dp.ofproto_parser, dp.ofproto
        kind = spec[0]
        if kind == "output":
            return p.OFPActionOutput(spec[1])
        if kind == "normal":
            return p.OFPActionOutput(ofp.OFPP_NORMAL)
        if kind == "set_field":
            return p.OFPActionSetField(**{spec[1]: spec[2]})
        if kind == "resubmit":
            return p.NXActionResubmitTable(table_id=spec[1])
        if kind == "push_mpls":
            return p.OFPActionPushMpls(spec[1])
        if kind == "pop_mpls":
            return p.OFPActionPopMpls(spec[1])
        if kind == "multipath":
            _, basis, links, reg = spec
            return p.NXActionMultipath(
                fields=SYMMETRIC_L3L4,
                basis=basis,
                algorithm=nicira_ext.NX_MP_ALG_HRW,
                max_link=links - 1,
                arg=0,
                ofs_nbits=nicira_ext.ofs_nbits(0, 31),
                dst=reg,
            )
        if kind == "learn":
            _, table, cookie, idle, value = spec
            specs = [*session_match_specs(p), p.NXFlowSpecLoad(src=value, dst=("reg0", 0), n_bits=32)]
            return p.NXActionLearn(table_id=table, specs=specs, idle_timeout=idle, priority=10, cookie=cookie)
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
        for flow in self.fabric.flows(dp.id):
            self.send(flow)
        self.pending[dp.id] = send_barrier(dp)
        log("switch_connected", dpid=dp.id, role=self.fabric.role(dp.id))

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    def barrier_reply(self, ev: Any) -> None:
        dpid = ev.msg.datapath.id
        if self.pending.pop(dpid, None) is not None:
            log("switch_ready", dpid=dpid, role=self.fabric.role(dpid))

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def error(self, ev: Any) -> None:
        msg = ev.msg
        log("openflow_error", dpid=msg.datapath.id, type=msg.type, code=msg.code, data=msg.data.hex()[:80])

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def port_status(self, ev: Any) -> None:
        msg = ev.msg
        dp, ofp = msg.datapath, msg.datapath.ofproto
        up = not (msg.desc.state & ofp.OFPPS_LINK_DOWN) and not (msg.desc.config & ofp.OFPPC_PORT_DOWN)
        log("port_status", dpid=dp.id, port=msg.desc.port_no, up=up)
        self._apply(self.fabric.port_changed(dp.id, msg.desc.port_no, up, time.time()))

    def _apply(self, changes: list[Flow]) -> None:
        """Send a liveness change's flows and log what is alive now."""
        before = dict(self.last_alive)
        for flow in changes:
            self.send(flow)
        for number, alive in self.fabric.alive.items():
            if before.get(number) != alive:
                log("firewall_" + ("up" if alive else "down"), firewall=number, flows_changed=len(changes))
        self.last_alive = dict(self.fabric.alive)

    # --- the session table ----------------------------------------------------------
    def _poll(self) -> None:
        while True:
            hub.sleep(self.poll_interval)
            self._apply(self.fabric.tick(time.time()))
            if not self._requested():
                continue
            for dpid in (self.fabric.config.outside["dpid"], self.fabric.config.inside["dpid"]):
                dp = self.datapaths.get(dpid)
                if dp is not None:
                    p = dp.ofproto_parser
                    dp.send_msg(p.OFPFlowStatsRequest(dp, table_id=T_SESSIONS))

    def _requested(self) -> bool:
        """Whether the session flows are to be read now: always without a request file,
        else when its content changed since the last read (each request writes anew)."""
        if self.poll_request is None:
            return True
        try:
            request = self.poll_request.read_text()
        except FileNotFoundError:
            return False
        if request == self.last_request:
            return False
        self.last_request = request
        return True

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    def flow_stats(self, ev: Any) -> None:
        dpid = ev.msg.datapath.id
        entries = []
        for stat in ev.msg.body:
            fields = dict(stat.match.items())
            if "ipv4_src" not in fields:
                continue
            entries.append(
                {
                    "cookie": stat.cookie,
                    "src": fields["ipv4_src"],
                    "sport": fields.get("tcp_src"),
                    "dst": fields["ipv4_dst"],
                    "dport": fields.get("tcp_dst"),
                    "packets": stat.packet_count,
                    "duration": stat.duration_sec + stat.duration_nsec / 1e9,
                }
            )
        self.sessions.update(self.fabric.role(dpid), entries, time.time())
        if self.session_file is not None:
            tmp = self.session_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"alive": self.fabric.alive, "sessions": self.sessions.to_list()}))
            tmp.replace(self.session_file)
