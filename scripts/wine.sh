#!/usr/bin/env bash
# scripts/wine.sh: dlock's tests as Windows programs under Wine.
#
#   scripts/wine.sh [PACKAGE...]     default: . ./internal/... ./cmd/...
#
# Installs Debian's wine64 and the mingw-w64 C compiler if missing (as root),
# makes a Wine prefix of its own, builds the ProcessPrng shim (see
# scripts/wine/processprng.c: Go >= 1.22 needs it, Wine 8 lacks it), builds
# each package's tests with GOOS=windows go test -c, and runs every
# top-level test on its own under Wine, with its own time limit, so that a
# hang fails loudly as that test instead of eating the run. Tests that
# re-execute the test binary get real Windows processes (same wineserver).
# Prints each failure's output and skip's reason, and pass/skip/fail counts;
# a test that fails is run once more, and one that then passes is counted
# and printed as flaky. Exits 1 if any test failed twice or timed out.
#
# What it proves: dlock's Windows code paths (process identity and
# liveness, the directory calls, the watcher through ReadDirectoryChangesW,
# dlock run's job object). Wine's filesystem calls are Linux's underneath:
# nothing here says anything about NTFS or SMB semantics.
#
# Environment: WINE_TEST_TIMEOUT seconds per test (default 60);
# WINE_KEEP=1 keeps the work directory (prefix, binaries, logs).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
per_test=${WINE_TEST_TIMEOUT:-60}

wine=""
for w in /usr/lib/wine/wine64 "$(command -v wine64 || true)"; do
  if [ -n "$w" ] && [ -x "$w" ]; then wine=$w; break; fi
