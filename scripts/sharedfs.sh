#!/usr/bin/env bash
# sharedfs.sh - a real shared filesystem on one machine: one export directory
# mounted twice through two independent sshfs processes (two "hosts", each
# with its own caches) from a private sshd on 127.0.0.1.
#
# Usage (as root):
#   eval "$(scripts/sharedfs.sh up [STATEDIR])"   # prints export lines
#   scripts/sharedfs.sh status [STATEDIR]
#   scripts/sharedfs.sh down [STATEDIR]
#
# STATEDIR defaults to $DLOCK_SHAREDFS_STATE, else ${TMPDIR:-/tmp}/dlock-sharedfs.
# SHAREDFS_CACHE=coherent (default) mounts with
#   dir_cache=no,attr_timeout=0,entry_timeout=0,negative_timeout=0
# SHAREDFS_CACHE=default keeps sshfs's own caching (about 20 s of stale
# metadata between the mounts: the closest thing here to NFS caching).
#
# Only messages go to stderr; `up` writes nothing but `export` lines to stdout:
#   DLOCK_SHAREDFS_M1, DLOCK_SHAREDFS_M2 (the two mount points),
#   DLOCK_SHAREDFS_EXPORT (the server-side directory), DLOCK_SHAREDFS_CACHE.
# Everything is cleaned up by recorded PIDs, never by process name.
set -euo pipefail

# shellcheck source=rig-lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/rig-lib.sh"

usage() {
	cat >&2 <<EOF
usage: $prog up|down|status [STATEDIR]
  STATEDIR        default: \${DLOCK_SHAREDFS_STATE:-\${TMPDIR:-/tmp}/dlock-sharedfs}
  SHAREDFS_CACHE  coherent (default) | default
EOF
	exit 2
}

