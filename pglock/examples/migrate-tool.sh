#!/usr/bin/env bash
# migrate-tool.sh DATABASE_URL - a tiny migration tool: applies the files in
# migrations/ not yet recorded in app_migrations, each in one transaction
# that first checks the lock's fence (DLOCK_FENCE, set by dlock run) against
# the largest one any migrator has recorded. A migrator that lost the lock
# (paused past its deadline) and runs on stops there instead of writing
# over its successor's work. Any tool works the same way (goose's ENVSUB,
# Flyway's placeholders, golang-migrate's templates): see ../README.md.
set -euo pipefail
url=$1
here=$(cd "$(dirname "$0")" && pwd)
: "${DLOCK_FENCE:?run me under dlock run, which sets DLOCK_FENCE}"
psql=(psql "$url" -X -q -v ON_ERROR_STOP=1 -v fence="$DLOCK_FENCE")
# (every psql call is one transaction: no session state survives PgBouncer's
# transaction pooling, so SET LOCAL, never SET)
"${psql[@]}" --single-transaction <<'SQL'
SET LOCAL client_min_messages = warning;
CREATE TABLE IF NOT EXISTS app_migrations (version text PRIMARY KEY, fence bigint NOT NULL, applied timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS migration_fence (id int PRIMARY KEY CHECK (id = 1), fence bigint NOT NULL);
INSERT INTO migration_fence VALUES (1, 0) ON CONFLICT DO NOTHING;
CREATE OR REPLACE FUNCTION migration_fence_check(f bigint) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	UPDATE migration_fence SET fence = f WHERE id = 1 AND fence <= f;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'a newer migrator (fence above %) has run: stopping', f;
	END IF;
END $$;
SQL
for f in "$here"/migrations/*.sql; do
	v=$(basename "$f" .sql)
	done_already=$("${psql[@]}" -At -c "SELECT 1 FROM app_migrations WHERE version = '$v'")
	[ -z "$done_already" ] || continue
	echo "migrate-tool (pid $$, fence $DLOCK_FENCE): applying $v"
	{
		echo "SELECT migration_fence_check(:fence) \\g /dev/null"
		cat "$f"
		echo "INSERT INTO app_migrations (version, fence) VALUES ('$v', :fence);"
	} | "${psql[@]}" --single-transaction -f -
done
echo "migrate-tool (pid $$, fence $DLOCK_FENCE): up to date"
