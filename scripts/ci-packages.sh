#!/usr/bin/env bash
# ci-packages.sh - installs, in one apt-get run, every Debian package that
# .ci/run's steps and the rig scripts would otherwise install one step at
# a time. .ci/run starts it in the background at once, so that the
# downloads and unpacking of a fresh machine overlap the Go module
# downloads, vet and builds; each rig script still installs what it
# misses by itself (a hand run needs no more than that script).
#
# Usage (as root): scripts/ci-packages.sh [LOG]
set -euo pipefail

# shellcheck source=rig-lib.sh
. "$(dirname "$0")/rig-lib.sh"

[ "$(id -u)" -eq 0 ] || die "must run as root"
log=${1:-${TMPDIR:-/tmp}/dlock-ci-packages.log}

pkgs=(
	spin                                                 # the protocol's model
	zsh fish man-db groff-base lintian rpm               # completions, the man page, the packages
	openssh-server sshfs fuse3 iproute2 util-linux       # sharedfs.sh, hosts.sh
	glusterfs-server glusterfs-client                    # glusterfs.sh
	samba smbnetfs                                       # smbfs.sh
	python3-portalocker python3-locket python3-filelock  # the bench's Python peers
	qemu-system-x86 busybox-static kmod cpio file nfs-ganesha nfs-ganesha-vfs # qemu-nfs.sh
	wine64 gcc-mingw-w64-x86-64-win32                    # wine.sh
	postgresql pgbouncer                                 # postgres.sh
)
want=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || want+=("$p")
done
if [ ${#want[@]} -eq 0 ]; then
	say "every package is installed"
	exit 0
fi
apt-get -o DPkg::Lock::Timeout=300 update -qq >"$log" 2>&1 || true
apt_install "$log" "${want[@]}"
say "installed ${#want[@]} packages"
