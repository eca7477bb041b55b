// Command dlock-backend-postgres keeps the lock of a postgres:// (or
// postgresql://) PATH for "dlock run" and "dlock hold", which start it and
// talk to it over stdin and stdout (the protocol of dlock's
// internal/backendproto). Install it next to dlock or on PATH:
//
//	go install github.com/lockdir/dlock/pglock/cmd/dlock-backend-postgres@latest
//
// The URL is pgx's connection string, with the lock's name after "#" (or
// in the query parameter lock=NAME, and its table in lock_table=TABLE):
//
//	dlock run -w 600 "$DATABASE_URL#migrate" -- goose up
//
// The lock is pglock's lease row; see pglock's README.
package main

import (
	"log/slog"
	"os"

	"github.com/lockdir/dlock"
	"github.com/lockdir/dlock/internal/backendproto"
	"github.com/lockdir/dlock/pglock"
)

func main() {
	os.Exit(backendproto.Main(func(o backendproto.Options, log *slog.Logger) (dlock.Locker, error) {
		opts := []pglock.Option{pglock.WithTimeout(o.Timeout), pglock.WithPatience(o.Patience), pglock.WithLogger(log)}
		if o.Margin > 0 {
			opts = append(opts, pglock.WithMargin(o.Margin))
		}
		if o.Poll > 0 {
			opts = append(opts, pglock.WithPollInterval(o.Poll))
		}
		return pglock.Open(o.URL, "", opts...)
	}))
}