done
if [ -z "$wine" ] || ! command -v x86_64-w64-mingw32-gcc >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "wine.sh: needs wine64 and gcc-mingw-w64-x86-64-win32 (apt-get install, as root)" >&2
    exit 2
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends wine64 gcc-mingw-w64-x86-64-win32 >/dev/null ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends wine64 gcc-mingw-w64-x86-64-win32 >/dev/null; }
  wine=/usr/lib/wine/wine64
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/dlock-wine.XXXXXX")
export WINEPREFIX=$work/prefix WINEDEBUG=-all WINEDLLOVERRIDES='mscoree,mshtml='
wineserver=$(dirname "$wine")/wineserver
[ -x "$wineserver" ] || wineserver=$(command -v wineserver || echo wineserver)
cleanup() {
  "$wineserver" -k >/dev/null 2>&1 || true
  if [ "${WINE_KEEP:-}" = 1 ]; then echo "wine.sh: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

echo "wine: $("$wine" --version 2>/dev/null || echo unknown), prefix of its own, $per_test s per test"
"$wine" wineboot -i >/dev/null 2>&1 || true
x86_64-w64-mingw32-gcc -shared -O2 -o "$work/bcryptprimitives.dll" scripts/wine/processprng.c -ladvapi32
cp "$work/bcryptprimitives.dll" "$WINEPREFIX/drive_c/windows/system32/"

pkgs=("$@")
[ ${#pkgs[@]} -gt 0 ] || pkgs=(. ./internal/... ./cmd/...)
mkdir -p "$work/bin" "$work/log"
# -tags wine -ldflags=-checklinkname=0: internal/wine/removeall_wine.go (t.TempDir's cleanup under Wine 8).
mapfile -t dirs < <(GOOS=windows GOARCH=amd64 go list -tags wine -f '{{if or .TestGoFiles .XTestGoFiles}}{{.Dir}}{{end}}' "${pkgs[@]}")
pass=0 skip=0 fail=0 flakes=0 failed=() flaky=()
for dir in "${dirs[@]}"; do
  rel=${dir#"$root"}; rel=.${rel}
  exe="$work/bin/$(echo "$rel" | tr -c 'A-Za-z0-9\n' _).test.exe"
  GOOS=windows GOARCH=amd64 go test -c -tags wine -ldflags=-checklinkname=0 -o "$exe" "$rel"
  mapfile -t tests < <(cd "$dir" && "$wine" "$exe" -test.list '.*' | tr -d '\r' | grep -E '^(Test|Example|Fuzz)')
  p=0 s=0 f=0 k=0 start=$SECONDS
  for t in "${tests[@]}"; do
    log="$work/log/$(basename "$exe").$t.log"
    rc=0
    (cd "$dir" && timeout -k 5 "$per_test" "$wine" "$exe" -test.run "^$t\$" -test.v -test.count=1 \
      -test.timeout "$((per_test - 5))s" >"$log" 2>&1) || rc=$?
    tr -d '\r' <"$log" >"$log.txt"
    if [ "$rc" = 0 ] && grep -q -- "^--- SKIP: $t " "$log.txt"; then
      s=$((s + 1))
      echo "SKIP $rel $t: $(grep -A3 -- "^=== RUN   $t\$" "$log.txt" | grep -m1 -E '^ +[a-z_]+\.go:[0-9]+:' | sed -E 's/^ +//')"
    elif [ "$rc" = 0 ]; then
      p=$((p + 1))
      # Subtests that skipped (the test passed): their reasons too.
      grep -E -- "^ +--- SKIP: " "$log.txt" | while read -r _ _ sub _; do
        echo "skip $rel $sub: $(grep -A3 -- "^=== RUN   $sub\$" "$log.txt" | grep -m1 -E '^ +[a-z_]+\.go:[0-9]+:' | sed -E 's/^ +//')"
      done || true
    else
      "$wineserver" -k >/dev/null 2>&1 || true   # no process of the failed test lingers into the next
      # A failure that is not a timeout is tried once more: one that then
      # passes is a flake, printed in full and counted apart (flakes under
      # load are bugs too, but not this lane's to fail on).
      rc2=1
      if [ "$rc" != 124 ] && [ "$rc" != 137 ]; then
        (cd "$dir" && timeout -k 5 "$per_test" "$wine" "$exe" -test.run "^$t\$" -test.v -test.count=1 \
          -test.timeout "$((per_test - 5))s" >"$log.2" 2>&1) && rc2=0 || rc2=$?
      fi
      if [ "$rc2" = 0 ]; then
        k=$((k + 1)); flaky+=("$rel $t")
        echo "FLAKY $rel $t: failed (exit $rc), then passed:"
      else
        f=$((f + 1)); failed+=("$rel $t")
        if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then echo "TIMEOUT $rel $t: killed after $per_test s"; else echo "FAIL $rel $t (exit $rc, and $rc2 again):"; fi
        "$wineserver" -k >/dev/null 2>&1 || true
      fi
      tail -n 40 "$log.txt" | sed 's/^/    /'
    fi
  done
  echo "$rel: $p passed, $s skipped, $f failed, $k flaky ($((SECONDS - start)) s)"
  pass=$((pass + p)) skip=$((skip + s)) fail=$((fail + f)) flakes=$((flakes + k))
done
# The programs themselves, as a user on Windows runs them: dlock run with
# a Windows command, and the demo (3 workers; its stopped-holder scene
# needs POSIX signals and is left out on Windows).
smoke() { # NAME COMMAND...: run under Wine, 120 s at most, counted as a test
  local name=$1; shift
  local log="$work/log/smoke.$name.txt" rc=0
  timeout -k 5 120 "$@" >"$log" 2>&1 || rc=$?
  tr -d '\r' <"$log" >"$log.2"
  if [ "$rc" = 0 ]; then pass=$((pass + 1)); echo "ok   smoke $name: $(tail -n 1 "$log.2")"
  else fail=$((fail + 1)); failed+=("smoke $name"); echo "FAIL smoke $name (exit $rc):"; tail -n 30 "$log.2" | sed 's/^/    /'; fi
}
GOOS=windows GOARCH=amd64 go build -o "$work/bin/dlock.exe" ./cmd/dlock
GOOS=windows GOARCH=amd64 go build -o "$work/bin/dlockdemo.exe" ./cmd/dlockdemo
mkdir -p "$work/smoke"
winpath() { echo "Z:$(echo "$1" | tr / '\\')"; }
smoke dlock-version "$wine" "$work/bin/dlock.exe" version
smoke dlock-run sh -c '"$1" "$2" run "$3" -- cmd /c echo hi from cmd under dlock | tee /dev/stderr | grep -q "hi from cmd"' _ \
  "$wine" "$work/bin/dlock.exe" "$(winpath "$work/smoke/a.lock")"
smoke dlock-run-status sh -c '"$1" "$2" run "$3" -- cmd /c exit 3; test $? = 3' _ \
  "$wine" "$work/bin/dlock.exe" "$(winpath "$work/smoke/a.lock")"
smoke dlock-status "$wine" "$work/bin/dlock.exe" status "$(winpath "$work/smoke/a.lock")"
smoke dlockdemo "$wine" "$work/bin/dlockdemo.exe" -workers 3 -rounds 5 -timeout 1s -plain -dir "$(winpath "$work/smoke")"

echo "wine: $pass passed, $skip skipped, $fail failed, $flakes flaky (failed once, passed when run again)"
[ "$flakes" = 0 ] || printf 'flaky: %s\n' "${flaky[@]}"
if [ "$fail" -gt 0 ]; then
  printf 'failed: %s\n' "${failed[@]}"
  exit 1
fi
