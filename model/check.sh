#!/usr/bin/env bash
# check.sh - model-check model/dlock.pml with spin (exhaustive search).
#
# Runs five checks and exits non-zero if any of them does not end as
# expected:
#   1. safety           asserts (a) (b) (c) (d) in every reachable state   -> must hold
#   2. loss detection   LTL claim `lossdetect`, plus the asserts            -> must hold
#   3. -DBROKEN safety  the peers' delete-then-create scheme               -> must FAIL
#   4. -DBROKEN LTL     same, asserts ignored (-A): the claim alone       -> must FAIL
#   5. -DHB_TOUCH       heartbeat by mtime only, name kept                -> must FAIL (d)
# 3-5 prove that the checks can fail. No -DCOLLAPSE or -DBITSTATE: the full
# state space (a few million states) is stored exactly.
#
# Needs spin and gcc (Debian: apt-get install spin gcc); installs nothing.
# DEFS="-DN=3 -DMAXACQ=4 -DMAXHB=2" (the defaults) changes the bounds.
# KEEP=1 keeps the build directory (trails of the expected failures).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
model=$here/dlock.pml
DEFS=${DEFS:-}
# shellcheck disable=SC2206
defs=($DEFS)

for tool in spin gcc; do
	command -v "$tool" >/dev/null 2>&1 || { echo "check.sh: $tool not found (Debian: apt-get install spin gcc)" >&2; exit 2; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/dlock-model.XXXXXX")
if [ "${KEEP:-0}" = 1 ]; then
	echo "build directory: $work"
else
	trap 'rm -rf "$work"' EXIT
fi
cp "$model" "$work/dlock.pml"
cd "$work"

failed=0
t_all=$SECONDS

# run NAME EXPECT(pass|fail) "SPIN-DEFS" "GCC-FLAGS" "PAN-FLAGS" DESCRIPTION
run() {
	local name=$1 expect=$2 sdefs=$3 cflags=$4 pflags=$5 desc=$6 out errors t verdict
	mkdir -p "$name"
	cp dlock.pml "$name/"
	(
		cd "$name"
		# shellcheck disable=SC2086
		spin ${defs[@]+"${defs[@]}"} $sdefs -a dlock.pml >spin.out 2>&1 || { cat spin.out; exit 1; }
		# shellcheck disable=SC2086
		gcc -O2 -w ${defs[@]+"${defs[@]}"} $sdefs $cflags -o pan pan.c
	) || { echo "FAIL  $name: spin -a or gcc failed"; failed=1; return; }
	echo "== $name: $desc"
	echo "   spin $DEFS $sdefs -a; gcc -O2 $cflags; ./pan $pflags"
	t=$SECONDS
	# shellcheck disable=SC2086
	out=$(cd "$name" && ./pan $pflags 2>&1) || true
	t=$((SECONDS - t))
	printf '%s\n' "$out" >"$name/pan.out"
	errors=$(printf '%s\n' "$out" | sed -n 's/.*errors: \([0-9][0-9]*\).*/\1/p' | tail -n1)
	printf '%s\n' "$out" | grep -E 'State-vector|states, stored|transitions|^pan:[0-9]+:' | sed 's/^/   /' || true
	if printf '%s\n' "$out" | grep -q 'max search depth too small'; then
		echo "   search depth limit reached: the search was not exhaustive"
		errors=""
	fi
	case $expect in
	pass) [ "$errors" = 0 ] && verdict=ok || verdict=FAIL ;;
	fail) [ -n "$errors" ] && [ "$errors" != 0 ] && verdict=ok || verdict=FAIL ;;
	esac
	if [ "$expect" = fail ] && [ -n "$errors" ] && [ "$errors" != 0 ]; then
		# replay the counterexample: the steps of the processes, no bookkeeping
		(cd "$name" && spin ${defs[@]+"${defs[@]}"} $sdefs -t dlock.pml 2>&1 | grep -E 'assertion|violated|acceptance' | head -n 3 | sed 's/^/   trail: /') || true
	fi
	echo "   errors: ${errors:-?} (expected: $([ "$expect" = pass ] && echo none || echo a violation)), ${t}s -> $verdict"
	[ "$verdict" = ok ] || failed=1
}

echo "dlock protocol model: $model ${DEFS:+($DEFS)}"
echo

run safety pass "" "-DSAFETY -DNOCLAIM" "-m200000" \
	"(a) one current holder, late heartbeat/release never succeeds; (b) loss detected, no false loss; (c) fences rise; (d) no ABA"
run lossdetect pass "" "" "-a -m200000" \
	"(b) as LTL: once reclaimed while holding, a holder stays so until the step that tells it (weak until)"
echo "-- expected failures: prove the checks can fail"
run broken fail "-DBROKEN" "-DSAFETY -DNOCLAIM -DBFS" "" \
	"peers' scheme (reclaim = delete by path + create; heartbeat/release by path) must violate an assert"
run broken-ltl fail "-DBROKEN" "" "-a -A -m200000" \
	"peers' scheme, asserts ignored: the LTL claim itself must be violated"
run hb-touch fail "-DHB_TOUCH" "-DSAFETY -DNOCLAIM -DBFS" "" \
	"heartbeat refreshes mtime but keeps the name: a waiter's old judgement reclaims a live holder, (d) must fail"

echo
if [ $failed -eq 0 ]; then
	echo "ALL CHECKS AS EXPECTED ($((SECONDS - t_all))s)"
else
	echo "SOME CHECKS FAILED ($((SECONDS - t_all))s)"
fi
exit $failed
