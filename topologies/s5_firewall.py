"""S5: what a stateful firewall is, and its session table as a resource; and (issue 25)
ICMP and the path MTU, beyond the firewall on a narrower link.

   inside 10.0.1.0/24                               outside 10.0.2.0/24
      srv 10.0.1.10 --+                        +-- ext      10.0.2.10  (a server outside)
                      +- s1 -[fw-in fw fw-out]- s2 -+-- legit    10.0.2.20  (clients of srv)
      c1  10.0.1.11 --+    10.0.1.1   10.0.2.1      +-- attacker 10.0.2.66  (a bounded SYN flood)
                                                    +-- scanner  10.0.2.77  (crafted packets)
                                                    +-- rt 10.0.2.254 (a router to a far site)
                                                          | rt-wan 10.0.4.1
                                          wan 10.0.4.0/24 | MTU 1280 (a tunnel, PPPoE)
                                                          | cpe-wan 10.0.4.2
                                                         cpe 10.0.3.1 -- far 10.0.3.10
                                                         (far site 10.0.3.0/24, MTU 1500)

fw is a Linux router the harness turns into the stateful firewall (node role "firewall"),
or into the same intent written as a stateless filter. srv is the published inside
service; ext answers c1's outbound sessions. far is a client at a site whose only way in
is the 1280-byte link between rt and cpe: both ends of a session to it (srv and far) sit
on 1500-byte Ethernet, so each offers an MSS of 1460 and only rt learns that a full-size
segment does not fit (it answers with ICMP "fragmentation needed" / ICMPv6 "packet too
big", which must cross fw to reach srv). fw's routes to the far site (via rt) carry no
MTU of their own.

Dual-stack: every node also has an IPv6 address (`PLAN6`, ULA fd00:5:<net>::<host>, the
IPv4 plan's numbers in the same places), added without duplicate address detection so it
is usable at once; the routers forward IPv6 too. `PLAN` and `PLAN6` are the address plans
above as data (`_sessionlab_nodes.Plan`; `lab.topology.plan("s5")`, `plan("s5", 6)`).
Stock Mininet loads it with a plain router (the shared node classes' file first):

    mn --custom topologies/_sessionlab_nodes.py,topologies/s5_firewall.py --topo s5 \\
       --switch ovs,datapath=user,failMode=standalone --controller none
"""

from _sessionlab_nodes import DualStack, DualStackRouter, Plan, plan6
from mininet.topo import Topo

PLAN = Plan(
    hosts={
        "inside": {"srv": "10.0.1.10", "c1": "10.0.1.11"},
        "outside": {
            "ext": "10.0.2.10",
            "legit": "10.0.2.20",
            "attacker": "10.0.2.66",
            "scanner": "10.0.2.77",
        },
        "far": {"far": "10.0.3.10"},
    },
    roles={"fw": "firewall"},
    networks={"inside": "10.0.1.0/24", "outside": "10.0.2.0/24", "far": "10.0.3.0/24", "wan": "10.0.4.0/24"},
    addresses={
        "fw-in": "10.0.1.1",
        "fw-out": "10.0.2.1",
        "rt-out": "10.0.2.254",
        "rt-wan": "10.0.4.1",
        "cpe-wan": "10.0.4.2",
        "cpe-lan": "10.0.3.1",
    },
)
INSIDE, OUTSIDE = PLAN.hosts["inside"], PLAN.hosts["outside"]
PLAN6 = plan6(PLAN, "fd00:5")  # the same plan in IPv6: fd00:5:<the IPv4 third octet>::<its fourth>
WAN_MTU = 1280  # the rt-cpe link's (IPv6's minimum link MTU, so one figure serves both families)


def _v6(name):
    return f"{PLAN6.address(name)}/64"


class FirewallTopo(Topo):
    """Inside hosts - s1 - fw - s2 - outside hosts, and rt - (MTU 1280) - cpe - far on s2."""

    def build(self):
        inside, outside = PLAN.addresses["fw-in"], PLAN.addresses["fw-out"]
        a, a6 = PLAN.address, PLAN6.address
        far_nets = [(PLAN.networks[n], PLAN6.networks[n]) for n in ("far", "wan")]
        s1, s2 = self.addSwitch("s1"), self.addSwitch("s2")
        fw = self.addHost(
            "fw",
            cls=DualStackRouter,
            ip=f"{inside}/24",
            role=PLAN.roles["fw"],
            inside="fw-in",
            outside="fw-out",
            addresses6={"fw-in": _v6("fw-in"), "fw-out": _v6("fw-out")},
            routes=[f"{net} via {a('rt-out')}" for net, _ in far_nets],
            routes6=[f"{net6} via {a6('rt-out')}" for _, net6 in far_nets],
        )
        self.addLink(fw, s1, intfName1="fw-in", params1={"ip": f"{inside}/24"})
        self.addLink(fw, s2, intfName1="fw-out", params1={"ip": f"{outside}/24"})
        for hosts, gateway in ((INSIDE, "fw-in"), (OUTSIDE, "fw-out")):
            for name, address in hosts.items():
                host = self.addHost(
                    name,
                    cls=DualStack,
                    ip=f"{address}/24",
                    defaultRoute=f"via {a(gateway)}",
                    ip6=_v6(name),
                    gw6=a6(gateway),
                )
                self.addLink(host, s1 if hosts is INSIDE else s2)
        # The far site: rt on the outside network, the narrow link to cpe, far behind it.
        rt = self.addHost(
            "rt",
            cls=DualStackRouter,
            ip=f"{a('rt-out')}/24",
            addresses6={"rt-out": _v6("rt-out"), "rt-wan": _v6("rt-wan")},
            mtus={"rt-wan": WAN_MTU},
            routes=[f"default via {outside}", f"{PLAN.networks['far']} via {a('cpe-wan')}"],
            routes6=[f"default via {a6('fw-out')}", f"{PLAN6.networks['far']} via {a6('cpe-wan')}"],
        )
        cpe = self.addHost(
            "cpe",
            cls=DualStackRouter,
            ip=f"{a('cpe-wan')}/24",  # its first link's (Mininet's default interface)
            addresses6={"cpe-wan": _v6("cpe-wan"), "cpe-lan": _v6("cpe-lan")},
            mtus={"cpe-wan": WAN_MTU},
            routes=[f"default via {a('rt-wan')}"],
            routes6=[f"default via {a6('rt-wan')}"],
        )
        far = self.addHost(
            "far", cls=DualStack, ip=f"{a('far')}/24", defaultRoute=f"via {a('cpe-lan')}",
            ip6=_v6("far"), gw6=a6("cpe-lan"),
        )  # fmt: skip
        self.addLink(rt, s2, intfName1="rt-out", params1={"ip": f"{a('rt-out')}/24"})
        self.addLink(
            rt, cpe, intfName1="rt-wan", intfName2="cpe-wan",
            params1={"ip": f"{a('rt-wan')}/24"}, params2={"ip": f"{a('cpe-wan')}/24"},
        )  # fmt: skip
        self.addLink(cpe, far, intfName1="cpe-lan", params1={"ip": f"{a('cpe-lan')}/24"})


topos = {"s5": FirewallTopo}
