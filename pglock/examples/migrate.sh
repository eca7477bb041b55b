#!/usr/bin/env bash
# migrate.sh DATABASE_URL [REPLICAS] - the guide's pattern, runnable: every
# replica of an application runs the same migration at start, under
# `dlock run "$DATABASE_URL#migrate"`. One applies the migrations, the
# others wait for the lock and then find nothing to do. Afterwards it
# checks that each migration was applied exactly once, and shows the fences.
#
#   eval "$(sudo scripts/postgres.sh up)"
#   pglock/examples/migrate.sh "$PGLOCK_TEST_BOUNCER" 4     # through PgBouncer
#
# Needs dlock on PATH (or DLOCK=path/to/dlock) and psql. It drops and
# recreates the example's tables (accounts, orders, app_migrations,
# migration_fence) in that database: use a scratch database.
set -euo pipefail
url=${1:?usage: migrate.sh DATABASE_URL [REPLICAS]}
n=${2:-4}
here=$(cd "$(dirname "$0")" && pwd)
dlock=${DLOCK:-dlock}
psql "$url" -X -q -v ON_ERROR_STOP=1 -c 'SET LOCAL client_min_messages = warning' -c 'DROP TABLE IF EXISTS orders, accounts, app_migrations, migration_fence' --single-transaction
pids=()
for i in $(seq "$n"); do
	# what each replica's entrypoint does before exec'ing its server
	"$dlock" run -stale-after 10 -w 120 "$url#migrate-example" -- bash "$here/migrate-tool.sh" "$url" 2>&1 | sed "s/^/replica $i: /" &
	pids+=($!)
done
fail=0
for p in "${pids[@]}"; do wait "$p" || fail=1; done
[ $fail = 0 ] || { echo "a replica failed" >&2; exit 1; }
psql "$url" -X -q -v ON_ERROR_STOP=1 -c 'SELECT version, fence, applied FROM app_migrations ORDER BY version'
applied=$(psql "$url" -X -At -c 'SELECT count(*) FROM app_migrations')
files=$(ls "$here"/migrations/*.sql | wc -l)
if [ "$applied" != "$files" ]; then
	echo "FAIL: $applied migrations recorded, $files files" >&2
	exit 1
fi
echo "ok: $n replicas, $files migrations, each applied once"
