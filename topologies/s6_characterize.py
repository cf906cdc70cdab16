"""S6: know your session device, a behaviour profile of any firewall, NAT or balancer.

   inside 10.0.1.0/24                                 outside 10.0.2.0/24
     ci 10.0.1.10 --- si ---[in   DUT   out]--- so ---+-- srv  10.0.2.10  (TCP, UDP, FTP servers)
                           10.0.1.1   10.0.2.1        +-- stun 10.0.2.20, 10.0.2.21 (RFC 5780)

The device under test (DUT) sits between an inside and an outside network of the lab's
own hosts, which probe it with real traffic. With `device="firewall"` it is the lab's own
firewall (node `dut`, role "firewall": the harness loads the policy being profiled); with
`device="external"` there is no node: the device's own ports are attached to `si` and
`so` by `sessionlab characterize` (interfaces of the root namespace, or veths into a
namespace the user names), and the lab never configures it. `inside_gw`/`outside_gw`
are the device's addresses, the hosts' gateways. `PLAN` is the address plan as data
(`_sessionlab_nodes.Plan`; `lab.topology.plan("s6")`). Stock Mininet loads it with a
plain router as the DUT:

    mn --custom topologies/_sessionlab_nodes.py,topologies/s6_characterize.py --topo s6 \\
       --switch ovs,datapath=user,failMode=standalone --controller none
"""

from _sessionlab_nodes import MultiHomed, Plan, Router
from mininet.topo import Topo

PLAN = Plan(
    hosts={"inside": {"ci": "10.0.1.10"}, "outside": {"srv": "10.0.2.10", "stun": "10.0.2.20"}},
    roles={"dut": "firewall"},
    networks={"inside": "10.0.1.0/24", "outside": "10.0.2.0/24"},
    addresses={"dut-in": "10.0.1.1", "dut-out": "10.0.2.1", "stun-alt": "10.0.2.21"},
    ports={"tcp": 9000, "udp": 9001, "ftp": 21, "stun": 3478},
)
SWITCHES = {"inside": "si", "outside": "so"}  # where a device's ports are attached


class CharacterizeTopo(Topo):
    """ci - si - DUT - so - srv, stun; the DUT the lab's firewall or a device attached later."""

    def build(self, device="firewall", inside_gw=None, outside_gw=None):
        inside = inside_gw or PLAN.addresses["dut-in"]
        outside = outside_gw or PLAN.addresses["dut-out"]
        si, so = self.addSwitch(SWITCHES["inside"]), self.addSwitch(SWITCHES["outside"])
        if device == "firewall":
            ports = {"inside": "dut-in", "outside": "dut-out"}
            dut = self.addHost("dut", cls=Router, ip=f"{inside}/24", role=PLAN.roles["dut"], **ports)
            self.addLink(dut, si, intfName1="dut-in", params1={"ip": f"{inside}/24"})
            self.addLink(dut, so, intfName1="dut-out", params1={"ip": f"{outside}/24"})
        elif device != "external":
            raise ValueError(f"device={device!r}: 'firewall' (the lab's own) or 'external'")
        ci = self.addHost("ci", ip=f"{PLAN.address('ci')}/24", defaultRoute=f"via {inside}")
        self.addLink(ci, si)
        srv = self.addHost("srv", ip=f"{PLAN.address('srv')}/24", defaultRoute=f"via {outside}")
        self.addLink(srv, so)
        stun = self.addHost(
            "stun",
            cls=MultiHomed,
            ip=f"{PLAN.address('stun')}/24",
            extra=f"{PLAN.addresses['stun-alt']}/24",
            defaultRoute=f"via {outside}",
        )
        self.addLink(stun, so)


topos = {"s6": CharacterizeTopo}
