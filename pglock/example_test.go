package pglock_test

import (
	"context"
	"log"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/lockdir/dlock/pglock"
)

// A migration run by every replica at start: one runs it, the others wait
// and then find nothing left to do. The fence goes into the migration's
// own table, so a holder that lost the lock (paused past its deadline)
// cannot write over a successor's work.
func Example_migration() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL")) // may go through PgBouncer
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	lock, err := pglock.New(pool, "migrate",
		pglock.WithTimeout(30*time.Second),  // a dead migrator frees the lock after this
		pglock.WithPatience(10*time.Minute)) // give up (dlock.ErrBusy) after waiting this long
	if err != nil {
		log.Fatal(err)
	}
	err = lock.Do(ctx, func(ctx context.Context) error {
		// ctx is cancelled (cause dlock.ErrLost) MARGIN before anyone else
		// can take the lock.
		fence := int64(lock.Fence())
		_, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS app_migrations (
			id int PRIMARY KEY, version int NOT NULL, fence bigint NOT NULL)`)
		if err != nil {
			return err
		}
		// ... each step of the migration, then its record, fenced:
		_, err = pool.Exec(ctx, `INSERT INTO app_migrations VALUES (1, $2, $1)
			ON CONFLICT (id) DO UPDATE SET version = $2, fence = $1
			WHERE app_migrations.fence <= $1`, fence, 7)
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
}

// Open takes the lock's name from the URL, as `dlock run` does.
func ExampleOpen() {
	lock, err := pglock.Open("postgres://app@db:5432/app?lock=nightly-report", "")
	if err != nil {
		log.Fatal(err)
	}
	defer lock.Close()
	if err := lock.Lock(context.Background()); err != nil {
		log.Fatal(err)
	}
	defer lock.Unlock()
	// ...
}
