#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Installs a dlock .deb on this machine (as root), tries the installed
# dlock as a user would (run, status, hold/release, man dlock, the bash,
# zsh and fish completions), removes it and checks that nothing it
# installed is left behind. Refuses to touch a machine where a dlock
# package is already installed. Given the tarball and the .rpm too, it
# unpacks the tarball into a prefix and tries it there, and, where rpm is
# installed, installs the .rpm into a root of its own and removes it.
#
#   scripts/package-test.sh dist/dlock_*_amd64.deb [dist/dlock-*-linux-amd64.tar.gz] [dist/dlock-*.x86_64.rpm]
set -euo pipefail
deb="" tarball="" rpmfile=""
for f in "$@"; do
  case $f in
    *.deb) deb=$f ;;
    *.tar.gz) tarball=$f ;;
    *.rpm) rpmfile=$f ;;
    *) echo "package-test: $f: not a .deb, .tar.gz or .rpm" >&2; exit 2 ;;
  esac
done
[ -n "$deb" ] || { echo "usage: scripts/package-test.sh PACKAGE.deb [TARBALL.tar.gz] [PACKAGE.rpm]" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "package-test: needs root (dpkg -i)" >&2; exit 1; }
if dpkg-query -W -f '${Status}' dlock 2>/dev/null | grep -q 'install ok'; then
  echo "package-test: a dlock package is installed already; not touching it" >&2
  exit 1
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/dlock-package-test.XXXXXX")
cleanup() {
  dpkg -r dlock >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "package-test: FAILED: $*" >&2; exit 1; }

# What the package ships, and which of those paths exist before it.
dpkg-deb -c "$deb" | awk '{print substr($6, 2)}' | sed 's|/$||' | grep -v '^$' >"$work/paths"
while read -r p; do [ -e "$p" ] && echo "$p"; done <"$work/paths" >"$work/before" || true

dpkg -i "$deb" >/dev/null
echo "installed: $(dpkg-query -W -f '${Package} ${Version} ${Architecture}' dlock)"
[ "$(command -v dlock)" = /usr/bin/dlock ] || fail "dlock is not /usr/bin/dlock: $(command -v dlock)"
dlock version
dlock -V | head -1 | grep -q '^dlock ' || fail "dlock -V"
dlock version -json | grep -q '"go":"go' || fail "dlock version -json"

# dlock run and status, as a user would (not as root: nobody's locks).
lock=$work/locks/job
mkdir -p "$work/locks" && chmod 0777 "$work" "$work/locks"
as() { if command -v runuser >/dev/null; then runuser -u nobody -- "$@"; else "$@"; fi; }
as dlock run "$lock" -- sh -c 'dlock status "$DLOCK_PATH"; test $? = 3 && test -n "$DLOCK_FENCE"' ||
  fail "dlock run: inside, the lock was not held (dlock status exit 3)"
code=0; as dlock run -n "$lock" -- sh -c 'dlock run -n -q "$DLOCK_PATH" -- true' || code=$?
[ "$code" = 75 ] || fail "a second dlock run -n on a held lock: exit $code, want 75"
as dlock status "$lock" || fail "dlock status after the run: exit $?, want 0 (free)"
out=$(as dlock hold -n -pid $$ "$lock") && eval "$out"
dlock status -q "$lock" && fail "dlock hold: the lock is free"
as dlock release
as dlock status -q "$lock" || fail "dlock release: the lock is still held"
echo "dlock run, status, hold, release: ok"

# man dlock, from the installed page.
[ "$(man -w dlock)" = /usr/share/man/man1/dlock.1.gz ] || fail "man -w dlock: $(man -w dlock 2>&1)"
MANWIDTH=80 MANPAGER=cat man --warnings dlock >"$work/man.txt" 2>"$work/man.err" || fail "man dlock: $(cat "$work/man.err")"
[ ! -s "$work/man.err" ] || fail "man dlock warns: $(cat "$work/man.err")"
grep -q 'EXIT STATUS' "$work/man.txt" && grep -q 'dlock run' "$work/man.txt" || fail "man dlock shows no EXIT STATUS or dlock run"
echo "man dlock: ok ($(wc -l <"$work/man.txt") lines)"

