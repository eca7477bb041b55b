#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Builds dlock's packages for Linux into dist/: a .deb and an .rpm (by
# nfpm, packaging/nfpm.yaml) and a tarball, each with the binary, the man
# page dlock(1), the bash, zsh and fish completions, the license and the
# changelog in their standard places.
#
#   scripts/package.sh                  for this machine's architecture
#   GOARCH=arm64 scripts/package.sh     another one (cross-compiled)
#   DLOCK_VERSION=0.1.0 scripts/package.sh
#
# The version is, unless DLOCK_VERSION gives it, the one Go stamps into the
# binary from git: a tag vX.Y.Z at HEAD, else a pseudo-version of the commit
# (0.0.0-YYYYMMDDhhmmss-COMMIT, "+dirty" with uncommitted changes). Needs
# go, git, gzip and tar; nfpm is built from the Go module proxy at the
# version pinned below (the first time about a minute).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

NFPM=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0
goarch=${GOARCH:-$(go env GOARCH)}
unset GOOS GOARCH   # the target's only for its binary: the tools run here
dist=$root/dist
stage=$dist/stage-$goarch
rm -rf "$stage"
mkdir -p "$stage/completions"
# This architecture's packages from an earlier run go.
case $goarch in amd64) rpmarch=x86_64 ;; arm64) rpmarch=aarch64 ;; *) rpmarch=$goarch ;; esac
rm -f "$dist"/dlock_*_"$goarch".deb "$dist"/dlock-*."$rpmarch".rpm "$dist"/dlock-*-linux-"$goarch".tar.gz

# The binary: static, reproducible paths, with the VCS revision and time
# in its build info (GOFLAGS may say -buildvcs=false; the flag wins).
CGO_ENABLED=0 GOOS=linux GOARCH=$goarch go build -buildvcs=true -trimpath -ldflags='-s -w' -o "$stage/dlock" ./cmd/dlock

# Man page and completions: rendered by a dlock for this machine (the
# target's may not run here), from the same source as the target's help.
go build -o "$stage/dlock-host" ./cmd/dlock
gzip -9n <cmd/dlock/dlock.1 >"$stage/dlock.1.gz"
"$stage/dlock-host" completion bash >"$stage/completions/dlock.bash"
"$stage/dlock-host" completion zsh >"$stage/completions/_dlock"
"$stage/dlock-host" completion fish >"$stage/completions/dlock.fish"

# The version, as Go stamped it (see the header).
version=${DLOCK_VERSION:-}
if [ -z "$version" ]; then
  version=$(go version -m "$stage/dlock" | awk '$1 == "mod" { print $3 }')
  if [ -z "$version" ] || [ "$version" = "(devel)" ]; then
    # No VCS stamp (a git worktree, or no git): the same form, from git.
    hash=$(git rev-parse --short=12 HEAD)
    when=$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y%m%d%H%M%S HEAD)
    version=v0.0.0-$when-$hash
    git diff --quiet HEAD || version+=+dirty
  fi
fi
version=${version#v}
rm "$stage/dlock-host"

# Documents. Debian: copyright in its machine-readable format, with the
# licenses of the modules linked into the binary; the changelog gzipped.
cp LICENSE CHANGELOG.md "$stage/"
cp cmd/dlock/README.md "$stage/README.md"
gzip -9n <CHANGELOG.md >"$stage/changelog.gz"
# The Debian changelog of this package (the upstream one is changelog.gz).
maintainer=$(sed -n 's/^maintainer: //p' packaging/nfpm.yaml)
{
  printf 'dlock (%s-1) unstable; urgency=medium\n\n' "$(printf %s "$version" | sed 's/-/~/')"
  printf '  * Built from commit %s of https://github.com/lockdir/dlock;\n' "$(git rev-parse --short=12 HEAD)"
  printf '    what changed is in /usr/share/doc/dlock/changelog.gz.\n\n'
  printf ' -- %s  %s\n' "$maintainer" "$(LC_ALL=C date -u -R -d "@$(git log -1 --format=%ct HEAD)")"
} | gzip -9n >"$stage/changelog.Debian.gz"
printf '%s\n' "dlock: statically-linked-binary [usr/bin/dlock]" \
  "dlock: initial-upload-closes-no-bugs *" >"$stage/lintian-overrides"   # not a package for the Debian archive
{
  cat <<'HEAD'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: dlock
Upstream-Contact: https://github.com/lockdir/dlock/issues
Source: https://github.com/lockdir/dlock

Files: *
Copyright: The dlock authors
License: Apache-2.0
 On Debian systems, the full text of the Apache License, Version 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
HEAD
  go version -m "$stage/dlock" | awk '$1 == "dep" { print $2, $3 }' | while read -r path ver; do
    dir=$(go list -m -f '{{.Dir}}' "$path" 2>/dev/null || true)
    lic=$(find "$dir" -maxdepth 1 -type f \( -iname 'LICENSE*' -o -iname 'COPYING*' \) 2>/dev/null | sort | head -1)
    if [ -z "$lic" ]; then
      echo "package.sh: no license file for $path $ver (go mod download first)" >&2
      exit 1
    fi
    printf '\nComment: %s %s is compiled into /usr/bin/dlock.\nFiles: */%s/*\nCopyright: see the license below\nLicense: %s\n' \
      "$path" "$ver" "$path" "$(bash scripts/licenses.sh classify "$lic")"
    sed -e 's/^[[:space:]]*$/./' -e 's/^/ /' "$lic"
  done
} >"$stage/copyright"

# .deb and .rpm; every file's time is the commit's (SOURCE_DATE_EPOCH), so
# that the same commit makes the same packages.
mtime=$(git log -1 --format=%ct HEAD)
export NFPM_ARCH=$goarch DLOCK_VERSION=$version SOURCE_DATE_EPOCH=$mtime
for fmt in deb rpm; do
  (cd "$stage" && go run "$NFPM" package --config "$root/packaging/nfpm.yaml" --packager "$fmt" --target "$dist/")
done

# The tarball: bin/ and share/, to unpack into /usr/local (or ~/.local):
#   tar -xzf dlock-VERSION-linux-ARCH.tar.gz -C /usr/local --strip-components=1
name=dlock-$version-linux-$goarch
tree=$dist/$name
rm -rf "$tree"
install -D -m 0755 "$stage/dlock" "$tree/bin/dlock"
install -D -m 0644 cmd/dlock/dlock.1 "$tree/share/man/man1/dlock.1"
install -D -m 0644 "$stage/completions/dlock.bash" "$tree/share/bash-completion/completions/dlock"
install -D -m 0644 "$stage/completions/_dlock" "$tree/share/zsh/site-functions/_dlock"
install -D -m 0644 "$stage/completions/dlock.fish" "$tree/share/fish/vendor_completions.d/dlock.fish"
install -D -m 0644 LICENSE "$tree/share/licenses/dlock/LICENSE"
install -D -m 0644 CHANGELOG.md "$tree/share/doc/dlock/CHANGELOG.md"
install -D -m 0644 cmd/dlock/README.md "$tree/share/doc/dlock/README.md"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$mtime" -C "$dist" -czf "$dist/$name.tar.gz" "$name"
rm -rf "$tree" "$stage"

ls -l "$dist"
