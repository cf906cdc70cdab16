"""os-ken adapter for controllers.fwlb.logic: feeds it port events and sends its flows
(translated by controllers.ofp), and polls the learned sessions.

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
from os_ken.controller.handler import MAIN_DISPATCHER, set_ev_cls
from os_ken.lib import hub
from os_ken.ofproto import ofproto_v1_3

from controllers.fwlb.logic import T_SESSIONS, Fabric, FabricConfig, SessionTable
from controllers.ofp import Flow, SwitchAdapter, log


class FirewallFabric(SwitchAdapter, app_manager.OSKenApp):
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
        hub.spawn(self._poll)
        log("app_started", mode=self.fabric.config.mode)

    # --- the switches (controllers.ofp.SwitchAdapter handles their events) ---------------
    def switch_flows(self, dpid: int) -> list[Flow]:
        return self.fabric.flows(dpid)

    def switch_fields(self, dpid: int) -> dict[str, Any]:
        return {"role": self.fabric.role(dpid)}

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def port_status(self, ev: Any) -> None:
        msg = ev.msg
        dp, ofp = msg.datapath, msg.datapath.ofproto
        up = not (msg.desc.state & ofp.OFPPS_LINK_DOWN) and not (msg.desc.config & ofp.OFPPC_PORT_DOWN)
        log("port_status", dpid=dp.id, port=msg.desc.port_no, up=up)
        self.carry_out(self.fabric.report(self.fabric.port_changed(dp.id, msg.desc.port_no, up, time.time())))

    # --- the session table ----------------------------------------------------------
    def _poll(self) -> None:
        while True:
            hub.sleep(self.poll_interval)
            self.carry_out(self.fabric.report(self.fabric.tick(time.time())))
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