# Completion, from where each shell finds it by itself.
got=$(bash -c 'source /usr/share/bash-completion/completions/dlock
  COMP_WORDS=(dlock status -j); COMP_CWORD=2; _dlock; echo "${COMPREPLY[*]}"
  COMP_WORDS=(dlock st); COMP_CWORD=1; _dlock; echo "${COMPREPLY[*]}"')
[ "$got" = $'-json\nstatus' ] || fail "bash completion: $got"
if [ -f /usr/share/bash-completion/bash_completion ]; then
  # bash-completion's loader finds it by the command's name.
  got=$(bash -c 'source /usr/share/bash-completion/bash_completion; __load_completion dlock && complete -p dlock' 2>&1) ||
    fail "bash-completion does not load the completion: $got"
fi
echo "bash completion: ok"
if command -v zsh >/dev/null; then
  got=$(zsh -fc 'autoload -U compinit; compinit -u -d '"$work"'/zcompdump; print -r -- $_comps[dlock]')
  [ "$got" = _dlock ] || fail "zsh does not find _dlock in its fpath: $got"
  echo "zsh completion: ok"
fi
if command -v fish >/dev/null; then
  got=$(HOME=$work XDG_CONFIG_HOME=$work fish -c 'complete -C "dlock run -sto"' | cut -f1)
  [ "$got" = -stop-leftovers ] || fail "fish completion: $got"
  echo "fish completion: ok"
fi

# Removal leaves nothing behind.
dpkg -r dlock >/dev/null
if dpkg-query -W -f '${Status}' dlock 2>/dev/null | grep -q 'install ok'; then fail "dpkg -r: still installed"; fi
left=$(while read -r p; do if [ -e "$p" ] && ! grep -qxF "$p" "$work/before"; then echo "$p"; fi; done <"$work/paths")
[ -z "$left" ] || fail "left behind after dpkg -r: $left"
ls /var/lib/dpkg/info/dlock.* >/dev/null 2>&1 && fail "dpkg's records of dlock are left: $(ls /var/lib/dpkg/info/dlock.*)"
hash -r; command -v dlock >/dev/null && fail "dlock is still on PATH after dpkg -r: $(command -v dlock)"
echo "dpkg -r: nothing left behind ($(wc -l <"$work/paths") paths checked)"

# The tarball, unpacked into a prefix as the README says (-C /usr/local).
if [ -n "$tarball" ]; then
  prefix=$work/prefix
  mkdir -p "$prefix"
  tar -xzf "$tarball" -C "$prefix" --strip-components=1
  [ "$(find "$prefix" -maxdepth 1 -mindepth 1 -printf '%f\n' | sort | tr '\n' ' ')" = "bin share " ] ||
    fail "tarball: its top holds more than bin/ and share/: $(ls "$prefix")"
  "$prefix/bin/dlock" -V | head -1 | grep -q '^dlock ' || fail "tarball: bin/dlock -V"
  MANWIDTH=80 MANPAGER=cat man --warnings -M "$prefix/share/man" dlock >"$work/tman.txt" 2>"$work/tman.err" || fail "tarball: man: $(cat "$work/tman.err")"
  [ ! -s "$work/tman.err" ] && grep -q 'EXIT STATUS' "$work/tman.txt" || fail "tarball: man -M PREFIX/share/man dlock: $(cat "$work/tman.err")"
  got=$(bash -c 'source "$1"; COMP_WORDS=(dlock st); COMP_CWORD=1; _dlock; echo "${COMPREPLY[*]}"' bash "$prefix/share/bash-completion/completions/dlock")
  [ "$got" = status ] || fail "tarball: bash completion: $got"
  for f in share/zsh/site-functions/_dlock share/fish/vendor_completions.d/dlock.fish share/licenses/dlock/LICENSE share/doc/dlock/CHANGELOG.md; do
    [ -s "$prefix/$f" ] || fail "tarball: no $f"
  done
  echo "tarball: ok (bin/dlock, man -M, bash completion, zsh, fish, license, changelog)"
fi

# The .rpm, into a root of its own (this is no RPM system): every file it
# lists is installed, dlock runs, and rpm -e takes every file away.
if [ -n "$rpmfile" ]; then
  if command -v rpm >/dev/null; then
    rroot=$work/rpmroot
    mkdir -p "$rroot"
    rpm -qlp "$rpmfile" 2>/dev/null >"$work/rpm.paths"
    rpm -i --root="$rroot" --nodeps "$rpmfile" 2>"$work/rpm.err" || fail "rpm -i: $(cat "$work/rpm.err")"
    while read -r p; do [ -e "$rroot$p" ] || fail "rpm -i: $p is not installed"; done <"$work/rpm.paths"
    "$rroot/usr/bin/dlock" -V | head -1 | grep -q '^dlock ' || fail "rpm: /usr/bin/dlock -V"
    [ "$(rpm -q --root="$rroot" --qf '%{LICENSE}' dlock 2>/dev/null)" = Apache-2.0 ] || fail "rpm: License is not Apache-2.0"
    rpm -e --root="$rroot" dlock 2>"$work/rpm.err" || fail "rpm -e: $(cat "$work/rpm.err")"
    while read -r p; do [ ! -e "$rroot$p" ] || fail "rpm -e left $p"; done <"$work/rpm.paths"
    echo "rpm: ok ($(wc -l <"$work/rpm.paths") files installed into a root of its own and removed)"
  else
    echo "rpm: SKIPPED (no rpm here to install the .rpm with)"
  fi
fi
