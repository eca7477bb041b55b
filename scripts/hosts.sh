#!/usr/bin/env bash
# hosts.sh - client "hosts" that are really other hosts, on one machine: a
# private sshd in a network namespace of its own serves an export directory
# over TCP to two clients, A and B, each in its own network namespace (a
# veth pair to the server's namespace, addresses only inside these
# namespaces), each with its own sshfs mount made from inside its namespace.
# A host's link can then be cut or degraded, its sshfs or its server
# session frozen or killed, one host at a time. The server's namespace
# routes between the hosts, so A and B reach each other's address too.
#
# Usage (as root):
#   eval "$(scripts/hosts.sh up [STATEDIR])"      # prints export lines
#   scripts/hosts.sh status [STATEDIR]
#   scripts/hosts.sh remount a|b [STATEDIR]        # a fresh mount for a host; prints export lines
#   scripts/hosts.sh down [STATEDIR]
#
# STATEDIR defaults to $DLOCK_HOSTS_STATE, else ${TMPDIR:-/tmp}/dlock-hosts.
# The mounts are coherent (dir_cache=no, attr/entry/negative timeouts 0).
#
# A process runs "on host A" as
#   nsenter --net=/run/netns/$DLOCK_HOSTS_A_NETNS \
#     unshare --pid --fork --kill-child --mount-proc --uts sh -c 'hostname A; exec ...'
# so that it has its own network, pid and UTS namespaces: dlock's pid
# checks do not apply across hosts, and only the TIMEOUT path is left.
#
# Only messages go to stderr; `up` and `remount` write nothing but
# `export` lines to stdout (DLOCK_HOSTS_*, and DLOCK_SHAREDFS_M1/M2 for the
# two mounts, so that the two-mount tests run here too). Everything is
# cleaned up by recorded PIDs, never by process name.
set -euo pipefail

# shellcheck source=rig-lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/rig-lib.sh"

usage() {
	cat >&2 <<EOF
usage: $prog up|down|status [STATEDIR]
       $prog remount a|b [STATEDIR]
  STATEDIR  default: \${DLOCK_HOSTS_STATE:-\${TMPDIR:-/tmp}/dlock-hosts}
EOF
	exit 2
}

cmd=${1:-}
host=
if [ "$cmd" = remount ]; then
	host=${2:-}
	case $host in a | b) ;; *) usage ;; esac
	shift
