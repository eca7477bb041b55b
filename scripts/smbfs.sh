#!/usr/bin/env bash
# smbfs.sh - a real SMB share on one machine: Samba's smbd on 127.0.0.1:445
# serving a guest share, mounted twice through two independent smbnetfs
# processes (FUSE clients on libsmbclient, each with its own HOME, so its
# own configuration, connection and caches): two "hosts" on one SMB share.
#
# This is the rig where dlock's rename compare-and-swap does NOT hold (an
# SMB client on libsmbclient renames a handle it opened, not a name), so
# dlock must refuse these mounts (ErrUnsafeFS).
#
# Usage (as root):
#   eval "$(scripts/smbfs.sh up [STATEDIR])"   # prints export lines
#   scripts/smbfs.sh status [STATEDIR]
#   scripts/smbfs.sh down [STATEDIR]
#
# STATEDIR defaults to $DLOCK_SMBFS_STATE, else ${TMPDIR:-/tmp}/dlock-smbfs.
# Only one rig at a time per machine: smbd must listen on port 445
# (libsmbclient here ignores client port settings).
#
# Only messages go to stderr; `up` writes nothing but `export` lines to stdout:
#   DLOCK_SHAREDFS_M1, DLOCK_SHAREDFS_M2 (the share as seen through each mount),
#   DLOCK_SHAREDFS_EXPORT (the server-side directory), DLOCK_SHAREDFS_KIND=smbnetfs.
# Everything is cleaned up by recorded PIDs, never by process name.
set -euo pipefail

# shellcheck source=rig-lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/rig-lib.sh"

usage() {
	cat >&2 <<EOF
usage: $prog up|down|status [STATEDIR]
  STATEDIR  default: \${DLOCK_SMBFS_STATE:-\${TMPDIR:-/tmp}/dlock-smbfs}
EOF
	exit 2
}