cmd=${1:-}
[ $# -le 2 ] || usage
state=${2:-${DLOCK_SHAREDFS_STATE:-${TMPDIR:-/tmp}/dlock-sharedfs}}
case $state in /*) ;; *) state=$PWD/$state ;; esac
state=${state%/}
cache=${SHAREDFS_CACHE:-coherent}

export_dir=$state/export
m1=$state/m1
m2=$state/m2

# --- helpers ---------------------------------------------------------------

# is_mounted, pid_alive, started, stop_pid, unmount, require_fuse,
# port_in_use, apt_install, write_sshd_config

require_root() {
	[ "$(id -u)" -eq 0 ] || die "must run as root (it installs packages, runs sshd and mounts FUSE filesystems)"
}

ensure_packages() {
	local missing=()
	[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
	command -v sshfs >/dev/null 2>&1 || missing+=(sshfs)
	command -v fusermount3 >/dev/null 2>&1 || missing+=(fuse3)
	# apt_install's policy-rc.d keeps the distribution's sshd off port 22
	[ ${#missing[@]} -eq 0 ] || apt_install "$state/apt.log" "${missing[@]}"
}

start_sshd() {
	local port tries pidfile=$state/sshd.pid i
	mkdir -p /run/sshd
	for tries in 1 2 3 4 5; do
		port=$((20000 + RANDOM % 40000))
		port_in_use "$port" && continue
		write_sshd_config "$state" "$port" 127.0.0.1
		# -D: stay in the foreground, so $! is sshd's own PID
		setsid /usr/sbin/sshd -D -f "$state/sshd_config" -E "$state/sshd.log" </dev/null >/dev/null 2>&1 &
		echo $! >"$pidfile"
		started "$pidfile" sshd || true
		for i in $(seq 50); do
			pid_alive "$pidfile" sshd || break
			if port_in_use "$port"; then
				echo "$port" >"$state/port"
				printf '[127.0.0.1]:%s %s\n' "$port" "$(cut -d' ' -f1,2 "$state/host_key.pub")" >"$state/known_hosts"
				return 0
			fi
			sleep 0.1
		done
		stop_pid "$pidfile" sshd
		say "sshd did not come up on port $port; retrying another port"
	done
	[ -s "$state/sshd.log" ] && tail -n 5 "$state/sshd.log" >&2
	die "could not start sshd (log: $state/sshd.log)"
}

mount_one() {
	local n=$1 m=$2 opts i
	opts="port=$(cat "$state/port"),IdentityFile=$state/client_key,IdentitiesOnly=yes,BatchMode=yes"
	opts+=",UserKnownHostsFile=$state/known_hosts,StrictHostKeyChecking=yes"
	opts+=",ServerAliveInterval=15"
	if [ "$cache" = coherent ]; then
		opts+=",dir_cache=no,attr_timeout=0,entry_timeout=0,negative_timeout=0"
	fi
	mkdir -p "$m"
	setsid sshfs -f "root@127.0.0.1:$export_dir" "$m" -o "$opts" </dev/null >"$state/sshfs$n.log" 2>&1 &
	echo $! >"$state/sshfs$n.pid"
	started "$state/sshfs$n.pid" sshfs || true
	for i in $(seq 100); do
		if mountpoint -q "$m"; then return 0; fi
		if ! pid_alive "$state/sshfs$n.pid" sshfs; then
			cat "$state/sshfs$n.log" >&2
			die "sshfs for $m exited before mounting (log: $state/sshfs$n.log)"
		fi
		sleep 0.1
	done
	die "sshfs for $m did not mount within 10 s (log: $state/sshfs$n.log)"
}

print_exports() {
	printf 'export DLOCK_SHAREDFS_M1=%q\n' "$m1"
	printf 'export DLOCK_SHAREDFS_M2=%q\n' "$m2"
	printf 'export DLOCK_SHAREDFS_EXPORT=%q\n' "$export_dir"
	printf 'export DLOCK_SHAREDFS_CACHE=%q\n' "$(cat "$state/cache")"
}

# fully_up: sshd and both sshfs processes alive and both mounts answering.
fully_up() {
	pid_alive "$state/sshd.pid" sshd &&
		pid_alive "$state/sshfs1.pid" sshfs && mountpoint -q "$m1" &&
		pid_alive "$state/sshfs2.pid" sshfs && mountpoint -q "$m2"
}

# --- commands --------------------------------------------------------------

do_down() {
	local any=0 m
	[ -d "$state" ] || { say "nothing is up in $state"; return 0; }
	for m in "$m1" "$m2"; do
		if is_mounted "$m"; then any=1; unmount "$m"; fi
	done
	for m in 1 2; do
		pid_alive "$state/sshfs$m.pid" sshfs && any=1
		stop_pid "$state/sshfs$m.pid" sshfs
	done
	pid_alive "$state/sshd.pid" sshd && any=1
	stop_pid "$state/sshd.pid" sshd
	for m in "$m1" "$m2"; do
		is_mounted "$m" && die "$m is still mounted; not removing $state"
	done
	# --one-file-system: never descend into anything still mounted
	rm -rf --one-file-system "$state"
	if [ $any -eq 1 ]; then say "down: unmounted, stopped sshfs and sshd, removed $state"; else say "down: nothing was running; removed $state"; fi
}

do_up() {
	case $cache in coherent | default) ;; *) die "SHAREDFS_CACHE must be 'coherent' or 'default', not '$cache'" ;; esac
	require_root
	require_fuse
	if [ -d "$state" ] && fully_up; then
		if [ "$(cat "$state/cache" 2>/dev/null)" = "$cache" ]; then
			say "already up (cache=$cache, port $(cat "$state/port"))"
			print_exports
			return 0
		fi
		say "up with cache=$(cat "$state/cache" 2>/dev/null), $cache wanted: restarting"
	fi
	if [ -d "$state" ]; then
		# partial or stale leftovers: clean them up first
		say "cleaning up leftovers in $state"
		do_down
	fi
	mkdir -p "$state"
	chmod 700 "$state"
	ensure_packages
	mkdir -p "$export_dir" "$m1" "$m2"
	echo "$cache" >"$state/cache"
	ssh-keygen -q -t ed25519 -N '' -C dlock-sharedfs-host -f "$state/host_key" </dev/null >/dev/null
	ssh-keygen -q -t ed25519 -N '' -C dlock-sharedfs-client -f "$state/client_key" </dev/null >/dev/null
	start_sshd
	mount_one 1 "$m1"
	mount_one 2 "$m2"
	say "up: $export_dir mounted at $m1 and $m2 (sshd 127.0.0.1:$(cat "$state/port"), cache=$cache)"
	print_exports
}

do_status() {
	local rc=0 n m
	if [ ! -d "$state" ]; then
		echo "down (no $state)"
		return 3
	fi
	echo "state:  $state"
	echo "cache:  $(cat "$state/cache" 2>/dev/null || echo '?')"
	if pid_alive "$state/sshd.pid" sshd; then
		echo "sshd:   running, pid $(cat "$state/sshd.pid"), 127.0.0.1:$(cat "$state/port" 2>/dev/null)"
	else
		echo "sshd:   NOT running"; rc=1
	fi
	for n in 1 2; do
		m=$state/m$n
		if pid_alive "$state/sshfs$n.pid" sshfs && mountpoint -q "$m"; then
			echo "m$n:     mounted at $m (sshfs pid $(cat "$state/sshfs$n.pid"))"
		elif is_mounted "$m"; then
			echo "m$n:     BROKEN mount at $m (sshfs gone?)"; rc=1
		else
			echo "m$n:     not mounted"; rc=1
		fi
	done
	status_summary $rc
}

dispatch "$cmd"
