"""os-ken adapter for controllers.fwlb.logic: feeds it port events and sends its flows and
groups (translated by controllers.ofp), and reads the sessions the switches pinned.

Configuration: the JSON file named by SESSIONLAB_APP_CONFIG (written by the harness).
The sessions are the fabric switches' conntrack entries (`ovs-appctl dpctl/dump-conntrack`
of their zones: conntrack is the datapath's, not OpenFlow's); the app starts by emptying
those zones (a clean start, as for the flows). The session table is written to the
config's `session_file` after every read. With `poll_request_file` in the configuration
they are read only when that file changed since the last read
(`lab.controller.ControllerTable` touches it while it waits): reading thousands of
sessions twice a second would cost this app and the switches CPU the sessions need.
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

from controllers import conntrack
from controllers.conntrack import DATAPATH, appctl, parse_conntrack
from controllers.fwlb.logic import Fabric, FabricConfig
from controllers.fwlb.sessions import SessionTable
from controllers.ofp import Message, SwitchAdapter, log


class FirewallFabric(SwitchAdapter, app_manager.OSKenApp):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        data = json.loads(Path(os.environ["SESSIONLAB_APP_CONFIG"]).read_text())
        self.fabric = Fabric(FabricConfig.from_dict(data))
        self.datapath = str(data.get("datapath", DATAPATH))
        self.session_file = Path(data["session_file"]) if data.get("session_file") else None
        self.poll_interval = float(data.get("poll_interval", 0.5))
        request = data.get("poll_request_file")
        self.poll_request = Path(request) if request else None
        self.last_request = ""
        self.sessions = SessionTable()
        for zone in self.fabric.config.zones.values():
            conntrack.flush(zone)
        hub.spawn(self._poll)
        log("app_started", mode=self.fabric.config.mode, zones=self.fabric.config.zones)

    # --- the switches (controllers.ofp.SwitchAdapter handles their events) ---------------
    def switch_flows(self, dpid: int) -> list[Message]:
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
            if self._requested():
                self._read_sessions()

    def _requested(self) -> bool:
        """Whether the sessions are to be read now: always without a request file,
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

    def _read_sessions(self) -> None:
        """Both fabric switches' connections, then the table written whole."""
        for role, zone in self.fabric.config.zones.items():
            text = appctl("dpctl/dump-conntrack", self.datapath, f"zone={zone}")
            self.sessions.update(role, parse_conntrack(text), time.time())
        if self.session_file is not None:
            tmp = self.session_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"alive": self.fabric.alive, "sessions": self.sessions.to_list()}))
            tmp.replace(self.session_file)
