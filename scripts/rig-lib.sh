# rig-lib.sh - helpers of the rig scripts (sharedfs.sh, smbfs.sh, glusterfs.sh,
# hosts.sh, qemu-nfs.sh), sourced by them first. The caller defines usage and
# its do_up, do_down and do_status.

prog=${0##*/}
say() { printf '%s: %s\n' "$prog" "$*" >&2; }
die() { say "error: $*"; exit 1; }

# is_mounted DIR: DIR is a mount point in /proc/self/mountinfo (works even
# when the FUSE daemon died and stat(2) on DIR fails with ENOTCONN).
is_mounted() {
	local d=$1
	d=${d//\\/\\134}; d=${d// /\\040}; d=${d//$'\t'/\\011}
	awk -v d="$d" '$5 == d { f = 1 } END { exit !f }' /proc/self/mountinfo
}

# pid_is PID NAME: PID runs, is no zombie, and its executable is NAME.
pid_is() {
	local pid=$1 name=$2 exe
	case $pid in '' | *[!0-9]*) return 1 ;; esac
	[ -d "/proc/$pid" ] || return 1
	exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
	[ "${exe##*/}" = "$name" ] || return 1
	[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]
}

# pid_alive FILE NAME: the PID recorded in FILE is running as NAME.
pid_alive() {
	[ -s "$1" ] && pid_is "$(cat "$1")" "$2"
}

# started FILE NAME: wait (up to 10 s) until the process recorded in FILE
# runs NAME. Right after `setsid NAME ... &` the child may still be the
# shell's fork or setsid, not yet NAME: checking pid_alive at once would
# take a process being started for one that exited.
started() {
	local f=$1 name=$2 pid exe i
	pid=$(cat "$f")
	for i in $(seq 200); do
		[ -d "/proc/$pid" ] || return 1
		[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] || return 1
		exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
		[ "${exe##*/}" = "$name" ] && return 0
		sleep 0.05
	done
	return 1
}

# group_left PGID NAME: PIDs of processes named NAME in process group PGID
# (smbd forks one child per client connection into its own group).
group_left() {
	local pgid=$1 name=$2 f pid
	for f in /proc/[0-9]*/stat; do
		pid=${f#/proc/}; pid=${pid%/stat}
		# field 5 is the process group; the name in field 2 may hold spaces
		[ "$(sed 's/.*) //' "$f" 2>/dev/null | awk '{print $3}')" = "$pgid" ] || continue
		pid_is "$pid" "$name" && echo "$pid"
	done
	return 0
}

# stop_pid FILE NAME [GROUP]: stop the process recorded in FILE (TERM, then
# KILL); with GROUP, also what is left of its process group.
stop_pid() {
	local f=$1 name=$2 group=${3:-} pid i left
	[ -s "$f" ] || return 0
	pid=$(cat "$f")
	if pid_alive "$f" "$name"; then
		kill -TERM "$pid" 2>/dev/null || true
		for i in $(seq 50); do
			pid_alive "$f" "$name" || break
			sleep 0.1
		done
		if pid_alive "$f" "$name"; then
			say "$name (pid $pid) ignored SIGTERM; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
			sleep 0.1
		fi
	fi
	if [ -n "$group" ]; then
		for i in $(seq 50); do
			left=$(group_left "$pid" "$name")
			[ -n "$left" ] || break
			# shellcheck disable=SC2086
			kill -TERM $left 2>/dev/null || true
			sleep 0.1
		done
		left=$(group_left "$pid" "$name")
		# shellcheck disable=SC2086
		[ -z "$left" ] || kill -KILL $left 2>/dev/null || true
	fi
	rm -f "$f"
}

unmount() {
	local m=$1
	is_mounted "$m" || return 0
	if ! fusermount3 -u "$m" 2>/dev/null; then
		say "fusermount3 -u $m failed (busy?); detaching lazily with -uz"
		fusermount3 -uz "$m" || die "cannot unmount $m"
	fi
}


require_fuse() {
	[ -c /dev/fuse ] || die "/dev/fuse is missing or not a character device: FUSE is not available here (container started without --device /dev/fuse?)"
}


port_in_use() {
	if command -v ss >/dev/null 2>&1; then
		[ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]
	else
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
	fi
}

# apt_install LOG PKG...: install PKG... with apt-get, logging to LOG, with
# a temporary /usr/sbin/policy-rc.d (if none exists) so that no daemon a
# package brings is started; runs apt-get update and retries on failure.
apt_install() {
	local log=$1 created_policy=0 rc=0 apt
	shift
	command -v apt-get >/dev/null 2>&1 || die "missing $* and no apt-get to install them"
	say "installing $* (apt-get)"
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		created_policy=1
	fi
	# wait for another apt-get instead of failing on its lock
	apt=(apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends)
	DEBIAN_FRONTEND=noninteractive "${apt[@]}" "$@" >"$log" 2>&1 || rc=$?
	if [ $rc -ne 0 ]; then
		# a fresh machine may have no package lists yet
		say "apt-get install failed; running apt-get update and trying again"
		rc=0
		apt-get -o DPkg::Lock::Timeout=300 update >>"$log" 2>&1 &&
			DEBIAN_FRONTEND=noninteractive "${apt[@]}" "$@" >>"$log" 2>&1 || rc=$?
	fi
	[ $created_policy -eq 0 ] || rm -f /usr/sbin/policy-rc.d
	if [ $rc -ne 0 ]; then
		tail -n 5 "$log" >&2
		die "apt-get install $* failed (exit $rc; full log: $log)"
	fi
}

# write_sshd_config STATE PORT ADDR...: STATE/sshd_config for a private sshd
# listening on each ADDR at PORT, with the throwaway keys in STATE, root
# logins by key only and the in-process SFTP server (so that the session
# serving a mount is one "sshd: root@internal-sftp" process); checked with
# sshd -t.
write_sshd_config() {
	local state=$1 port=$2 usepam=no a
	shift 2
	# sshd refuses key logins to a locked account ('!' password) unless PAM
	# decides; with PAM it works.
	case $(awk -F: '$1 == "root" {print $2}' /etc/shadow 2>/dev/null) in
	'!'*) usepam=yes ;;
	esac
	{
		for a in "$@"; do echo "ListenAddress $a"; done
		cat <<EOF
Port $port
HostKey $state/host_key
PidFile $state/sshd.daemon.pid
AuthorizedKeysFile $state/client_key.pub
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
UsePAM $usepam
Subsystem sftp internal-sftp
LogLevel ERROR
EOF
	} >"$state/sshd_config"
	/usr/sbin/sshd -t -f "$state/sshd_config" || die "sshd rejects $state/sshd_config"
}

# require_root: the rig's setting up and tearing down need root (a rig
# script may say why in its own).
require_root() {
	[ "$(id -u)" -eq 0 ] || die "must run as root"
}

# status_summary RC: the last line of a status report, for a rig whose
# parts were all up (RC 0) or not; returns RC.
status_summary() {
	if [ "$1" -eq 0 ]; then echo "status: up"; else echo "status: partly up (run '$prog down' or '$prog up')"; fi
	return "$1"
}

# dispatch CMD: the commands every rig has: up, down (as root), status.
dispatch() {
	case $1 in
	up) do_up ;;
	down) require_root; do_down ;;
	status) do_status ;;
	*) usage ;;
	esac
}
