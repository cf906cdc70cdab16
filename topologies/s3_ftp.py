"""S3: FTP through a client-side and a server-side firewall.

    client -- s1 -- [fwc-in  fwc  fwc-out] -- s2 -- [fws-out  fws  fws-in] -- s3 -- server
  10.0.1.10       10.0.1.1          10.0.2.1   |   10.0.2.2          10.0.3.1       10.0.3.10
  fd00:3:1::10    fd00:3:1::1    fd00:3:2::1   |   fd00:3:2::2    fd00:3:3::1    fd00:3:3::10
   inside 10.0.1.0/24, fd00:3:1::/64           |  transit 10.0.2.0/24    servers 10.0.3.0/24
                                               |          fd00:3:2::/64          fd00:3:3::/64
                                             other 10.0.2.66, fd00:3:2::66 (a third host)

Both firewalls are Linux routers; the harness gives them their stateful nftables policies
(node role "firewall"): fwc protects the client (and may source-NAT it to 10.0.2.1, or
over IPv6 to fd00:3:2::1), fws protects the FTP server. `other` is a host on the transit
network that tries to use data ports announced to someone else. `server_bw` (Mbit/s)
makes the server's link a slow one.

Dual-stack: every node also has an IPv6 address (`PLAN6`, ULA fd00:3:<net>::<host>, the
IPv4 plan's numbers in the same places), added without duplicate address detection so it
is usable at once; the firewalls forward IPv6 too. `PLAN` and `PLAN6` are the address
plans above as data (`_sessionlab_nodes.Plan`; `lab.topology.plan("s3")`, `plan("s3", 6)`).
Stock Mininet loads this file too, with plain routers (the shared node classes' file first):

    mn --custom topologies/_sessionlab_nodes.py,topologies/s3_ftp.py --topo s3 \
       --switch ovs,datapath=user,failMode=standalone --controller none
"""

from _sessionlab_nodes import DualStack, DualStackRouter, Plan, plan6
from mininet.topo import Topo

PLAN = Plan(
    hosts={
        "inside": {"client": "10.0.1.10"},
        "transit": {"other": "10.0.2.66"},
        "servers": {"server": "10.0.3.10"},
    },
    roles={"fwc": "firewall", "fws": "firewall"},
    networks={"inside": "10.0.1.0/24", "transit": "10.0.2.0/24", "servers": "10.0.3.0/24"},
    # fwc-out is also the address fwc source-NATs the client to
    addresses={"fwc-in": "10.0.1.1", "fwc-out": "10.0.2.1", "fws-out": "10.0.2.2", "fws-in": "10.0.3.1"},
)
PLAN6 = plan6(PLAN, "fd00:3")  # the same plan in IPv6: fd00:3:<the IPv4 third octet>::<its fourth>


class FtpTopo(Topo):
    """client - fwc - transit - fws - server, and a third host on the transit network;
    `server_bw` (Mbit/s) rate-limits the server's link (TCLink's HTB)."""

    def build(self, server_bw=None):
        ip = {name: f"{address}/24" for name, address in PLAN.addresses.items()}
        ip6 = {name: f"{address}/64" for name, address in PLAN6.addresses.items()}
        nets, nets6 = PLAN.networks, PLAN6.networks
        fwc = self.addHost(
            "fwc",
            cls=DualStackRouter,
            ip=ip["fwc-in"],
            role=PLAN.roles["fwc"],
            inside="fwc-in",
            outside="fwc-out",
            routes=(f"{nets['servers']} via {PLAN.addresses['fws-out']}",),
            addresses6={intf: ip6[intf] for intf in ("fwc-in", "fwc-out")},
            routes6=(f"{nets6['servers']} via {PLAN6.addresses['fws-out']}",),
        )
        fws = self.addHost(
            "fws",
            cls=DualStackRouter,
            ip=ip["fws-out"],  # its first interface (Mininet sets `ip` on it) is fws-out
            role=PLAN.roles["fws"],
            inside="fws-in",
            outside="fws-out",
            routes=(f"{nets['inside']} via {PLAN.addresses['fwc-out']}",),
            addresses6={intf: ip6[intf] for intf in ("fws-out", "fws-in")},
            routes6=(f"{nets6['inside']} via {PLAN6.addresses['fwc-out']}",),
        )
        hosts = {}
        for name, gateway in (("client", "fwc-in"), ("server", "fws-in"), ("other", "fws-out")):
            hosts[name] = self.addHost(
                name,
                cls=DualStack,
                ip=f"{PLAN.address(name)}/24",
                defaultRoute=f"via {PLAN.addresses[gateway]}",
                ip6=f"{PLAN6.address(name)}/64",
                gw6=PLAN6.addresses[gateway],
            )
        s1, s2, s3 = self.addSwitch("s1"), self.addSwitch("s2"), self.addSwitch("s3")
        self.addLink(hosts["client"], s1)
        self.addLink(fwc, s1, intfName1="fwc-in", params1={"ip": ip["fwc-in"]})
        self.addLink(fwc, s2, intfName1="fwc-out", params1={"ip": ip["fwc-out"]})
        self.addLink(fws, s2, intfName1="fws-out", params1={"ip": ip["fws-out"]})
        self.addLink(fws, s3, intfName1="fws-in", params1={"ip": ip["fws-in"]})
        self.addLink(hosts["server"], s3, **({} if server_bw is None else {"bw": server_bw}))
        self.addLink(hosts["other"], s2)


topos = {"s3": FtpTopo}
