#!/usr/bin/env bash
# glusterfs.sh - a real distributed filesystem on one machine: a private
# glusterd with two volumes whose bricks are directories of the state dir,
# a distribute volume over 3 bricks and a replica-3 volume, each mounted
# twice through two independent FUSE clients (two "hosts", each with its
# own caches and its own connections to the bricks).
#
# Usage (as root):
#   eval "$(scripts/glusterfs.sh up [STATEDIR])"   # prints export lines
#   scripts/glusterfs.sh status [STATEDIR]
#   scripts/glusterfs.sh down [STATEDIR]
#
# STATEDIR defaults to $DLOCK_GLUSTER_STATE, else ${TMPDIR:-/tmp}/dlock-glusterfs.
# `up` starts both volumes and mounts; GLUSTER_VOLUME=distribute (default)
# or replica picks the one exported as DLOCK_SHAREDFS_M1/M2. `up` when
# already up only prints the exports, so switching volumes takes no time:
#   eval "$(GLUSTER_VOLUME=replica scripts/glusterfs.sh up)"
#
# Only messages go to stderr; `up` writes nothing but `export` lines to stdout:
#   DLOCK_SHAREDFS_M1, DLOCK_SHAREDFS_M2 (the two mounts of the chosen volume),
#   DLOCK_SHAREDFS_KIND (glusterfs-distribute or glusterfs-replica),
#   DLOCK_SHAREDFS_CACHE=coherent, and for both volumes
#   DLOCK_GLUSTER_{DISTRIBUTE,REPLICA}_{M1,M2}.
# glusterd keeps its state (working directory, run directory, socket) in
# STATEDIR, not in /var/lib/glusterd; it needs TCP port 24007 on this host.
# Everything is cleaned up by recorded PIDs, never by process name.
set -euo pipefail

# shellcheck source=rig-lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/rig-lib.sh"

usage() {
	cat >&2 <<EOF
usage: $prog up|down|status [STATEDIR]
  STATEDIR        default: \${DLOCK_GLUSTER_STATE:-\${TMPDIR:-/tmp}/dlock-glusterfs}
  GLUSTER_VOLUME  distribute (default) | replica: the volume exported as DLOCK_SHAREDFS_M1/M2
EOF
	exit 2
}