fi
[ $# -le 2 ] || usage
state=${2:-${DLOCK_HOSTS_STATE:-${TMPDIR:-/tmp}/dlock-hosts}}
case $state in /*) ;; *) state=$PWD/$state ;; esac
state=${state%/}

export_dir=$state/export
port=2222
# Network namespaces are system-wide: their names carry a tag of STATEDIR,
# so that two rigs (and other users of ip netns) never collide.
tag=$(printf '%s' "$state" | cksum | awk '{ printf "%06x", $1 % 16777216 }')
ns_srv=dlkh-$tag-srv
# Per host: its namespace, its device there, its address, the server's.
ns_of() { echo "dlkh-$tag-$1"; }
dev_of() { echo "up0"; }               # the host's end of its link
srvdev_of() { echo "to-$1"; }          # the server's end
net_of() { case $1 in a) echo 10.251.1 ;; b) echo 10.251.2 ;; esac; }
mount_of() { echo "$state/m$1"; }

# --- helpers ---------------------------------------------------------------

# is_mounted, pid_alive, started, stop_pid, require_fuse, apt_install,
# write_sshd_config

# halt FILE EXE: SIGCONT (a test may have stopped it), then stop_pid.
halt() {
	if pid_alive "$1" "$2"; then kill -CONT "$(cat "$1")" 2>/dev/null || true; fi
	stop_pid "$1" "$2"
}

in_ns() { local ns=$1; shift; nsenter --net="/run/netns/$ns" "$@"; }

install_missing() {
	local want=()
	[ -x /usr/sbin/sshd ] || want+=(openssh-server)
	command -v sshfs >/dev/null 2>&1 || want+=(sshfs)
	command -v fusermount3 >/dev/null 2>&1 || want+=(fuse3)
	command -v ip >/dev/null 2>&1 && command -v tc >/dev/null 2>&1 || want+=(iproute2)
	command -v nsenter >/dev/null 2>&1 && command -v unshare >/dev/null 2>&1 || want+=(util-linux)
	# apt_install's policy-rc.d keeps the distribution's sshd off port 22
	[ ${#want[@]} -eq 0 ] || apt_install "$state/apt.log" "${want[@]}"
}

# make_net: the server's namespace and one per host, each host linked to
# the server by a veth pair with a /30 of its own.
make_net() {
	local h ns net
	ip netns add "$ns_srv"
	ip -n "$ns_srv" link set lo up
	for h in a b; do
		ns=$(ns_of $h) net=$(net_of $h)
		ip netns add "$ns"
		ip -n "$ns" link set lo up
		ip -n "$ns_srv" link add "$(srvdev_of $h)" type veth peer name "$(dev_of $h)" netns "$ns"
		ip -n "$ns_srv" addr add "$net.1/30" dev "$(srvdev_of $h)"
		ip -n "$ns" addr add "$net.2/30" dev "$(dev_of $h)"
		ip -n "$ns_srv" link set "$(srvdev_of $h)" up
		ip -n "$ns" link set "$(dev_of $h)" up
		# The other host is reached through the server's namespace, as
		# hosts on one network are (wake-up hints are datagrams between
		# them).
		ip -n "$ns" route replace 10.251.0.0/16 via "$net.1"
	done
	nsenter --net="/run/netns/$ns_srv" sysctl -qw net.ipv4.ip_forward=1
}

drop_net() {
	local ns
	for ns in "$(ns_of a)" "$(ns_of b)" "$ns_srv"; do
		[ -e "/run/netns/$ns" ] && ip netns del "$ns" 2>/dev/null || true
	done
}

start_sshd() {
	local n
	mkdir -p /run/sshd
	write_sshd_config "$state" "$port" "$(net_of a).1" "$(net_of b).1"
	setsid nsenter --net="/run/netns/$ns_srv" /usr/sbin/sshd -D -f "$state/sshd_config" -E "$state/sshd.log" </dev/null >/dev/null 2>&1 &
	echo $! >"$state/sshd.pid"
	started "$state/sshd.pid" sshd || die "sshd exited at once (log: $state/sshd.log)"
	for n in $(seq 50); do
		pid_alive "$state/sshd.pid" sshd || break
		if [ -n "$(in_ns "$ns_srv" ss -Hltn "sport = :$port" 2>/dev/null)" ]; then
			: >"$state/known_hosts"
			for h in a b; do
				printf '[%s.1]:%s %s\n' "$(net_of $h)" "$port" "$(cut -d' ' -f1,2 "$state/host_key.pub")" >>"$state/known_hosts"
			done
			return 0
		fi
		sleep 0.1
	done
	tail -n 5 "$state/sshd.log" >&2 2>/dev/null || true
	die "sshd did not come up in $ns_srv (log: $state/sshd.log)"
}

# session_of HOST: the PID of the server process serving HOST's mount: the
# sshd child named "sshd: root@internal-sftp" whose connection comes from
# HOST's address (empty if not found).
session_of() {
	local peer pids p
	peer=$(net_of "$1").2
	pids=$(in_ns "$ns_srv" ss -Htnp state established "( sport = :$port )" 2>/dev/null |
		awk -v peer="$peer" 'index($4, peer ":") == 1' | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u)
	for p in $pids; do
		case $(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline") in
		*internal-sftp*) echo "$p"; return 0 ;;
		esac
	done
	# The socket may be held only by the privileged monitor: take its
	# internal-sftp child.
	for p in $pids; do
		for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do
			case $(tr '\0' ' ' 2>/dev/null <"/proc/$c/cmdline") in
			*internal-sftp*) echo "$c"; return 0 ;;
			esac
		done
	done
}

mount_host() {
	local h=$1 m n opts
	m=$(mount_of "$h")
	opts="port=$port,IdentityFile=$state/client_key,IdentitiesOnly=yes,BatchMode=yes"
	opts+=",UserKnownHostsFile=$state/known_hosts,StrictHostKeyChecking=yes,ServerAliveInterval=15"
	opts+=",dir_cache=no,attr_timeout=0,entry_timeout=0,negative_timeout=0"
	mkdir -p "$m"
	# nsenter, not ip netns exec: that one would make the mount in a mount
	# namespace of its own, where nobody else sees it.
	setsid nsenter --net="/run/netns/$(ns_of "$h")" sshfs -f "root@$(net_of "$h").1:$export_dir" "$m" -o "$opts" \
		</dev/null >>"$state/sshfs-$h.log" 2>&1 &
	echo $! >"$state/sshfs-$h.pid"
	started "$state/sshfs-$h.pid" sshfs || { cat "$state/sshfs-$h.log" >&2; die "sshfs for host $h exited at once (log: $state/sshfs-$h.log)"; }
	for n in $(seq 100); do
		if mountpoint -q "$m"; then
			for n in $(seq 50); do
				session_of "$h" >"$state/session-$h.pid"
				[ -s "$state/session-$h.pid" ] && return 0
				sleep 0.1
			done
			say "warning: found no server session for host $h's mount"
			return 0
		fi
		pid_alive "$state/sshfs-$h.pid" sshfs || { cat "$state/sshfs-$h.log" >&2; die "sshfs for host $h exited before mounting (log: $state/sshfs-$h.log)"; }
		sleep 0.1
	done
	die "sshfs for host $h did not mount $m within 10 s (log: $state/sshfs-$h.log)"
}

# unmount_host HOST: detach HOST's mount and end its sshfs.
unmount_host() {
	local h=$1 m
	m=$(mount_of "$h")
	if [ -f "$state/sshfs-$h.pid" ]; then kill -CONT "$(cat "$state/sshfs-$h.pid")" 2>/dev/null || true; fi
	if is_mounted "$m"; then
		fusermount3 -u "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null || umount -l "$m" || die "cannot unmount $m"
	fi
	halt "$state/sshfs-$h.pid" sshfs
	rm -f "$state/session-$h.pid"
}

# heal HOST: whatever a test left on HOST's link and server session.
heal() {
	local h=$1 ns
	ns=$(ns_of "$h")
	[ -e "/run/netns/$ns" ] || return 0
	ip -n "$ns" link set "$(dev_of "$h")" up 2>/dev/null || true
	ip -n "$ns_srv" link set "$(srvdev_of "$h")" up 2>/dev/null || true
	ip -n "$ns" route replace 10.251.0.0/16 via "$(net_of "$h").1" 2>/dev/null || true # (lost with the link)
	tc -n "$ns" qdisc del dev "$(dev_of "$h")" root 2>/dev/null || true
	tc -n "$ns_srv" qdisc del dev "$(srvdev_of "$h")" root 2>/dev/null || true
	if [ -s "$state/session-$h.pid" ]; then kill -CONT "$(cat "$state/session-$h.pid")" 2>/dev/null || true; fi
}

print_exports() {
	local h H
	printf 'export DLOCK_HOSTS_STATE=%q\n' "$state"
	printf 'export DLOCK_HOSTS_EXPORT=%q\n' "$export_dir"
	printf 'export DLOCK_HOSTS_SERVER_NETNS=%q\n' "$ns_srv"
	for h in a b; do
		H=$(echo $h | tr a-z A-Z)
		printf 'export DLOCK_HOSTS_%s_MOUNT=%q\n' "$H" "$(mount_of $h)"
		printf 'export DLOCK_HOSTS_%s_NETNS=%q\n' "$H" "$(ns_of $h)"
		printf 'export DLOCK_HOSTS_%s_DEV=%q\n' "$H" "$(dev_of $h)"
		printf 'export DLOCK_HOSTS_%s_SERVER_DEV=%q\n' "$H" "$(srvdev_of $h)"
		printf 'export DLOCK_HOSTS_%s_SSHFS_PID=%q\n' "$H" "$(cat "$state/sshfs-$h.pid")"
		printf 'export DLOCK_HOSTS_%s_SESSION_PID=%q\n' "$H" "$(cat "$state/session-$h.pid" 2>/dev/null)"
	done
	# The same two mounts, for the two-mount tests and the chaos test.
	printf 'export DLOCK_SHAREDFS_M1=%q\n' "$(mount_of a)"
	printf 'export DLOCK_SHAREDFS_M2=%q\n' "$(mount_of b)"
	printf 'export DLOCK_SHAREDFS_EXPORT=%q\n' "$export_dir"
	printf 'export DLOCK_SHAREDFS_CACHE=coherent\n'
	printf 'export DLOCK_SHAREDFS_SSHFS1_PID=%q\n' "$(cat "$state/sshfs-a.pid")"
	printf 'export DLOCK_SHAREDFS_SSHFS2_PID=%q\n' "$(cat "$state/sshfs-b.pid")"
}

all_up() {
	local h
	pid_alive "$state/sshd.pid" sshd || return 1
	for h in a b; do
		pid_alive "$state/sshfs-$h.pid" sshfs && mountpoint -q "$(mount_of $h)" || return 1
	done
}

# --- commands --------------------------------------------------------------

do_down() {
	local h
	[ -d "$state" ] || { say "nothing is up in $state"; drop_net; return 0; }
	for h in a b; do heal "$h"; unmount_host "$h"; done
	halt "$state/sshd.pid" sshd
	drop_net
	for h in a b; do
		! is_mounted "$(mount_of $h)" || die "$(mount_of $h) is still mounted; not removing $state"
	done
	rm -rf --one-file-system "$state"
	say "down: unmounted, stopped sshfs and sshd, deleted the namespaces, removed $state"
}

do_up() {
	[ "$(id -u)" -eq 0 ] || die "must run as root (namespaces, sshd, FUSE mounts, packages)"
	require_fuse
	if [ -d "$state" ] && all_up; then
		say "already up in $state"
		print_exports
		return 0
	fi
	if [ -n "$(ls -A "$state" 2>/dev/null)" ] || [ -e "/run/netns/$ns_srv" ]; then
		say "cleaning up leftovers of $state"
		do_down
	fi
	mkdir -p "$state"
	chmod 700 "$state"
	install_missing
	mkdir -p "$export_dir"
	ssh-keygen -q -t ed25519 -N '' -C dlock-hosts-server -f "$state/host_key" </dev/null >/dev/null
	ssh-keygen -q -t ed25519 -N '' -C dlock-hosts-client -f "$state/client_key" </dev/null >/dev/null
	make_net
	start_sshd
	mount_host a
	mount_host b
	say "up: $export_dir served in $ns_srv; host a: $(mount_of a) in $(ns_of a) ($(net_of a).2), host b: $(mount_of b) in $(ns_of b) ($(net_of b).2)"
	print_exports
}

do_remount() {
	[ -d "$state" ] && pid_alive "$state/sshd.pid" sshd || die "not up in $state (run '$prog up' first)"
	heal "$host"
	unmount_host "$host"
	mount_host "$host"
	say "remounted host $host: $(mount_of "$host") (sshfs pid $(cat "$state/sshfs-$host.pid"), server session $(cat "$state/session-$host.pid" 2>/dev/null))"
	print_exports
}

do_status() {
	local rc=0 h
	[ -d "$state" ] || { echo "down (no $state)"; return 3; }
	echo "state:  $state"
	if pid_alive "$state/sshd.pid" sshd; then
		echo "sshd:   pid $(cat "$state/sshd.pid") in netns $ns_srv, port $port"
	else
		echo "sshd:   NOT running"; rc=1
	fi
	for h in a b; do
		if pid_alive "$state/sshfs-$h.pid" sshfs && mountpoint -q "$(mount_of $h)"; then
			echo "host $h: $(mount_of $h) mounted from netns $(ns_of $h) ($(net_of $h).2), sshfs pid $(cat "$state/sshfs-$h.pid"), server session $(cat "$state/session-$h.pid" 2>/dev/null || echo '?')"
		elif is_mounted "$(mount_of $h)"; then
			echo "host $h: BROKEN mount at $(mount_of $h)"; rc=1
		else
			echo "host $h: not mounted"; rc=1
		fi
	done
	status_summary $rc
}

case $cmd in
remount) require_root; do_remount ;;
*) dispatch "$cmd" ;;
esac
