#!/usr/bin/env bash
# s6_device.sh: "a device someone else configured", for S6's suite. A Linux router in a
# network namespace with its own nftables ruleset and sysctls, and an sshd for management.
# The lab did not build it: it plugs its ports (`--netns NAME --port inside=in0
# --port outside=out0`) and reads its table over SSH (`--ssh root@127.0.0.1:PORT
# --driver linux`). Nothing here is the lab's code: the script is the device's owner.
#
# Usage (as root):
#   s6_device.sh up NAME PUBKEY PORT  create the device; its known_hosts line on stdout
#   s6_device.sh config NAME          address its ports now (its port agent does it itself)
#   s6_device.sh down NAME            end what `up` started and delete the namespace
#
# Order:
#   1. s6_device.sh up s6dut ~/.ssh/id_ed25519.pub 2222 >> known_hosts
#   2. the lab plugs in0 and out0 into s6dut (veths it creates). The device's port agent
#      (started by `up`, as a router's network service would be) sees each port appear and
#      gives it its address within a second; `config` does the same at once, and fails if a
#      port is not there yet.
#   3. the lab probes through the device and reads its table as root@127.0.0.1:2222.
#   4. the lab unplugs (its veths go with their ends in s6dut); then s6_device.sh down s6dut.
#
# The device:
#   in0  10.0.1.1/24 (inside)    out0 10.0.2.1/24 (outside; sessions leave masqueraded)
#   forward: inside -> outside allowed, replies (established, related) back, anything
#   else dropped silently (no RST, no ICMP); invalid packets dropped. Input: the inside
#   may ping the device; loopback is management. IPv6 off.
#   conntrack: TCP established timeout 5 s, UDP 3 s, UDP stream 6 s; loose pick-up off
#   (nf_conntrack_tcp_loose=0); no helper (no FTP ALG). TX checksum offload off on its
#   ports: the lab's switches are userspace Open vSwitch, and a veth does not fill in the
#   checksums of the device's own packets.
# What a profile of it should find (Linux's own behaviour under these settings):
#   tcp.idle_timeout_s ~5, tcp.expiry silent, tcp.midstream_ack dropped from inside and
#   from outside; udp.lifetime_outbound_s ~3, udp.lifetime_bidirectional_s ~6 (a flow with
#   replies becomes a stream once older than 2 s); nat: masquerade, source ports kept
#   where free (mapping endpoint-independent, filtering address-and-port-dependent, no
#   hairpinning); ftp.passive works, ftp.active fails, ftp.alg false.
#
# Management: sshd listens on 127.0.0.1:22 inside the namespace, with its own host key and
# PUBKEY as the one authorized key (root, key only, `restrict`). The root namespace gets
# only a socat on 127.0.0.1:PORT that relays each connection into the namespace: no
# address or route in the lab's ranges outside it. Loopback traffic is not tracked, so
# the table the lab reads holds only what crosses the device.
#
# State: /run/s6-device/NAME (host key, sshd configuration, ruleset, logs, and the PIDs
# with their start times, so `down` signals only processes `up` started). `up` also makes
# /run/sshd (sshd's privilege-separation directory) if it is missing, as openssh-server
# does at boot, and leaves it.
set -euo pipefail

PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
RUN_DIR=/run/s6-device
SELF=$(readlink -f "$0")
SSHD=${SSHD:-/usr/sbin/sshd}
INSIDE=(in0 10.0.1.1/24)
OUTSIDE=(out0 10.0.2.1/24)

say() { echo "s6_device.sh: $*" >&2; }
die() {
	say "$*"
	exit 2
}

usage() {
	cat >&2 <<'EOF'
usage: s6_device.sh up NAME PUBKEY PORT   create the device; its known_hosts line on stdout
       s6_device.sh config NAME           address its ports now (its port agent does it itself)
       s6_device.sh down NAME             end what `up` started and delete the namespace
EOF
	exit 2
}

check_name() {
	[[ $1 =~ ^[a-z][a-z0-9-]{0,14}$ ]] || die "name $1: lower-case letters, digits and -, at most 15"
}

netns_exists() {
	ip netns list | awk '{print $1}' | grep -qxF -- "$1"
}

# A process's start time (field 22 of /proc/PID/stat, counted after the command name,
# which may hold spaces): with the PID, what names one process for good. Empty if gone.
start_time() {
	local stat fields
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
	read -ra fields <<<"${stat##*) }"
	echo "${fields[19]}"
}

