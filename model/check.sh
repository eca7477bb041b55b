#!/usr/bin/env bash
# check.sh - model-check model/dlock.pml with spin (exhaustive search).
#
# Runs nine checks and exits non-zero if any of them does not end as
# expected:
#   safety      asserts (a) (b) (c) (d) in every reachable state        -> must hold
#   lossdetect  LTL claim `lossdetect`, plus the asserts                 -> must hold
#   ambig       -DAMBIG -DNO_FL: renames that took effect may report an
#               error, resolved by looking for the target (move())      -> must hold
#   ambig-fl    -DAMBIG: ...but then Unlock can report a false ErrLost  -> must fail
#   broken-d    -DBROKEN: the peers' delete-then-create scheme          -> (d) must fail
#   broken-ab   -DBROKEN -DNO_D                                         -> (a)/(b) must fail
#   broken-c    -DBROKEN -DNO_D -DNO_AB                                 -> (c) must fail
#   broken-ltl  -DBROKEN, asserts ignored (-A): the claim alone        -> must fail
#   hb-touch    -DHB_TOUCH: heartbeat by mtime only, name kept          -> (d) must fail
# The expected failures prove that each check can fail. No -DCOLLAPSE or -DBITSTATE: the full
# state space (a few million states) is stored exactly.
#
# Needs spin and gcc (Debian: apt-get install spin gcc); installs nothing.
# DEFS="-DN=3 -DMAXACQ=4 -DMAXHB=2" (the defaults; passed to spin only)
# changes the bounds. The LTL claim names processes 0-2 only.
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

# run NAME EXPECT(pass|fail) PATTERN "SPIN-DEFS" "GCC-FLAGS" "PAN-FLAGS" DESCRIPTION
# EXPECT fail: pan must report an error whose line matches PATTERN (ERE).
# Writes its report to NAME/report and "ok" or "FAIL" to NAME/verdict.
run() {
	local name=$1 expect=$2 pattern=$3 sdefs=$4 cflags=$5 pflags=$6 desc=$7 out errors t verdict
	mkdir -p "$name"
	cp dlock.pml "$name/"
	cd "$name"
	exec >report 2>&1
	echo "== $name: $desc"
	echo "   spin ${DEFS:+$DEFS }${sdefs:+$sdefs }-a dlock.pml; gcc -O2${cflags:+ $cflags} pan.c; ./pan${pflags:+ $pflags}"
	# shellcheck disable=SC2086
	if ! spin ${defs[@]+"${defs[@]}"} $sdefs -a dlock.pml >spin.out 2>&1 ||
		! gcc -O2 -w $cflags -o pan pan.c >gcc.out 2>&1; then
		cat spin.out gcc.out 2>/dev/null
		echo "   spin -a or gcc failed -> FAIL"
		echo FAIL >verdict
		return
	fi
	t=$SECONDS
	# shellcheck disable=SC2086
	out=$(./pan $pflags 2>&1) || true
	t=$((SECONDS - t))
	printf '%s\n' "$out" >pan.out
	errors=$(printf '%s\n' "$out" | sed -n 's/.*errors: \([0-9][0-9]*\).*/\1/p' | tail -n1)
	printf '%s\n' "$out" | grep -E 'State-vector|states, stored|transitions \(|^pan:[0-9]+:' | sed 's/^ */   /' || true
	if printf '%s\n' "$out" | grep -q 'max search depth too small'; then
		echo "   search depth limit reached: the search was not exhaustive"
		errors=""
	fi
	case $expect in
	pass) [ "$errors" = 0 ] && verdict=ok || verdict=FAIL ;;
	fail)
		verdict=FAIL
		if [ -n "$errors" ] && [ "$errors" != 0 ]; then
			if printf '%s\n' "$out" | grep -E '^pan:[0-9]+:' | grep -qE "$pattern"; then
				verdict=ok
			else
				echo "   a violation, but not the expected one (/$pattern/)"
			fi
		fi
		;;
	esac
	if [ "$expect" = fail ] && [ "$verdict" = ok ] && [ "${pflags#*-A}" = "$pflags" ]; then
		# replay the counterexample to name the failed assertion
		# shellcheck disable=SC2086
		spin ${defs[@]+"${defs[@]}"} $sdefs -t dlock.pml 2>&1 | grep -E 'text of failed assertion' | head -n 1 | sed 's/^spin: /   trail: /' || true
	fi
	echo "   errors: ${errors:-?} (expected: $([ "$expect" = pass ] && echo none || echo a violation)), ${t}s -> $verdict"
	echo "$verdict" >verdict
}

echo "dlock protocol model: dlock.pml${DEFS:+ ($DEFS)}, exhaustive search, no state compression"
echo

# The three long searches run side by side (2 cores), the short ones after.
(run safety pass "" "" "-DSAFETY -DNOCLAIM" "-m200000" \
	"(a) one current holder, late heartbeat/release never succeeds; (b) loss detected, no false loss; (c) fences rise; (d) no ABA") &
(run lossdetect pass "" "" "" "-a -m200000" \
	"(b) as LTL: once reclaimed while holding, a holder stays so until the step that tells it (weak until)") &
(run ambig pass "" "-DAMBIG -DNO_FL" "-DSAFETY -DNOCLAIM" "-m200000" \
	"(a) (b) (c) (d) when a rename that took effect may report an error, resolved by Lstat of the target (move()); the false-ErrLost assert is off") &
wait
# Breadth-first (-DBFS): the shortest counterexample.
(run broken-d fail 'gen==ogen' "-DBROKEN" "-DSAFETY -DNOCLAIM -DBFS" "" \
	"the peers' scheme (reclaim = delete by path, then create; heartbeat/release by path): (d) must fail")
(run broken-ab fail 'ousted|ncur_' "-DBROKEN -DNO_D" "-DSAFETY -DNOCLAIM -DBFS" "" \
	"the same without the (d) asserts: (a)/(b) must fail (a reclaimed holder's heartbeat or release succeeds)")
(run broken-c fail 'lastfence' "-DBROKEN -DNO_D -DNO_AB" "-DSAFETY -DNOCLAIM -DBFS" "" \
	"the same with only the (c) asserts: double reclaim grants one fence twice, (c) must fail")
(run broken-ltl fail 'acceptance cycle' "-DBROKEN" "" "-a -A -m200000" \
	"the peers' scheme, asserts ignored (-A): the LTL claim lossdetect itself must be violated")
(run ambig-fl fail 'pend==2' "-DAMBIG" "-DSAFETY -DNOCLAIM -DBFS" "" \
	"ambiguous release: a waiter acquires free.E before the Lstat, so Unlock reports ErrLost for a release that happened")
(run hb-touch fail 'gen==ogen' "-DHB_TOUCH" "-DSAFETY -DNOCLAIM -DBFS" "" \
	"heartbeat refreshes mtime but keeps the name: an old judgement reclaims a live holder, (d) must fail")

for name in safety lossdetect ambig broken-d broken-ab broken-c broken-ltl ambig-fl hb-touch; do
	[ "$name" = broken-d ] && echo "-- expected failures: they prove the checks can fail"
	cat "$name/report" 2>/dev/null || echo "== $name: no report"
	[ "$(cat "$name/verdict" 2>/dev/null)" = ok ] || failed=1
done
echo
if [ $failed -eq 0 ]; then
	echo "ALL CHECKS AS EXPECTED ($((SECONDS - t_all))s)"
else
	echo "SOME CHECKS FAILED ($((SECONDS - t_all))s)"
fi
exit $failed
