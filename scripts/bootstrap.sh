#!/usr/bin/env bash
# One-time setup of a Debian 12 machine, as root: system packages, the virtual environment
# (.venv) and a running Open vSwitch. Idempotent: a second run checks and does nothing slow.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(openvswitch-switch mininet iperf3 tcpdump conntrack nftables ethtool iputils-ping curl
          iproute2 procps python3-venv conntrackd vsftpd lftp
          haproxy keepalived nginx-light wrk hping3 nmap openssh-server coturn socat
          iptables libnetfilter-queue-dev gcc python3-dev)  # the last four: S2 sync-defer's NFQUEUE (its target; its library, built by pip)

if [ "$(id -u)" != 0 ]; then
    echo "bootstrap: run as root (it installs packages and starts Open vSwitch)" >&2
    exit 2
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "bootstrap: installing ${missing[*]}"
    # The lab runs vsftpd, haproxy, nginx, keepalived and conntrackd itself, in its own
    # namespaces: their packages must not start machine-wide services. Where no policy
    # says so already, one does for the length of the install.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The venv is rebuilt only when pyproject.toml changes.
stamp=.venv/.sessionlab-stamp
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "bootstrap: creating .venv"
    python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]' >.venv/pip.log 2>&1 \
        || { cat .venv/pip.log >&2; exit 1; }
    echo "$want" > "$stamp"
fi

if ! ovs-vsctl --timeout=3 show >/dev/null 2>&1; then
    echo "bootstrap: starting Open vSwitch"
    /usr/share/openvswitch/scripts/ovs-ctl start --system-id=random >/dev/null 2>&1 || true
    ovs-vsctl --timeout=10 show >/dev/null || { echo "bootstrap: Open vSwitch did not start" >&2; exit 1; }
fi