# Start "$@" in a session of its own (its PID is its process group, so `down` ends its
# children too: socat's per-connection relays, the agent's `ip monitor`) and write its PID
# and start time down before anything else happens.
start_owned() {
	local what=$1 log=$2
	shift 2
	setsid "$@" >>"$log" 2>&1 </dev/null &
	local pid=$! start
	start=$(start_time "$pid")
	echo "$pid ${start:-gone} $what" >>"$STATE/pids" # "gone": it ended at once (its log says why)
	say "started $what (pid $pid)"
}

# Wait up to 5 s for `check` to succeed; fail naming `what` and its log.
wait_for() {
	local what=$1 log=$2
	shift 2
	for _ in $(seq 50); do
		if "$@"; then return 0; fi
		sleep 0.1
	done
	die "$what not ready after 5 s: $(tail -n 3 "$log" 2>/dev/null | tr '\n' ' ')"
}

listening_in_netns() { [[ -n $(ip netns exec "$NAME" ss -Hltn 'sport = :22') ]]; }
listening_here() { [[ -n $(ss -Hltn "sport = :$PORT") ]]; }

ruleset() {
	cat <<'EOF'
table inet s6device {
	chain raw_prerouting {
		type filter hook prerouting priority raw; policy accept;
		iif "lo" notrack comment "management: not in the table the lab reads"
	}
	chain raw_output {
		type filter hook output priority raw; policy accept;
		oif "lo" notrack
	}
	chain input {
		type filter hook input priority filter; policy drop;
		iif "lo" accept
		ct state established,related accept
		iifname "in0" icmp type echo-request accept
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state invalid drop
		ct state established,related accept
		iifname "in0" oifname "out0" ct state new accept
	}
}
table ip s6nat {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "out0" masquerade
	}
}
EOF
}

sshd_config() {
	cat <<EOF
ListenAddress 127.0.0.1:22
HostKey $STATE/ssh_host_ed25519_key
AuthorizedKeysFile $STATE/authorized_keys
PidFile $STATE/sshd.pid
AllowUsers root
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
# The folder is root's and 0700; /run/s6-device sits under /run, which sshd's strict
# ownership walk would otherwise have to accept.
StrictModes no
AllowTcpForwarding no
X11Forwarding no
PrintMotd no
EOF
}

# Give one port its address (and TX checksum offload off, link up) if it is plugged and
# has not got it yet; nothing if it is not there.
configure_port() {
	local name=$1 iface=$2 addr=$3
	ip -n "$name" link show dev "$iface" >/dev/null 2>&1 || return 0
	if ! ip -n "$name" -4 -o addr show dev "$iface" | grep -qF " $addr "; then
		ip netns exec "$name" ethtool -K "$iface" tx off >/dev/null
		ip -n "$name" addr add "$addr" dev "$iface"
		ip -n "$name" link set "$iface" up
		say "$name: $iface $addr"
	fi
}

configure_ports() {
	configure_port "$1" "${INSIDE[@]}"
	configure_port "$1" "${OUTSIDE[@]}"
}

cmd_config() {
	local name=$1 iface
	netns_exists "$name" || die "$name: no such network namespace (run up first)"
	for iface in "${INSIDE[0]}" "${OUTSIDE[0]}"; do
		ip -n "$name" link show dev "$iface" >/dev/null 2>&1 ||
			die "$name: no $iface yet (the lab plugs it: --netns $name --port ...=$iface)"
	done
	configure_ports "$name"
}

# The port agent (started by `up`): configure the ports on every link event in the
# namespace, and once a second besides (an event may come before `ip monitor` listens).
cmd_agent() {
	local name=$1 status
	ip -n "$name" monitor link | while :; do
		status=0
		read -r -t 1 _ || status=$?
		if ((status > 0 && status <= 128)); then break; fi # `ip monitor` ended
		configure_ports "$name" || say "$name: configuring its ports failed; trying again"
	done
}

