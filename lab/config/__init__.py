"""Typed lab configuration: firewall policies, balancers, the FTP server, link impairments.

Frozen dataclasses, loaded from TOML or dicts with unknown keys rejected. Every one lists
its problems with `problems()`, each naming its place (netlab's way: all at once, not the
first); a device validates its configuration once, where it is configured. No Mininet
import: this is pure data. One module per domain; every name is re-exported here, so
`from lab.config import X` is the way to reach them.
"""

from __future__ import annotations

from lab.config.balancing import (
    ADC_ALGORITHMS,
    BALANCE_ALGORITHMS,
    BALANCE_MODES,
    Adc,
    HealthCheck,
    L4Balancer,
    Pool,
    RealServer,
    Route,
    VrrpInstance,
    adc_from_dict,
    adc_problems,
    balancer_from_dict,
    balancer_problems,
    load_adc,
    load_balancer,
    vrrp_group_problems,
    vrrp_problems,
)
from lab.config.checks import PROTOCOLS, refuse
from lab.config.checks import address as _check_address
from lab.config.checks import host as _check_host
from lab.config.checks import items as _items
from lab.config.checks import port as _check_port
from lab.config.checks import proto as _check_proto
from lab.config.checks import take as _take
from lab.config.checks import timeout as _check_timeout
from lab.config.firewall import (
    HANDOFF_MODES,
    HELPER_PROTOCOLS,
    HELPER_TYPES,
    LINUX_ESTABLISHED_TIMEOUT,
    FirewallPolicy,
    Helper,
    Service,
    TimeoutRule,
    load_policy,
    policy_from_dict,
    policy_problems,
    validate_policy,
)
from lab.config.ftp import FtpServerConfig, ftp_server_problems
from lab.config.impairment import IMPAIRMENT_OPTIONS, Impairment, impairment_from

__all__ = [
    "adc_from_dict",
    "load_adc",
    "load_balancer",
    "ADC_ALGORITHMS",
    "BALANCE_ALGORITHMS",
    "BALANCE_MODES",
    "HANDOFF_MODES",
    "HELPER_PROTOCOLS",
    "HELPER_TYPES",
    "IMPAIRMENT_OPTIONS",
    "LINUX_ESTABLISHED_TIMEOUT",
    "PROTOCOLS",
    "Adc",
    "FirewallPolicy",
    "FtpServerConfig",
    "HealthCheck",
    "Helper",
    "Impairment",
    "L4Balancer",
    "Pool",
    "RealServer",
    "Route",
    "Service",
    "TimeoutRule",
    "VrrpInstance",
    "_check_address",
    "_check_host",
    "_check_port",
    "_check_proto",
    "_check_timeout",
    "_items",
    "_take",
    "adc_problems",
    "balancer_from_dict",
    "balancer_problems",
    "ftp_server_problems",
    "impairment_from",
    "load_policy",
    "policy_from_dict",
    "policy_problems",
    "refuse",
    "validate_policy",
    "vrrp_group_problems",
    "vrrp_problems",
]
