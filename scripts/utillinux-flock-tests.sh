#!/usr/bin/env bash
# Runs util-linux's own flock(1) tests (tests/ts/flock/{flock,close,unlock})
# against a flock command: dlock's flock personality by default.
#
#   scripts/utillinux-flock-tests.sh UTIL_LINUX_SRC [FLOCK]
#
# UTIL_LINUX_SRC is a util-linux source tree (git clone
# https://github.com/util-linux/util-linux); its tests are GPL and are not
# part of this repository. FLOCK is the command to test (default: a
# "flock" symlink to a dlock built from this tree). The tests run in a
# scratch copy of UTIL_LINUX_SRC/tests; expected outputs are compared byte
# for byte by util-linux's own functions.sh. Exit status: the number of
# failed tests (0: all passed). Needs bash, perl, pgrep and timeout.
#
# A util-linux tree with just its tests:
#   git clone --depth 1 --filter=blob:none --sparse https://github.com/util-linux/util-linux
#   git -C util-linux sparse-checkout set tests
set -u
src=${1:?usage: $0 UTIL_LINUX_SRC [FLOCK]}
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/ul-flock.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp -r "$src/tests" "$work/tests"
if [ $# -ge 2 ]; then
	ln -s "$(command -v "$2")" "$work/flock"
else
	(cd "$here" && go build -o "$work/dlock" ./cmd/dlock) || exit 99
	ln -s dlock "$work/flock"
fi
# The close test's helper: strerror(3) of an errno name.
cat >"$work/test_strerror" <<'EOS'
#!/usr/bin/perl
use POSIX;
$! = &{"POSIX::$ARGV[0]"}();
print "$!\n";
EOS
chmod +x "$work/test_strerror"
failed=0
for t in flock close unlock; do
	# --use-system-commands would take flock from PATH: the build dir is
	# the scratch dir, where "flock" is the command under test.
	(cd "$work/tests" && TS_CMD_FLOCK="$work/flock" bash "ts/flock/$t" --builddir="$work" --nolocks --show-diff) || failed=$((failed + 1))
done
exit $failed