cmd_up() {
	NAME=$1
	local key=$2
	PORT=$3
	check_name "$NAME"
	if ! [[ $PORT =~ ^[0-9]{1,5}$ ]] || ((PORT < 1 || PORT > 65535)); then
		die "port $PORT: expected 1-65535"
	fi
	[[ $(id -u) == 0 ]] || die "run as root (it creates a network namespace)"
	for tool in ip nft ss socat setsid ethtool ssh-keygen "$SSHD"; do
		command -v "$tool" >/dev/null || die "$tool is not installed"
	done
	[[ -f $key ]] || die "$key: no such file (the public key to authorize)"
	ssh-keygen -l -f "$key" >/dev/null 2>&1 || die "$key: not a public key"
	if grep -vE '^[[:space:]]*(#|$)' "$key" | grep -qvE '^(ssh-|ecdsa-|sk-)'; then
		die "$key: not a public key file (a private key?)"
	fi
	netns_exists "$NAME" && die "$NAME: a network namespace of that name exists already"
	STATE=$RUN_DIR/$NAME
	[[ -e $STATE ]] && die "$NAME: $STATE exists (already up? run down first)"
	listening_here && die "127.0.0.1:$PORT: already in use in the root namespace"

	mkdir -p "$RUN_DIR"
	mkdir -m 700 "$STATE"
	: >"$STATE/pids"
	# From here on, a failure undoes what was done.
	trap 'status=$?; if ((status != 0)); then say "up failed; undoing"; cmd_down "$NAME" >&2 || true; fi' EXIT

	ip netns add "$NAME"
	touch "$STATE/netns" # ours: `down` deletes it
	ip -n "$NAME" link set lo up
	if [[ -d /proc/sys/net/ipv6 ]]; then # the ports it will be given inherit "default"
		ip netns exec "$NAME" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
	fi

	ruleset >"$STATE/ruleset.nft"
	ip netns exec "$NAME" nft -c -f "$STATE/ruleset.nft"
	ip netns exec "$NAME" nft -f "$STATE/ruleset.nft"
	# After the ruleset: its ct expressions make sure conntrack's sysctls exist here.
	ip netns exec "$NAME" sysctl -qw \
		net.ipv4.ip_forward=1 \
		net.netfilter.nf_conntrack_tcp_timeout_established=5 \
		net.netfilter.nf_conntrack_udp_timeout=3 \
		net.netfilter.nf_conntrack_udp_timeout_stream=6 \
		net.netfilter.nf_conntrack_tcp_loose=0

	start_owned "port agent" "$STATE/agent.log" "$SELF" agent "$NAME"

	ssh-keygen -q -t ed25519 -N '' -C "s6-device-$NAME" -f "$STATE/ssh_host_ed25519_key"
	grep -vE '^[[:space:]]*(#|$)' "$key" | sed 's/^/restrict /' >"$STATE/authorized_keys"
	sshd_config >"$STATE/sshd_config"
	[[ -d /run/sshd ]] || mkdir -m 755 /run/sshd
	ip netns exec "$NAME" "$SSHD" -t -f "$STATE/sshd_config"
	start_owned sshd "$STATE/sshd.log" ip netns exec "$NAME" "$SSHD" -D -e -f "$STATE/sshd_config"
	wait_for sshd "$STATE/sshd.log" listening_in_netns

	printf '#!/bin/sh\nexec ip netns exec %s socat STDIO TCP:127.0.0.1:22\n' "$NAME" >"$STATE/relay"
	chmod 700 "$STATE/relay"
	start_owned "management relay" "$STATE/relay.log" \
		socat "TCP-LISTEN:$PORT,bind=127.0.0.1,reuseaddr,fork" "EXEC:$STATE/relay"
	wait_for "management relay" "$STATE/relay.log" listening_here

	trap - EXIT
	say "$NAME up: management root@127.0.0.1:$PORT; state in $STATE"
	printf '[127.0.0.1]:%s %s\n' "$PORT" "$(cut -d' ' -f1,2 "$STATE/ssh_host_ed25519_key.pub")"
}

# End one process `up` started (and its session's group), if it is still that process.
stop_owned() {
	local pid=$1 start=$2 what=$3
	if [[ -z $start || $(start_time "$pid") != "$start" ]]; then
		say "$what (pid $pid): already gone"
		return 0
	fi
	kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 30); do
		[[ $(start_time "$pid") == "$start" ]] || break
		sleep 0.1
	done
	if [[ $(start_time "$pid") == "$start" ]]; then
		kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
	fi
	say "ended $what (pid $pid)"
}

cmd_down() {
	local name=$1 pid start what
	check_name "$name"
	local state=$RUN_DIR/$name
	[[ -d $state ]] || die "$name: not up by this script (no $state): nothing of ours to end"
	if [[ -f $state/pids ]]; then
		# Last started, first ended: the relay, sshd, then the port agent.
		while read -r pid start what; do
			stop_owned "$pid" "$start" "$what"
		done < <(tac "$state/pids")
	fi
	if [[ -f $state/netns ]] && netns_exists "$name"; then
		ip netns del "$name"
		say "deleted network namespace $name"
	fi
	rm -rf -- "$state"
}

case ${1:-}:$# in
up:4) cmd_up "$2" "$3" "$4" ;;
config:2) cmd_config "$2" ;;
down:2) cmd_down "$2" ;;
agent:2) cmd_agent "$2" ;; # started by `up`
*) usage ;;
esac