cmd=${1:-}
[ $# -le 2 ] || usage
state=${2:-${DLOCK_SMBFS_STATE:-${TMPDIR:-/tmp}/dlock-smbfs}}
case $state in /*) ;; *) state=$PWD/$state ;; esac
state=${state%/}

share=dlock
export_dir=$state/share
# the share as seen through mount N: MOUNT/SERVER/SHARE
seen() { printf '%s/m%s/127.0.0.1/%s' "$state" "$1" "$share"; }

# is_mounted, pid_alive, started, stop_pid, unmount, require_fuse,
# port_in_use, apt_install

require_root() {
	[ "$(id -u)" -eq 0 ] || die "must run as root (it installs packages, runs smbd on port 445 and mounts FUSE filesystems)"
}

ensure_packages() {
	local missing=()
	[ -x /usr/sbin/smbd ] || missing+=(samba)
	command -v smbnetfs >/dev/null 2>&1 || missing+=(smbnetfs)
	command -v fusermount3 >/dev/null 2>&1 || missing+=(fuse3)
	[ ${#missing[@]} -eq 0 ] || apt_install "$state/apt.log" "${missing[@]}"
}

start_smbd() {
	local s=$state/samba pidfile=$state/smbd.pid i
	port_in_use 445 && die "port 445 is in use: another SMB server (or another rig: '$prog status' with its STATEDIR) runs here"
	mkdir -p "$s/run" "$s/lock" "$s/state" "$s/cache" "$s/private" "$s/log" "$export_dir"
	chmod 777 "$export_dir"
	cat >"$s/smb.conf" <<EOF
[global]
	server role = standalone server
	interfaces = 127.0.0.1
	bind interfaces only = yes
	smb ports = 445
	disable netbios = yes
	map to guest = Bad User
	pid directory = $s/run
	lock directory = $s/lock
	state directory = $s/state
	cache directory = $s/cache
	private dir = $s/private
	ncalrpc dir = $s/run/ncalrpc
	log file = $s/log/%m.log
	load printers = no
	printing = bsd
	printcap name = /dev/null
	disable spoolss = yes

[$share]
	path = $export_dir
	read only = no
	guest ok = yes
	force user = root
EOF
	/usr/bin/testparm -s "$s/smb.conf" >"$s/testparm.log" 2>&1 || {
		tail -n 5 "$s/testparm.log" >&2
		die "testparm rejects $s/smb.conf"
	}
	# -F: stay in the foreground, so $! is smbd's own PID; setsid makes it a
	# process group of its own, where its per-connection children live too.
	setsid /usr/sbin/smbd -F --no-process-group -s "$s/smb.conf" </dev/null >"$state/smbd.out" 2>&1 &
	echo $! >"$pidfile"
	started "$pidfile" smbd || true
	for i in $(seq 300); do
		pid_alive "$pidfile" smbd || break
		if port_in_use 445; then return 0; fi
		sleep 0.1
	done
	cat "$state/smbd.out" >&2
	[ ! -f "$s/log/smbd.log" ] || tail -n 20 "$s/log/smbd.log" >&2
	stop_pid "$pidfile" smbd group
	die "smbd did not come up on 127.0.0.1:445 within 30 s (logs: $state/smbd.out, $s/log)"
}

mount_one() {
	local n=$1 h m i
	h=$state/home$n m=$state/m$n
	mkdir -p "$h/.smb" "$m"
	chmod 700 "$h"
	printf '[global]\n\tclient min protocol = SMB2\n' >"$h/.smb/smb.conf"
	printf 'auth "guest" ""\nhost 127.0.0.1 visible=true\n' >"$h/.smb/smbnetfs.conf"
	chmod 600 "$h/.smb/smbnetfs.conf"
	HOME=$h setsid smbnetfs "$m" -f -o allow_other </dev/null >"$state/smbnetfs$n.log" 2>&1 &
	echo $! >"$state/smbnetfs$n.pid"
	started "$state/smbnetfs$n.pid" smbnetfs || true
	# the share appears once smbnetfs has connected to the server
	for i in $(seq 150); do
		if is_mounted "$m" && [ -d "$(seen "$n")" ]; then return 0; fi
		if ! pid_alive "$state/smbnetfs$n.pid" smbnetfs; then
			cat "$state/smbnetfs$n.log" >&2
			die "smbnetfs for $m exited before mounting (log: $state/smbnetfs$n.log)"
		fi
		sleep 0.1
	done
	die "the share did not appear at $(seen "$n") within 15 s (log: $state/smbnetfs$n.log)"
}

print_exports() {
	printf 'export DLOCK_SHAREDFS_M1=%q\n' "$(seen 1)"
	printf 'export DLOCK_SHAREDFS_M2=%q\n' "$(seen 2)"
	printf 'export DLOCK_SHAREDFS_EXPORT=%q\n' "$export_dir"
	printf 'export DLOCK_SHAREDFS_KIND=smbnetfs\n'
}

fully_up() {
	pid_alive "$state/smbd.pid" smbd &&
		pid_alive "$state/smbnetfs1.pid" smbnetfs && [ -d "$(seen 1)" ] &&
		pid_alive "$state/smbnetfs2.pid" smbnetfs && [ -d "$(seen 2)" ]
}

# --- commands --------------------------------------------------------------

do_down() {
	local any=0 n
	[ -d "$state" ] || { say "nothing is up in $state"; return 0; }
	for n in 1 2; do
		if is_mounted "$state/m$n"; then any=1; unmount "$state/m$n"; fi
		pid_alive "$state/smbnetfs$n.pid" smbnetfs && any=1
		stop_pid "$state/smbnetfs$n.pid" smbnetfs group
	done
	pid_alive "$state/smbd.pid" smbd && any=1
	stop_pid "$state/smbd.pid" smbd group
	for n in 1 2; do
		is_mounted "$state/m$n" && die "$state/m$n is still mounted; not removing $state"
	done
	rm -rf --one-file-system "$state"
	if [ $any -eq 1 ]; then say "down: unmounted, stopped smbnetfs and smbd, removed $state"; else say "down: nothing was running; removed $state"; fi
}

do_up() {
	require_root
	require_fuse
	if [ -d "$state" ] && fully_up; then
		say "already up (smbd pid $(cat "$state/smbd.pid"))"
		print_exports
		return 0
	fi
	if [ -d "$state" ]; then
		say "cleaning up leftovers in $state"
		do_down
	fi
	mkdir -p "$state"
	chmod 700 "$state"
	ensure_packages
	start_smbd
	mount_one 1
	mount_one 2
	say "up: $export_dir shared by smbd on 127.0.0.1:445 as //127.0.0.1/$share, seen at $(seen 1) and $(seen 2) (smbnetfs)"
	print_exports
}

do_status() {
	local rc=0 n m
	if [ ! -d "$state" ]; then
		echo "down (no $state)"
		return 3
	fi
	echo "state:  $state"
	if pid_alive "$state/smbd.pid" smbd; then
		echo "smbd:   running, pid $(cat "$state/smbd.pid"), 127.0.0.1:445, share //127.0.0.1/$share"
	else
		echo "smbd:   NOT running"; rc=1
	fi
	for n in 1 2; do
		m=$state/m$n
		if pid_alive "$state/smbnetfs$n.pid" smbnetfs && [ -d "$(seen "$n")" ]; then
			echo "m$n:     $(seen "$n") (smbnetfs pid $(cat "$state/smbnetfs$n.pid"))"
		elif is_mounted "$m"; then
			echo "m$n:     BROKEN mount at $m (smbnetfs gone, or the share does not answer)"; rc=1
		else
			echo "m$n:     not mounted"; rc=1
		fi
	done
	status_summary $rc
}

dispatch "$cmd"
