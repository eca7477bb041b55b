#!/usr/bin/env bash
# qemu-nfs.sh - hosts with kernels of their own: qemu guests (Debian's cloud
# kernel, a busybox initramfs, software emulation) that mount NFSv4 from an
# nfs-ganesha server on this host's loopback, for dlock's partition, skew
# and counter tests (qemu_test.go). In a guest, 10.0.2.2 is this host's
# 127.0.0.1.
#
# Usage (as root):
#   eval "$(scripts/qemu-nfs.sh up [STATEDIR])"    # prints export lines
#   go test -count=1 -v -run '^TestQemu' .          # the tests, by hand
#   scripts/qemu-nfs.sh down [STATEDIR]
#   scripts/qemu-nfs.sh run [STATEDIR]              # up, the tests, down
#
# STATEDIR defaults to $DLOCK_QEMU_STATE, else ${TMPDIR:-/tmp}/dlock-qemu.
# QEMU_NFS_PORT (default 20490) is the NFS server's TCP port on 127.0.0.1.
# QEMU_NFS_V3=1 has ganesha serve NFSv3 too (MNT on QEMU_NFS_PORT + 1, no
# NLM): it needs an rpcbind running on this host, which ganesha registers
# with (without one it exits); by hand only. A guest's v3 mount can only
# be nolock: its kernel's lockd finds no rpcbind in the guest.
# QEMU_TEST_RUN (default ^TestQemu) selects the tests `run` runs.
# QEMU_NFS_ATTR_EXPIRATION (default 0) is ganesha's Attr_Expiration_Time:
# with ganesha's own default, 60 s, a change made on the exported
# directory by a process on this host (not through NFS) reaches the
# guests only when that cache expires (kernel nfsd keeps no such cache).
# DLOCK_QEMU_CACHE, if set, is a directory that keeps the kernel package
# across state directories (CI sets it; without it each STATEDIR fetches).
#
# `up` installs what is missing (qemu-system-x86, busybox-static, kmod, cpio,
# nfs-ganesha), downloads the kernel package that linux-image-cloud-amd64
# depends on (once), builds the static test binary and CLI (CGO_ENABLED=0),
# packs the initramfs and starts ganesha exporting STATEDIR/export. It writes
# nothing but `export` lines to stdout: DLOCK_QEMU_STATE, DLOCK_QEMU_NFS_PORT.
# Everything is kept in STATEDIR and stopped by recorded PIDs: ganesha's, and
# the guests' that the tests write to STATEDIR/run/*.pid.
set -euo pipefail

# shellcheck source=rig-lib.sh
. "$(dirname "$0")/rig-lib.sh"

