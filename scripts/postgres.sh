#!/usr/bin/env bash
# postgres.sh - a throwaway PostgreSQL server and a PgBouncer in front of it
# (pool_mode = transaction), for pglock's tests.
#
#   eval "$(scripts/postgres.sh up [STATE])"   # prints export lines (PGLOCK_TEST_*)
#   scripts/postgres.sh status [STATE]         # exit 0 up, 1 partly up, 3 down
#   scripts/postgres.sh restart [STATE]        # pg_ctl restart -m fast (a fault for the tests)
#   scripts/postgres.sh down [STATE]
#
# Both run as the user postgres (neither runs as root) from STATE (second
# argument, else $DLOCK_POSTGRES_STATE, else ${TMPDIR:-/tmp}/dlock-postgres),
# on 127.0.0.1 only: PostgreSQL on $PGLOCK_PG_PORT (55432), PgBouncer on
# $PGLOCK_BOUNCER_PORT (55433), trust authentication, database "dlock".
# Installs postgresql and pgbouncer (Debian) with apt-get if missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=rig-lib.sh
. "$here/rig-lib.sh"

usage() {
	echo "usage: $prog up|down|status|restart [STATE]" >&2
	exit 2
}

state=${2:-${DLOCK_POSTGRES_STATE:-${TMPDIR:-/tmp}/dlock-postgres}}
pg_port=${PGLOCK_PG_PORT:-55432}
pb_port=${PGLOCK_BOUNCER_PORT:-55433}
pool_size=${PGLOCK_BOUNCER_POOL:-4}

pgbin() {
	local d
	for d in /usr/lib/postgresql/*/bin; do
		[ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
	done
	return 1
}

as_pg() { runuser -u postgres -- "$@"; }

exports() {
	local bin
	bin=$(pgbin)
	cat <<EOF
export PGLOCK_TEST_DIRECT='postgres://postgres@127.0.0.1:$pg_port/dlock?sslmode=disable'
export PGLOCK_TEST_BOUNCER='postgres://postgres@127.0.0.1:$pb_port/dlock?sslmode=disable'
export PGLOCK_TEST_BOUNCER_ADMIN='postgres://postgres@127.0.0.1:$pb_port/pgbouncer?sslmode=disable'
export PGLOCK_TEST_STATE='$state'
export PGLOCK_TEST_PGBIN='$bin'
export PGLOCK_TEST_BOUNCER_PIDFILE='$state/pgbouncer.pid'
EOF
}

pg_up() { [ -s "$state/data/postmaster.pid" ] && as_pg "$(pgbin)/pg_ctl" -D "$state/data" status >/dev/null 2>&1; }
pb_up() { pid_alive "$state/pgbouncer.pid" pgbouncer; }

do_up() {
	require_root
	if ! pgbin >/dev/null || ! command -v pgbouncer >/dev/null; then
		apt_install "${TMPDIR:-/tmp}/dlock-postgres-apt.log" postgresql pgbouncer
	fi
	local bin
	bin=$(pgbin) || die "no PostgreSQL server binaries under /usr/lib/postgresql after installing"
	mkdir -p "$state"
	chown postgres: "$state"
	chmod 700 "$state"
	if ! pg_up; then
		port_in_use "$pg_port" && die "port $pg_port is in use (set PGLOCK_PG_PORT)"
		if [ ! -s "$state/data/PG_VERSION" ]; then
			as_pg "$bin/initdb" -D "$state/data" -U postgres -A trust --no-sync >"$state/initdb.log" 2>&1 ||
				{ tail -5 "$state/initdb.log" >&2; die "initdb failed"; }
			cat >>"$state/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = '$state'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
EOF
		fi
		as_pg "$bin/pg_ctl" -D "$state/data" -l "$state/postgres.log" -w -t 60 start >/dev/null ||
			{ tail -5 "$state/postgres.log" >&2; die "PostgreSQL did not start"; }
		as_pg "$bin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -qAt \
			-c "SELECT 1 FROM pg_database WHERE datname = 'dlock'" | grep -q 1 ||
			as_pg "$bin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres dlock
	fi
	if ! pb_up; then
		port_in_use "$pb_port" && die "port $pb_port is in use (set PGLOCK_BOUNCER_PORT)"
		printf '"postgres" ""\n' >"$state/userlist.txt"
		cat >"$state/pgbouncer.ini" <<EOF
[databases]
dlock = host=127.0.0.1 port=$pg_port dbname=dlock
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $pb_port
unix_socket_dir =
auth_type = trust
auth_file = $state/userlist.txt
admin_users = postgres
pool_mode = transaction
default_pool_size = $pool_size
max_client_conn = 500
ignore_startup_parameters = extra_float_digits
logfile = $state/pgbouncer.log
pidfile = $state/pgbouncer.pid
EOF
		chown postgres: "$state"/pgbouncer.ini "$state"/userlist.txt
		as_pg pgbouncer -d "$state/pgbouncer.ini" || die "pgbouncer did not start (log: $state/pgbouncer.log)"
		local i
		for i in $(seq 100); do port_in_use "$pb_port" && break; sleep 0.05; done
		pb_up || die "pgbouncer did not stay up (log: $state/pgbouncer.log)"
	fi
	say "PostgreSQL on 127.0.0.1:$pg_port, PgBouncer (transaction pooling, pool $pool_size) on 127.0.0.1:$pb_port, state $state"
	exports
}

do_down() {
	stop_pid "$state/pgbouncer.pid" pgbouncer
	if [ -s "$state/data/postmaster.pid" ] && pgbin >/dev/null; then
		as_pg "$(pgbin)/pg_ctl" -D "$state/data" -m immediate -w stop >/dev/null 2>&1 || true
	fi
	case $state in
	/ | "") die "refusing to remove state directory '$state'" ;;
	esac
	rm -rf --one-file-system "$state"
}

do_status() {
	local rc=0
	if pg_up; then echo "postgres: up (port $pg_port)"; else echo "postgres: down"; rc=1; fi
	if pb_up; then echo "pgbouncer: up (port $pb_port)"; else echo "pgbouncer: down"; rc=$((rc + 1)); fi
	[ $rc -lt 2 ] || { echo "status: down"; return 3; }
	status_summary $rc
}

do_restart() {
	require_root
	pg_up || die "PostgreSQL is not up"
	as_pg "$(pgbin)/pg_ctl" -D "$state/data" -l "$state/postgres.log" -m fast -w -t 60 restart >/dev/null
}

case ${1:-} in
restart) do_restart ;;
*) dispatch "${1:-}" ;;
esac
