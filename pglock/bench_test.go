package pglock_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/lockdir/dlock/pglock"
)

// BenchmarkLockUnlock: an uncontended Lock+Unlock (two statements), beside
// its baselines measured in the same run on the same pool: two SELECT 1
// round trips, and a plain upsert and delete of a row of the same table
// (what the server's writing costs, without pglock's conditions, fence
// and notify).
//
//	go test -run '^$' -bench . -benchtime 2000x ./pglock
func BenchmarkLockUnlock(b *testing.B) {
	for _, tg := range targets(b) {
		p := newPool(b, tg.url, 2)
		b.Run(tg.name+"/baseline-2xSELECT1", func(b *testing.B) {
			ctx := context.Background()
			var one int
			for b.Loop() {
				for range 2 {
					if err := p.QueryRow(ctx, "SELECT 1", pgx.QueryExecModeExec).Scan(&one); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
		b.Run(tg.name+"/baseline-upsert+delete", func(b *testing.B) {
			ctx := context.Background()
			if _, err := p.Exec(ctx, `CREATE TABLE IF NOT EXISTS pglock_bench_rows (name text PRIMARY KEY, n bigint NOT NULL, t timestamptz)`); err != nil {
				b.Fatal(err)
			}
			name := lockName(b)
			var n int64
			for b.Loop() {
				if err := p.QueryRow(ctx, `INSERT INTO pglock_bench_rows VALUES ($1::text, 1, clock_timestamp())
					ON CONFLICT (name) DO UPDATE SET n = pglock_bench_rows.n + 1 RETURNING n`, pgx.QueryExecModeExec, name).Scan(&n); err != nil {
					b.Fatal(err)
				}
				if err := p.QueryRow(ctx, `DELETE FROM pglock_bench_rows WHERE name = $1::text RETURNING n`, pgx.QueryExecModeExec, name).Scan(&n); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(tg.name+"/pglock", func(b *testing.B) {
			l, err := pglock.New(p, lockName(b))
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			for b.Loop() {
				if err := l.Lock(ctx); err != nil {
					b.Fatal(err)
				}
				if err := l.Unlock(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