cmd=${1:-}
[ $# -le 2 ] || usage
state=${2:-${DLOCK_GLUSTER_STATE:-${TMPDIR:-/tmp}/dlock-glusterfs}}
case $state in /*) ;; *) state=$PWD/$state ;; esac
state=${state%/}
want=${GLUSTER_VOLUME:-distribute}

host=$(hostname)
port=24007 # glusterd's; bricks pick their own ports
kinds="distribute replica"
gd=$state/glusterd # working directory, run directory and socket of our glusterd
sock=$gd/run/glusterd.socket

volname() { printf 'gluster-dlock-%s' "$1"; }
mnt() { printf '%s/%s/m%s' "$state" "$1" "$2"; }
gcli() { gluster --glusterd-sock="$sock" --mode=script "$@"; }

# --- helpers ---------------------------------------------------------------

# is_mounted, pid_alive, stop_pid, require_fuse, port_in_use, apt_install

# All of GlusterFS's programs (glusterd, the glusterfs clients, the bricks)
# are the one executable glusterfsd: pid_alive and stop_pid check for it.
gx=glusterfsd

require_root() {
	[ "$(id -u)" -eq 0 ] || die "must run as root (it installs packages, runs glusterd and mounts FUSE filesystems)"
}

ensure_packages() {
	local missing=()
	command -v glusterd >/dev/null 2>&1 || missing+=(glusterfs-server)
	command -v glusterfs >/dev/null 2>&1 || missing+=(glusterfs-client)
	# apt_install's policy-rc.d keeps the distribution's glusterd from starting
	[ ${#missing[@]} -eq 0 ] || apt_install "$state/apt.log" "${missing[@]}"
}

start_glusterd() {
	local i
	getent hosts "$host" >/dev/null || die "host name '$host' does not resolve (glusterd names bricks HOST:DIR): add it to /etc/hosts"
	port_in_use $port && die "TCP port $port is in use (another glusterd?): stop it first; this script runs its own"
	mkdir -p "$gd/wd" "$gd/run" /var/log/glusterfs
	cat >"$gd/glusterd.vol" <<EOF
volume management
    type mgmt/glusterd
    option working-directory $gd/wd
    option run-directory $gd/run
    option glusterd-sockfile $sock
    option transport-type socket
    option transport.socket.listen-port $port
    option transport.socket.bind-address 127.0.0.1
    option ping-timeout 0
    option event-threads 1
end-volume
EOF
	# glusterd daemonizes; -p records the daemon's PID
	glusterd -f "$gd/glusterd.vol" -p "$state/glusterd.pid" --log-file="$state/log/glusterd.log" </dev/null ||
		die "glusterd failed to start (log: $state/log/glusterd.log)"
	for i in $(seq 100); do
		if pid_alive "$state/glusterd.pid" $gx && gcli pool list >/dev/null 2>&1; then return 0; fi
		sleep 0.1
	done
	tail -n 5 "$state/log/glusterd.log" >&2 || true
	die "glusterd did not answer within 10 s (log: $state/log/glusterd.log)"
}

create_volume() {
	local kind=$1 name bricks=() b
	name=$(volname "$kind")
	for b in 1 2 3; do
		mkdir -p "$state/bricks/$kind/b$b"
		bricks+=("$host:$state/bricks/$kind/b$b")
	done
	# force: the bricks are on the root filesystem
	case $kind in
	distribute) gcli volume create "$name" "${bricks[@]}" force >&2 ;;
	replica) gcli volume create "$name" replica 3 "${bricks[@]}" force >&2 ;;
	esac || die "cannot create volume $name"
	gcli volume start "$name" >&2 || die "cannot start volume $name"
}

mount_one() {
	local kind=$1 n=$2 m i
	m=$(mnt "$kind" "$n")
	mkdir -p "$m"
	glusterfs --volfile-server="$host" --volfile-id="$(volname "$kind")" \
		-p "$state/$kind-m$n.pid" --log-file="$state/log/$kind-m$n.log" "$m" </dev/null ||
		die "glusterfs failed to mount $m (log: $state/log/$kind-m$n.log)"
	for i in $(seq 100); do
		if mountpoint -q "$m" && stat "$m" >/dev/null 2>&1; then return 0; fi
		sleep 0.1
	done
	tail -n 5 "$state/log/$kind-m$n.log" >&2 || true
	die "$m did not mount within 10 s (log: $state/log/$kind-m$n.log)"
}

gl_unmount() {
	local m=$1
	is_mounted "$m" || return 0
	if ! umount "$m" 2>/dev/null; then
		say "umount $m failed (busy?); detaching lazily with -l"
		umount -l "$m" || die "cannot unmount $m"
	fi
}

print_exports() {
	local kind
	printf 'export DLOCK_SHAREDFS_M1=%q\n' "$(mnt "$want" 1)"
	printf 'export DLOCK_SHAREDFS_M2=%q\n' "$(mnt "$want" 2)"
	printf 'export DLOCK_SHAREDFS_KIND=%q\n' "glusterfs-$want"
	printf 'export DLOCK_SHAREDFS_CACHE=coherent\n'
	for kind in $kinds; do
		printf 'export DLOCK_GLUSTER_%s_M1=%q\n' "${kind^^}" "$(mnt "$kind" 1)"
		printf 'export DLOCK_GLUSTER_%s_M2=%q\n' "${kind^^}" "$(mnt "$kind" 2)"
	done
}

# fully_up: glusterd and all four clients alive, every mount answering.
fully_up() {
	local kind n
	pid_alive "$state/glusterd.pid" $gx || return 1
	for kind in $kinds; do
		for n in 1 2; do
			pid_alive "$state/$kind-m$n.pid" $gx && mountpoint -q "$(mnt "$kind" "$n")" || return 1
		done
	done
}

# --- commands --------------------------------------------------------------

do_down() {
	local any=0 kind n f
	[ -d "$state" ] || { say "nothing is up in $state"; return 0; }
	for kind in $kinds; do
		for n in 1 2; do
			if is_mounted "$(mnt "$kind" "$n")"; then any=1; gl_unmount "$(mnt "$kind" "$n")"; fi
			pid_alive "$state/$kind-m$n.pid" $gx && any=1
			stop_pid "$state/$kind-m$n.pid" $gx
		done
	done
	# glusterd's children (bricks, self-heal daemon): their pid files, kept
	# before a volume stop removes them
	mkdir -p "$state/children"
	[ ! -d "$gd/run" ] || find "$gd/run" -name '*.pid' -type f -exec cp {} "$state/children/" \;
	if pid_alive "$state/glusterd.pid" $gx; then
		any=1
		for kind in $kinds; do
			# stopping a volume stops its bricks (and the self-heal daemon with the last replica)
			gcli volume stop "$(volname "$kind")" force >/dev/null 2>&1 || true
			gcli volume delete "$(volname "$kind")" >/dev/null 2>&1 || true
		done
	fi
	# they exit with the volume stop (stop_pid waits), or are stopped here
	for f in "$state"/children/*.pid; do
		[ ! -e "$f" ] || stop_pid "$f" $gx
	done
	stop_pid "$state/glusterd.pid" $gx
	for kind in $kinds; do
		for n in 1 2; do
			is_mounted "$(mnt "$kind" "$n")" && die "$(mnt "$kind" "$n") is still mounted; not removing $state"
		done
	done
	rm -rf --one-file-system "$state"
	if [ $any -eq 1 ]; then say "down: unmounted, stopped the clients, volumes and glusterd, removed $state"; else say "down: nothing was running; removed $state"; fi
}

do_up() {
	local kind
	case $want in distribute | replica) ;; *) die "GLUSTER_VOLUME must be 'distribute' or 'replica', not '$want'" ;; esac
	require_root
	require_fuse
	if [ -d "$state" ] && fully_up; then
		say "already up (glusterd pid $(cat "$state/glusterd.pid")); exporting the $want volume"
		print_exports
		return 0
	fi
	if [ -d "$state" ]; then
		say "cleaning up leftovers in $state"
		do_down
	fi
	mkdir -p "$state/log"
	chmod 700 "$state"
	ensure_packages
	start_glusterd
	for kind in $kinds; do
		create_volume "$kind"
		mount_one "$kind" 1
		mount_one "$kind" 2
	done
	say "up: volumes $(volname distribute) (3 bricks) and $(volname replica) (replica 3), each mounted twice under $state; exporting $want"
	print_exports
}

do_status() {
	local rc=0 kind n m
	if [ ! -d "$state" ]; then
		echo "down (no $state)"
		return 3
	fi
	echo "state:    $state"
	if pid_alive "$state/glusterd.pid" $gx; then
		echo "glusterd: running, pid $(cat "$state/glusterd.pid"), port $port"
		for kind in $kinds; do
			echo "$(volname "$kind"): $(gcli volume info "$(volname "$kind")" 2>/dev/null | awk -F': ' '/^Status/ {s=$2} /^Type/ {t=$2} END {print (s ? t ", " s : "missing")}')"
		done
	else
		echo "glusterd: NOT running"; rc=1
	fi
	for kind in $kinds; do
		for n in 1 2; do
			m=$(mnt "$kind" "$n")
			if pid_alive "$state/$kind-m$n.pid" $gx && mountpoint -q "$m"; then
				echo "$kind m$n: mounted at $m (glusterfs pid $(cat "$state/$kind-m$n.pid"))"
			elif is_mounted "$m"; then
				echo "$kind m$n: BROKEN mount at $m (client gone?)"; rc=1
			else
				echo "$kind m$n: not mounted"; rc=1
			fi
		done
	done
	status_summary $rc
}

dispatch "$cmd"
