package pglock

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// querier runs one statement that returns at most one row. Each call
// stands alone (its own implicit transaction), so any pooled connection,
// and any transaction pooler in front of the server, may serve it.
type querier interface {
	// row runs query and scans its first row into dest; found is false
	// when it returned none.
	row(ctx context.Context, query string, args []any, dest ...any) (found bool, err error)
	exec(ctx context.Context, query string) error
}

// poolQuerier runs statements on a pgxpool.Pool. It asks for pgx's exec
// mode (one round trip, an unnamed statement) whatever the pool's default:
// named prepared statements do not survive a transaction pooler such as
// PgBouncer < 1.21 in pool_mode = transaction.
type poolQuerier struct{ p *pgxpool.Pool }

func (q poolQuerier) row(ctx context.Context, query string, args []any, dest ...any) (bool, error) {
	err := q.p.QueryRow(ctx, query, append([]any{pgx.QueryExecModeExec}, args...)...).Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

func (q poolQuerier) exec(ctx context.Context, query string) error {
	_, err := q.p.Exec(ctx, query, pgx.QueryExecModeSimpleProtocol)
	return err
}

// sqlQuerier runs statements on a database/sql pool (any PostgreSQL
// driver: pgx's stdlib, lib/pq).
type sqlQuerier struct{ db *sql.DB }

func (q sqlQuerier) row(ctx context.Context, query string, args []any, dest ...any) (bool, error) {
	err := q.db.QueryRowContext(ctx, query, args...).Scan(dest...)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

func (q sqlQuerier) exec(ctx context.Context, query string) error {
	_, err := q.db.ExecContext(ctx, query)
	return err
}

// schema holds the names of the table and its fence sequence, quoted.
type schema struct {
	table, seq string // quoted identifiers
	plain      string // the table's name as given
}

func newSchema(table string) (schema, error) {
	if table == "" {
		return schema{}, errors.New("pglock: empty table name")
	}
	parts := strings.Split(table, ".")
	if len(parts) > 2 {
		return schema{}, fmt.Errorf("pglock: table name %q: at most schema.table", table)
	}
	for _, p := range parts {
		if p == "" || len(p) > 50 {
			return schema{}, fmt.Errorf("pglock: table name %q: each part must be 1 to 50 bytes", table)
		}
	}
	seq := append(pgx.Identifier{}, parts...)
	seq[len(seq)-1] += "_fence"
	return schema{
		table: pgx.Identifier(parts).Sanitize(),
		seq:   seq.Sanitize(),
		plain: table,
	}, nil
}

// The statements. Each transition is ONE statement, a compare-and-swap:
// acquiring writes the row only if it is missing or its lease has expired
// by the server's clock; refreshing and releasing touch it only while it
// still carries the acquisition's fence and token. clock_timestamp() is
// the time at which the server evaluates it (not the start of the
// transaction), so expiry is judged by the server's clock alone.

func (s schema) createSQL() []string {
	return []string{
		fmt.Sprintf(`CREATE SEQUENCE IF NOT EXISTS %s AS bigint`, s.seq),
		fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	name       text PRIMARY KEY,
	fence      bigint NOT NULL,
	token      text NOT NULL,
	holder     jsonb NOT NULL,
	timeout_ms bigint NOT NULL,
	acquired   timestamptz NOT NULL,
	refreshed  timestamptz NOT NULL,
	expires    timestamptz NOT NULL,
	beats      bigint NOT NULL DEFAULT 0
)`, s.table),
	}
}

// acquireSQL: $1 name, $2 token, $3 holder record (JSON), $4 TIMEOUT in ms.
// It returns one row: (true, fence, ”, 0) when it acquired, else (false,
// holder's fence, holder record, ms until its lease expires by the
// server's clock). No row: the holder's row changed under this statement
// (try again).
func (s schema) acquireSQL() string {
	return fmt.Sprintf(`WITH mine AS (
	INSERT INTO %[1]s AS l (name, fence, token, holder, timeout_ms, acquired, refreshed, expires)
	VALUES ($1::text, nextval('%[2]s'), $2::text, $3::jsonb, $4::bigint,
		clock_timestamp(), clock_timestamp(), clock_timestamp() + $4::bigint * interval '1 millisecond')
	ON CONFLICT (name) DO UPDATE SET
		fence = GREATEST(nextval('%[2]s'), l.fence + 1), token = EXCLUDED.token, holder = EXCLUDED.holder,
		timeout_ms = EXCLUDED.timeout_ms, acquired = EXCLUDED.acquired, refreshed = EXCLUDED.refreshed,
		expires = EXCLUDED.expires, beats = 0
	WHERE l.expires <= clock_timestamp()
	RETURNING fence
)
SELECT true, fence, '', 0::bigint FROM mine
UNION ALL
SELECT false, o.fence, o.holder::text,
	GREATEST(0, ceil(extract(epoch FROM o.expires - clock_timestamp()) * 1000))::bigint
FROM %[1]s o WHERE o.name = $1::text AND NOT EXISTS (SELECT 1 FROM mine)`, s.table, strings.ReplaceAll(s.seq, `'`, `''`))
}

// refreshSQL: $1 name, $2 fence, $3 token, $4 TIMEOUT in ms. A row back:
// refreshed. None: the row is gone, another acquisition's, or its lease
// has expired (a lapsed lease is never revived).
func (s schema) refreshSQL() string {
	return fmt.Sprintf(`UPDATE %s SET refreshed = clock_timestamp(),
	expires = clock_timestamp() + $4::bigint * interval '1 millisecond', beats = beats + 1
WHERE name = $1::text AND fence = $2::bigint AND token = $3::text AND expires > clock_timestamp()
RETURNING fence`, s.table)
}

// releaseSQL: $1 name, $2 fence, $3 token, $4 the NOTIFY payload. It
// marks the row free (expires = now) only if it is still this
// acquisition's, keeping its fence for the next holder to rise above, and
// wakes the waiters that listen; it returns whether the lease had still
// been valid by the server's clock. No row: not ours any more.
func (s schema) releaseSQL() string {
	return fmt.Sprintf(`WITH d AS (
	UPDATE %[1]s AS t SET expires = clock_timestamp(), refreshed = clock_timestamp()
	FROM (SELECT expires > clock_timestamp() AS valid FROM %[1]s
		WHERE name = $1::text AND fence = $2::bigint AND token = $3::text FOR UPDATE) o
	WHERE t.name = $1::text AND t.fence = $2::bigint AND t.token = $3::text
	RETURNING o.valid
)
SELECT d.valid, pg_notify('%[2]s', $4::text) IS NULL FROM d`, s.table, channel)
}

// inspectSQL: $1 name. The holder's fence, record, ms since its last
// refresh and until its expiry, by the server's clock; no row when free.
func (s schema) inspectSQL() string {
	return fmt.Sprintf(`SELECT fence, holder::text, token,
	GREATEST(0, extract(epoch FROM clock_timestamp() - refreshed) * 1000)::bigint,
	GREATEST(0, ceil(extract(epoch FROM expires - clock_timestamp()) * 1000))::bigint
FROM %s WHERE name = $1::text AND expires > clock_timestamp()`, s.table)
}

// channel is where releases are announced (NOTIFY); the payload says
// which lock of which table (payloadOf).
const channel = "pglock"

// payloadOf is the NOTIFY payload for the lock name in table: the two
// joined, or a hash of them when that would be too long for NOTIFY.
func payloadOf(table, name string) string {
	p := table + "\n" + name
	if len(p) <= 1000 {
		return p
	}
	sum := sha256.Sum256([]byte(p))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// ensure creates the table and the sequence if missing. Two processes
// creating them at once may collide in PostgreSQL's catalog (a unique
// violation on pg_type or pg_class, "relation already exists", "type
// already exists"): then the other one made them, which is as good.
func (s schema) ensure(ctx context.Context, q querier) error {
	for _, stmt := range s.createSQL() {
		if err := q.exec(ctx, stmt); err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) && (pe.Code == "23505" || pe.Code == "42P07" || pe.Code == "42710") {
				continue
			}
			return fmt.Errorf("pglock: creating the lease table %s: %w", s.plain, err)
		}
	}
	return nil
}

// isUndefinedTable tells whether err says the table or sequence is missing.
func isUndefinedTable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "42P01"
	}
	// database/sql drivers other than pgx's: match the message
	return err != nil && strings.Contains(err.Error(), "42P01")
}