cmd=${1:-}
[ $# -le 2 ] || { say "usage: $prog up|down|status|run [STATEDIR]"; exit 2; }
state=${2:-${DLOCK_QEMU_STATE:-${TMPDIR:-/tmp}/dlock-qemu}}
case $state in /*) ;; *) state=$PWD/$state ;; esac
state=${state%/}
port=${QEMU_NFS_PORT:-20490}
root=$(cd "$(dirname "$0")/.." && pwd)

gdir=$state/ganesha
gpid=$gdir/ganesha.pid


install_missing() {
	local need=()
	command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
	command -v file >/dev/null || need+=(file)
	{ [ -x /bin/busybox ] && file -L /bin/busybox | grep -q 'statically linked'; } || need+=(busybox-static)
	command -v depmod >/dev/null || need+=(kmod)
	command -v cpio >/dev/null || need+=(cpio)
	command -v ganesha.nfsd >/dev/null || need+=(nfs-ganesha nfs-ganesha-vfs)
	[ ${#need[@]} -eq 0 ] || apt_install "$state/apt.log" "${need[@]}"
}

# fetch_kernel: Debian's cloud kernel, from the package its meta-package
# names, unpacked into STATEDIR/kernel (once).
fetch_kernel() {
	[ -s "$state/vmlinuz" ] && [ -s "$state/kernel.version" ] && return 0
	local pkg deb
	pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/ { print $2; exit }')
	if [ -z "$pkg" ]; then
		# a fresh machine whose packages were there already may have no lists
		say "apt-cache knows no linux-image-cloud-amd64: running apt-get update"
		apt-get -o DPkg::Lock::Timeout=300 update >>"$state/apt.log" 2>&1 || true
		pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/ { print $2; exit }')
	fi
	[ -n "$pkg" ] || die "apt-cache knows no linux-image-cloud-amd64, even after apt-get update (log: $state/apt.log)"
	rm -rf "$state/dl" "$state/kernel"
	mkdir -p "$state/dl"
	# DLOCK_QEMU_CACHE keeps the package across state directories (CI)
	if [ -n "${DLOCK_QEMU_CACHE:-}" ] && ls "$DLOCK_QEMU_CACHE/${pkg}_"*.deb >/dev/null 2>&1; then
		say "using $pkg from $DLOCK_QEMU_CACHE"
		cp "$(ls "$DLOCK_QEMU_CACHE/${pkg}_"*.deb | head -n 1)" "$state/dl/"
	else
		say "downloading $pkg"
		(cd "$state/dl" && apt-get download "$pkg" >/dev/null 2>&1) || die "apt-get download $pkg failed"
		if [ -n "${DLOCK_QEMU_CACHE:-}" ]; then
			mkdir -p "$DLOCK_QEMU_CACHE"
			rm -f "$DLOCK_QEMU_CACHE"/linux-image-*.deb
			cp "$state/dl"/*.deb "$DLOCK_QEMU_CACHE/"
		fi
	fi
	deb=$(ls "$state/dl"/*.deb)
	dpkg -x "$deb" "$state/kernel"
	rm -rf "$state/dl"
	ls "$state/kernel/lib/modules" | head -n 1 >"$state/kernel.version"
	depmod -b "$state/kernel" "$(cat "$state/kernel.version")"
	cp "$state/kernel/boot/vmlinuz-$(cat "$state/kernel.version")" "$state/vmlinuz"
}

build_programs() {
	say "building the static test binary and dlock CLI"
	mkdir -p "$state/bin"
	(cd "$root" && CGO_ENABLED=0 go test -c -o "$state/bin/dlock.test" . &&
		CGO_ENABLED=0 go build -o "$state/bin/dlock" ./cmd/dlock) || die "go build failed"
}

# build_initramfs: busybox, the NFS client's and virtio's modules, the two
# programs, and an /init that brings up the network, mounts the export
# (twice, with separate caches, if DLOCK_MOUNTS=2), runs the test binary in
# the role DLOCK_QEMU_ROLE and powers off. The kernel command line's
# NAME=VALUE words reach /init as environment variables.
build_initramfs() {
	local k ir=$state/initramfs m f
	k=$(cat "$state/kernel.version")
	rm -rf "$ir"
	mkdir -p "$ir"/{bin,dev,proc,sys,tmp,m1,m2,etc}
	cp /bin/busybox "$ir/bin/"
	cp "$state/bin/dlock.test" "$state/bin/dlock" "$ir/bin/"
	for m in virtio_pci virtio_net nfsv4 nfsv3; do
		modprobe -d "$state/kernel" -S "$k" --show-depends "$m"
	done | awk '$1 == "insmod" && !seen[$2]++ { print $2 }' >"$state/modules.list"
	[ -s "$state/modules.list" ] || die "no modules found for the NFS client in $state/kernel"
	while read -r f; do
		m=${f#"$state/kernel"}
		mkdir -p "$ir${m%/*}"
		cp "$f" "$ir$m"
		echo "$m"
	done <"$state/modules.list" >"$ir/etc/modules.order"
	depmod -b "$ir" "$k" 2>/dev/null
	cat >"$ir/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo /bin/modprobe >/proc/sys/kernel/modprobe
while read -r m; do insmod "$m"; done </etc/modules.order
hostname "${DLOCK_GUEST_NAME:-dlock-guest}"
net=${DLOCK_GUEST_NET:-10.0.2}
ip link set lo up
ip link set eth0 up
ip addr add "$net.15/24" dev eth0
ip route add default via "$net.2"
# A second link between the guests (qemu -netdev dgram, see
# qemu_hint_test.go): the user-mode network lets no datagram in.
if [ -n "${DLOCK_GUEST_LINK_ADDR:-}" ]; then
	ip link set eth1 up
	ip addr add "$DLOCK_GUEST_LINK_ADDR" dev eth1
fi
base="port=${DLOCK_NFS_PORT:-2049},addr=$net.2,clientaddr=$net.15"
opts="vers=4.1,nosharecache,$base"
n=0
if [ -n "${DLOCK_NFS_MOUNTS:-}" ]; then
	# mount options per mount, separated by "/"; "default": none but the
	# address; "v3:OPTS" an NFSv3 mount (MNT on the NFS port + 1, no NLM)
	IFS=/
	set -- $DLOCK_NFS_MOUNTS
	IFS=' '
	for o in "$@"; do
		n=$((n + 1))
		mkdir -p "/m$n"
		t=nfs4
		case $o in
		default) o=$base ;;
		v3:*)
			t=nfs
			o="${o#v3:},proto=tcp,port=${DLOCK_NFS_PORT:-2049},mountproto=tcp,mountport=$((${DLOCK_NFS_PORT:-2049} + 1)),addr=$net.2,mountaddr=$net.2"
			;;
		*) o=$o,$base ;;
		esac
		mount -t $t "$net.2:/export" "/m$n" -o "$o" || echo "dlock-qemu: error mounting /m$n with $o"
	done
else
	while [ $n -lt "${DLOCK_MOUNTS:-1}" ]; do
		n=$((n + 1))
		mount -t nfs4 "$net.2:/export" "/m$n" -o "$opts" || echo "dlock-qemu: error mounting /m$n"
	done
fi
grep -E ' nfs4? ' /proc/mounts | while read -r dev mnt fs o rest; do echo "dlock-qemu: mount $mnt $o"; done
echo "dlock-qemu: up $(cat /proc/uptime)"
# DLOCK_QEMU_PROG: another program of the initramfs to run instead (the
# bench's guest agent, in an archive the bench appends to initrd.gz)
DLOCK_TEST_CHILD=${DLOCK_QEMU_ROLE:-none} ${DLOCK_QEMU_PROG:-/bin/dlock.test}
echo "dlock-qemu: exit $?"
poweroff -f
EOF
	chmod 755 "$ir/init"
	(cd "$ir" && find . | cpio -o -H newc --quiet | gzip -1) >"$state/initrd.gz.new"
	mv "$state/initrd.gz.new" "$state/initrd.gz"
}

start_ganesha() {
	pid_alive "$gpid" ganesha.nfsd && return 0
	port_in_use "$port" && die "port $port on 127.0.0.1 is taken by someone else: set QEMU_NFS_PORT"
	local protocols=4 v3_lines=
	if [ -n "${QEMU_NFS_V3:-}" ]; then
		port_in_use 111 || die "QEMU_NFS_V3 needs rpcbind running on this host (apt-get install rpcbind; rpcbind): ganesha exits when it cannot register NFSv3"
		port_in_use $((port + 1)) && die "port $((port + 1)) on 127.0.0.1 (NFSv3's MNT) is taken by someone else: set QEMU_NFS_PORT"
		protocols="3, 4"
		v3_lines=$(printf '\n\tMNT_Port = %s;\n\tMount_Path_Pseudo = true;' $((port + 1)))
	fi
	mkdir -p "$gdir/recov" "$state/export" /var/run/ganesha
	cat >"$gdir/ganesha.conf" <<EOF
NFS_CORE_PARAM {
	Protocols = $protocols;
	Bind_Addr = 127.0.0.1;
	NFS_Port = $port;$v3_lines
	Enable_NLM = false;
	Enable_RQUOTA = false;
	Enable_UDP = false;
	Plugins_Dir = $(dirname "$(find /usr/lib -name libfsalvfs.so | head -n 1)");
}
NFSv4 {
	Graceless = true;
	RecoveryBackend = fs;
	RecoveryRoot = $gdir/recov;
	Only_Numeric_Owners = true;
}
EXPORT {
	Export_Id = 1;
	Path = $state/export;
	Pseudo = /export;
	Access_Type = RW;
	Squash = No_Root_Squash;
	Attr_Expiration_Time = ${QEMU_NFS_ATTR_EXPIRATION:-0};
	Protocols = $protocols;
	Transports = TCP;
	SecType = sys;
	FSAL { Name = VFS; }
}
EOF
	# In the foreground (-F) under setsid, so that $! is ganesha's PID.
	setsid ganesha.nfsd -F -f "$gdir/ganesha.conf" -L "$gdir/ganesha.log" -p "$gdir/ganesha.pid.own" \
		-N NIV_EVENT </dev/null >>"$gdir/ganesha.out" 2>&1 &
	echo $! >"$gpid"
	local i
	if started "$gpid" ganesha.nfsd; then
		for i in $(seq 100); do
			port_in_use "$port" && return 0
			pid_alive "$gpid" ganesha.nfsd || break
			sleep 0.1
		done
	fi
	tail -n 20 "$gdir/ganesha.log" >&2 2>/dev/null || true
	die "ganesha did not come up on 127.0.0.1:$port (log: $gdir/ganesha.log)"
}

do_up() {
	[ "$(id -u)" -eq 0 ] || die "must run as root (it installs packages and runs an NFS server)"
	mkdir -p "$state/run"
	install_missing
	fetch_kernel
	build_programs
	build_initramfs
	start_ganesha
	say "up: kernel $(cat "$state/kernel.version"), NFS on 127.0.0.1:$port exporting $state/export"
	printf 'export DLOCK_QEMU_STATE=%q\nexport DLOCK_QEMU_NFS_PORT=%q\n' "$state" "$port"
	[ -z "${QEMU_NFS_V3:-}" ] || echo 'export DLOCK_QEMU_NFS_V3=1'
}

do_down() {
	local f
	[ -d "$state" ] || return 0
	for f in "$state"/run/*.pid; do
		[ -e "$f" ] && stop_pid "$f" qemu-system-x86_64
	done
	stop_pid "$gpid" ganesha.nfsd
	rm -rf --one-file-system "$state"
	say "down"
}

do_status() {
	if pid_alive "$gpid" ganesha.nfsd && [ -s "$state/initrd.gz" ]; then
		echo "up: ganesha pid $(cat "$gpid"), 127.0.0.1:$port, $state"
		return 0
	fi
	echo "down"
	return 3
}

case $cmd in
up) do_up ;;
down) do_down ;;
status) do_status ;;
run)
	trap do_down EXIT
	eval "$(do_up)"
	start=$SECONDS
	rc=0
	"$state/bin/dlock.test" -test.v -test.count=1 -test.timeout=30m -test.run "${QEMU_TEST_RUN:-^TestQemu}" || rc=$?
	say "tests took $((SECONDS - start)) s (exit $rc)"
	exit $rc
	;;
*)
	say "usage: $prog up|down|status|run [STATEDIR]"
	exit 2
	;;
esac
