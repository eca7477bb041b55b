package pglock_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/lockdir/dlock"
	"github.com/lockdir/dlock/pglock"
)

// The tests need a PostgreSQL server and a PgBouncer in front of it in
// pool_mode = transaction: scripts/postgres.sh up prints the variables.
// Without them the tests skip (in CI they are set: .ci/run starts both).
const (
	envDirect  = "PGLOCK_TEST_DIRECT"
	envBouncer = "PGLOCK_TEST_BOUNCER"
	envAdmin   = "PGLOCK_TEST_BOUNCER_ADMIN"
)

// target is one way to the server: straight, or through PgBouncer.
type target struct{ name, url string }

func targets(t testing.TB) []target {
	t.Helper()
	d, b := os.Getenv(envDirect), os.Getenv(envBouncer)
	if d == "" || b == "" {
		if os.Getenv("PGLOCK_TEST_REQUIRE") != "" {
			t.Fatalf("%s and %s are not set: run eval \"$(scripts/postgres.sh up)\" first", envDirect, envBouncer)
		}
		t.Skipf("%s and %s are not set: run eval \"$(sudo scripts/postgres.sh up)\" to test against real servers", envDirect, envBouncer)
	}
	return []target{{"direct", d}, {"pgbouncer", b}}
}

func newPool(t testing.TB, url string, size int32) *pgxpool.Pool {
	t.Helper()
	return newPoolApp(t, url, size, "pglock-test")
}

// newPoolApp is newPool whose connections carry application_name app.
func newPoolApp(t testing.TB, url string, size int32, app string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = size
	// the tests' own statements go through PgBouncer 1.18 in transaction
	// pooling too: no named prepared statements (pglock's own ask for this
	// mode whatever the pool's default)
	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeExec
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	p, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

var nameSeq atomic.Int64

// lockName is a name no other test uses, in this run or an earlier one.
func lockName(t testing.TB) string {
	return fmt.Sprintf("%s-%d-%d-%d", t.Name(), os.Getpid(), time.Now().UnixNano(), nameSeq.Add(1))
}

func newLock(t testing.TB, p *pgxpool.Pool, name string, opts ...pglock.Option) *pglock.Lock {
	t.Helper()
	l, err := pglock.New(p, name, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestLockUnlockBusyFence(t *testing.T) {
	for _, tg := range targets(t) {
		t.Run(tg.name, func(t *testing.T) {
			p := newPool(t, tg.url, 4)
			name := lockName(t)
			a := newLock(t, p, name)
			b := newLock(t, p, name, pglock.WithPatience(200*time.Millisecond))
			if err := a.Lock(ctxT(t, 10*time.Second)); err != nil {
				t.Fatal(err)
			}
			f1 := a.Fence()
			if f1 == 0 {
				t.Fatal("fence 0 after Lock")
			}
			if err := a.Lock(ctxT(t, time.Second)); !errors.Is(err, dlock.ErrHeld) {
				t.Fatalf("second Lock: %v, want ErrHeld", err)
			}
			ok, err := b.TryLock()
			if ok || err != nil {
				t.Fatalf("TryLock while held: %v %v", ok, err)
			}
			start := time.Now()
			err = b.Lock(ctxT(t, 10*time.Second))
			var be *dlock.BusyError
			if !errors.As(err, &be) || !errors.Is(err, dlock.ErrBusy) {
				t.Fatalf("Lock while held: %v, want a BusyError", err)
			}
			if be.Holder.PID != os.Getpid() || be.Holder.Fence != f1 {
				t.Fatalf("BusyError names %+v, want pid %d fence %d", be.Holder, os.Getpid(), f1)
			}
			if w := time.Since(start); w < 200*time.Millisecond || w > 3*time.Second {
				t.Fatalf("PATIENCE 200ms waited %v", w)
			}
			t.Logf("busy: %v", err)
			if h, _, held, err := a.Inspect(ctxT(t, 5*time.Second)); err != nil || !held || h.Fence != f1 {
				t.Fatalf("Inspect: %+v %v %v", h, held, err)
			}
			if err := a.Unlock(); err != nil {
				t.Fatal(err)
			}
			if err := a.Unlock(); !errors.Is(err, dlock.ErrNotHeld) {
				t.Fatalf("second Unlock: %v, want ErrNotHeld", err)
			}
			if isClosed(a.Lost()) {
				t.Fatal("Lost closed by Unlock")
			}
			ok, err = b.TryLock()
			if !ok || err != nil {
				t.Fatalf("TryLock after release: %v %v", ok, err)
			}
			if b.Fence() <= f1 {
				t.Fatalf("fence %d after %d: not rising", b.Fence(), f1)
			}
			if err := b.Unlock(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestFenceSurvivesDeletion: a row deleted (by every release, here by
// hand under a live holder) keeps no fence, yet the next one is higher
// (the sequence); a sequence reset with an expired row there does not
// bring fences down either (GREATEST with the row's).
func TestFenceSurvivesDeletion(t *testing.T) {
	tg := targets(t)[0]
	p := newPool(t, tg.url, 2)
	name := lockName(t)
	table := "pglock_fence_test"
	opt := pglock.WithTable(table)
	a, b, c := newLock(t, p, name, opt), newLock(t, p, name, opt), newLock(t, p, name, opt)
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := p.Exec(context.Background(), q, args...); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Lock(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	exec(`DELETE FROM `+table+` WHERE name = $1`, name)
	if err := a.Unlock(); !errors.Is(err, dlock.ErrLost) {
		t.Fatalf("Unlock after the row was deleted: %v, want ErrLost", err)
	}
	if err := b.Lock(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if b.Fence() <= a.Fence() {
		t.Fatalf("fence %d after the row was deleted, %d before", b.Fence(), a.Fence())
	}
	exec(`UPDATE `+table+` SET expires = clock_timestamp() WHERE name = $1`, name)
	exec(`ALTER SEQUENCE ` + table + `_fence RESTART WITH 1`)
	if err := c.Lock(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if c.Fence() <= b.Fence() {
		t.Fatalf("fence %d after the sequence was reset, %d before", c.Fence(), b.Fence())
	}
	if err := b.Unlock(); !errors.Is(err, dlock.ErrLost) {
		t.Fatalf("Unlock of the expired holder: %v, want ErrLost", err)
	}
	if err := c.Unlock(); err != nil {
		t.Fatal(err)
	}
	t.Logf("fences %d, %d, %d", a.Fence(), b.Fence(), c.Fence())
}

// TestLateUnlockLeavesSuccessor: the holder's lease expires while it is
// not refreshing (made to expire by hand); a successor takes it; the
// holder's refresh then finds the row taken (Lost), and its late Unlock
// is ErrLost and leaves the successor's row alone.
func TestLateUnlockLeavesSuccessor(t *testing.T) {
	for _, tg := range targets(t) {
		t.Run(tg.name, func(t *testing.T) {
			p := newPool(t, tg.url, 4)
			name := lockName(t)
			a := newLock(t, p, name, pglock.WithTimeout(3*time.Second), pglock.WithRefresh(200*time.Millisecond))
			b := newLock(t, p, name, pglock.WithTimeout(3*time.Second))
			if err := a.Lock(ctxT(t, 10*time.Second)); err != nil {
				t.Fatal(err)
			}
			if _, err := p.Exec(context.Background(), `UPDATE dlock_leases SET expires = clock_timestamp() WHERE name = $1`, name); err != nil {
				t.Fatal(err)
			}
			if err := b.Lock(ctxT(t, 10*time.Second)); err != nil {
				t.Fatal(err)
			}
			select {
			case <-a.Lost():
			case <-time.After(5 * time.Second):
				t.Fatal("the old holder was not told within 5s of its row being taken")
			}
			err := a.Unlock()
			if !errors.Is(err, dlock.ErrLost) {
				t.Fatalf("late Unlock: %v, want ErrLost", err)
			}
			t.Logf("late Unlock: %v", err)
			h, _, held, err := b.Inspect(ctxT(t, 5*time.Second))
			if err != nil || !held || h.Fence != b.Fence() || h.PID != os.Getpid() {
				t.Fatalf("successor's row after the late Unlock: %+v held=%v err=%v", h, held, err)
			}
			if isClosed(b.Lost()) {
				t.Fatal("successor lost")
			}
			if err := b.Unlock(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestDeadlineWhileServerHangs: PgBouncer paused, so no statement of the
// holder's is answered. Lost closes and Do's context is cancelled at the
// deadline, TIMEOUT - MARGIN after the acquiring statement was issued, by
// the holder's own timer; Unlock returns ErrLost by then too.
func TestDeadlineWhileServerHangs(t *testing.T) {
	tgs := targets(t)
	admin := adminConn(t)
	p := newPool(t, tgs[1].url, 4)
	name := lockName(t)
	const timeout, margin = 2 * time.Second, 500 * time.Millisecond
	l := newLock(t, p, name, pglock.WithTimeout(timeout), pglock.WithMargin(margin))
	issued := time.Now()
	var lostAt time.Time
	var cause error
	err := l.Do(ctxT(t, 20*time.Second), func(ctx context.Context) error {
		pause(t, admin)
		defer resume(t, admin)
		<-ctx.Done()
		lostAt = time.Now()
		cause = context.Cause(ctx)
		return nil
	})
	if !errors.Is(err, dlock.ErrLost) || !errors.Is(cause, dlock.ErrLost) {
		t.Fatalf("Do: %v (ctx cause %v), want ErrLost", err, cause)
	}
	after := lostAt.Sub(issued)
	t.Logf("told %v after the acquiring statement was issued (deadline TIMEOUT-MARGIN = %v); Do: %v", after.Round(time.Millisecond), timeout-margin, err)
	if after > timeout-margin+300*time.Millisecond {
		t.Fatalf("told %v after acquiring: later than the deadline %v (+300ms)", after, timeout-margin)
	}
}

func adminConn(t testing.TB) *pgx.Conn {
	t.Helper()
	u := os.Getenv(envAdmin)
	if u == "" {
		t.Skip(envAdmin + " is not set")
	}
	cfg, err := pgx.ParseConfig(u)
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	c, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func pause(t testing.TB, admin *pgx.Conn) {
	t.Helper()
	if _, err := admin.Exec(ctxT(t, 10*time.Second), "PAUSE dlock"); err != nil {
		t.Fatal("PAUSE:", err)
	}
}

func resume(t testing.TB, admin *pgx.Conn) {
	t.Helper()
	if _, err := admin.Exec(ctxT(t, 10*time.Second), "RESUME dlock"); err != nil {
		t.Error("RESUME:", err)
	}
}

// TestDeadlineMockClock: on a mock clock, a holder whose refreshes hang
// (PgBouncer paused) is told exactly at its deadline, not a moment before.
func TestDeadlineMockClock(t *testing.T) {
	tgs := targets(t)
	admin := adminConn(t)
	p := newPool(t, tgs[1].url, 4)
	mc := clock.NewMock()
	mc.Set(time.Now())
	l := newLock(t, p, lockName(t), pglock.WithClock(mc), pglock.WithTimeout(10*time.Second), pglock.WithMargin(2*time.Second), pglock.WithRefresh(3*time.Second))
	if err := l.Lock(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	pause(t, admin)
	paused := true
	defer func() {
		if paused {
			resume(t, admin)
		}
	}()
	mc.Add(3 * time.Second) // the refresh is issued, and hangs
	mc.Add(5*time.Second - time.Millisecond)
	if isClosed(l.Lost()) {
		t.Fatal("told 1ms before the deadline")
	}
	mc.Add(time.Millisecond)
	select {
	case <-l.Lost():
	case <-time.After(5 * time.Second):
		t.Fatal("not told at the deadline (TIMEOUT - MARGIN = 8s on the mock clock)")
	}
	resume(t, admin) // so that Unlock's release, given MARGIN on the mock clock, is answered
	paused = false
	if err := l.Unlock(); !errors.Is(err, dlock.ErrLost) {
		t.Fatalf("Unlock after the deadline: %v, want ErrLost", err)
	}
}

// TestSQLDB: the same lock through database/sql (pgx's stdlib driver),
// straight and through PgBouncer, against a pgxpool holder.
func TestSQLDB(t *testing.T) {
	for _, tg := range targets(t) {
		t.Run(tg.name, func(t *testing.T) {
			cfg, err := pgx.ParseConfig(tg.url)
			if err != nil {
				t.Fatal(err)
			}
			cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
			db := stdlib.OpenDB(*cfg)
			defer db.Close()
			name := lockName(t)
			a, err := pglock.NewDB(db, name, pglock.WithPatience(0))
			if err != nil {
				t.Fatal(err)
			}
			b := newLock(t, newPool(t, tg.url, 2), name, pglock.WithPatience(0))
			if err := a.Lock(ctxT(t, 10*time.Second)); err != nil {
				t.Fatal(err)
			}
			if ok, err := b.TryLock(); ok || err != nil {
				t.Fatalf("TryLock against a *sql.DB holder: %v %v", ok, err)
			}
			if err := a.Unlock(); err != nil {
				t.Fatal(err)
			}
			if ok, err := b.TryLock(); !ok || err != nil {
				t.Fatalf("TryLock after release: %v %v", ok, err)
			}
			b.Unlock()
		})
	}
}

// TestWaitersInProcess: goroutines with Locks of their own, on one pool
// and through both ways, count under the lock: exact, never two inside.
// Straight to the server they wait by LISTEN/NOTIFY, through PgBouncer
// by polling.
func TestWaitersInProcess(t *testing.T) {
	for _, tg := range targets(t) {
		t.Run(tg.name, func(t *testing.T) {
			// 3 connections for 6 Locks: one listens for them all (straight
			// to the server), two serve the attempts and refreshes
			p := newPool(t, tg.url, 3)
			name := lockName(t)
			const workers, rounds = 6, 15
			var inside, overlaps, count atomic.Int64
			var wg sync.WaitGroup
			start := time.Now()
			for range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					l := newLock(t, p, name)
					for range rounds {
						err := l.Do(context.Background(), func(ctx context.Context) error {
							if inside.Add(1) != 1 {
								overlaps.Add(1)
							}
							c := count.Load()
							time.Sleep(time.Millisecond)
							count.Store(c + 1)
							inside.Add(-1)
							return nil
						})
						if err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			el := time.Since(start)
			t.Logf("%s: %d workers x %d rounds: count %d, overlaps %d, %v (%v per hand-off)", tg.name, workers, rounds, count.Load(), overlaps.Load(), el.Round(time.Millisecond), (el / (workers * rounds)).Round(10*time.Microsecond))
			if count.Load() != workers*rounds || overlaps.Load() != 0 {
				t.Fatalf("count %d of %d, %d overlaps", count.Load(), workers*rounds, overlaps.Load())
			}
		})
	}
}

// TestListenNotify: straight to the server a waiter is woken by the
// release's NOTIFY, long before its poll (10 s here); through PgBouncer
// it sees that its connection is not a session of its own and polls.
func TestListenNotify(t *testing.T) {
	for _, tg := range targets(t) {
		t.Run(tg.name, func(t *testing.T) {
			p := newPool(t, tg.url, 4)
			name := lockName(t)
			poll := 10 * time.Second
			if tg.name == "pgbouncer" {
				poll = 300 * time.Millisecond
			}
			var logs strings.Builder
			var logMu sync.Mutex
			log := slog.New(slog.NewTextHandler(writerFunc(func(b []byte) (int, error) {
				logMu.Lock()
				defer logMu.Unlock()
				return logs.Write(b)
			}), &slog.HandlerOptions{Level: slog.LevelDebug}))
			a := newLock(t, p, name)
			app := fmt.Sprintf("pglock-listen-%d", nameSeq.Add(1))
			b := newLock(t, newPoolApp(t, tg.url, 4, app), name, pglock.WithPollInterval(poll), pglock.WithLogger(log))
			if err := a.Lock(ctxT(t, 10*time.Second)); err != nil {
				t.Fatal(err)
			}
			got := make(chan time.Time, 1)
			go func() {
				if err := b.Lock(ctxT(t, 30*time.Second)); err != nil {
					t.Error(err)
				}
				got <- time.Now()
			}()
			if tg.name == "direct" {
				// wait until b listens (its connection's last statement)
				watch := newPool(t, tg.url, 1)
				for deadline := time.Now().Add(20 * time.Second); ; {
					var n int
					if err := watch.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND query LIKE 'LISTEN%'`, app).Scan(&n); err != nil {
						t.Fatal(err)
					}
					if n > 0 {
						break
					}
					if time.Now().After(deadline) {
						t.Fatal("the waiter did not LISTEN within 20s")
					}
					time.Sleep(10 * time.Millisecond)
				}
			} else {
				time.Sleep(time.Second) // b has tried, and polls
			}
			released := time.Now()
			if err := a.Unlock(); err != nil {
				t.Fatal(err)
			}
			at := <-got
			b.Unlock()
			logMu.Lock()
			pooled := strings.Contains(logs.String(), "go through a pooler")
			logMu.Unlock()
			t.Logf("%s: acquired %v after the release; pooler detected: %v", tg.name, at.Sub(released).Round(time.Millisecond), pooled)
			if tg.name == "direct" && (at.Sub(released) > 500*time.Millisecond || pooled) {
				t.Fatalf("direct: woken %v after the release (pooler detected %v): NOTIFY did not wake it", at.Sub(released), pooled)
			}
			if tg.name == "pgbouncer" && !pooled {
				t.Fatal("through PgBouncer the waiter did not see the pooler (it would LISTEN on a shared server connection)")
			}
		})
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

func TestOpenURL(t *testing.T) {
	tg := targets(t)[1]
	for _, u := range []string{tg.url + "#" + "open-url-frag", tg.url + "&lock=open-url-query&lock_table=pglock_open_test"} {
		l, err := pglock.Open(u, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Lock(ctxT(t, 10*time.Second)); err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		t.Logf("%s: lock %q in table %s, fence %d", u, l.Name(), l.Table(), l.Fence())
		if err := l.Unlock(); err != nil {
			t.Fatal(err)
		}
		l.Close()
	}
}

func TestBadInput(t *testing.T) {
	if _, err := pglock.New(nil, "x"); err == nil {
		t.Fatal("nil pool accepted")
	}
	var db *sql.DB
	if _, err := pglock.NewDB(db, "x"); err == nil {
		t.Fatal("nil db accepted")
	}
	for _, u := range []string{"http://x/y?lock=a", "postgres://h/db", "postgres://u:secret@h/db"} {
		_, err := pglock.Open(u, "")
		if err == nil {
			t.Fatalf("Open(%q) accepted", u)
		}
		if strings.Contains(err.Error(), "secret") {
			t.Fatalf("error shows the password: %v", err)
		}
	}
	if _, err := pglock.Open("postgres://h/db?lock=a", "", pglock.WithTimeout(time.Second), pglock.WithMargin(time.Second)); err == nil {
		t.Fatal("MARGIN = TIMEOUT accepted")
	}
	if _, err := pglock.Open("postgres://h/db?lock=a\x00b", ""); err == nil {
		t.Fatal("a NUL in the name accepted")
	}
}

// TestFenceInMigrationTable: the guide's pattern. A holder that lost the
// lock (its lease expired while it was away) writes with its old fence
// after a successor wrote with the new one: its write changes nothing.
func TestFenceInMigrationTable(t *testing.T) {
	tg := targets(t)[1] // through PgBouncer
	p := newPool(t, tg.url, 4)
	name := lockName(t)
	exec := func(q string, args ...any) int64 {
		t.Helper()
		tag, err := p.Exec(context.Background(), q, args...)
		if err != nil {
			t.Fatal(err)
		}
		return tag.RowsAffected()
	}
	exec(`CREATE TABLE IF NOT EXISTS pglock_test_migrations (name text PRIMARY KEY, version int NOT NULL, fence bigint NOT NULL)`)
	write := func(fence uint64, version int) int64 {
		return exec(`INSERT INTO pglock_test_migrations VALUES ($1, $3, $2) ON CONFLICT (name) DO UPDATE SET version = $3, fence = $2
			WHERE pglock_test_migrations.fence <= $2`, name, int64(fence), version)
	}
	a, b := newLock(t, p, name), newLock(t, p, name)
	if err := a.Lock(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if n := write(a.Fence(), 1); n != 1 {
		t.Fatalf("first write: %d rows", n)
	}
	exec(`UPDATE dlock_leases SET expires = clock_timestamp() WHERE name = $1`, name) // a's lease runs out
	if err := b.Lock(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if n := write(b.Fence(), 2); n != 1 {
		t.Fatalf("successor's write: %d rows", n)
	}
	if n := write(a.Fence(), 99); n != 0 {
		t.Fatalf("the stale holder's write with fence %d after fence %d changed %d rows", a.Fence(), b.Fence(), n)
	}
	var v int
	if err := p.QueryRow(context.Background(), `SELECT version FROM pglock_test_migrations WHERE name = $1`, name).Scan(&v); err != nil || v != 2 {
		t.Fatalf("version %d (%v), want the successor's 2", v, err)
	}
	if err := a.Unlock(); !errors.Is(err, dlock.ErrLost) {
		t.Fatalf("stale Unlock: %v", err)
	}
	if err := b.Unlock(); err != nil {
		t.Fatal(err)
	}
}

// TestUnlockAfterRestart: the server restarts while the lock is held; the
// pool's connections are dead. Unlock tries again on a new connection and
// releases (rather than leaving the lease to expire), and the lock is free.
func TestUnlockAfterRestart(t *testing.T) {
	tg := targets(t)[0]
	state := os.Getenv("PGLOCK_TEST_STATE")
	if state == "" {
		t.Skip("PGLOCK_TEST_STATE is not set: cannot restart the server")
	}
	p := newPool(t, tg.url, 2)
	name := lockName(t)
	l := newLock(t, p, name)
	if err := l.Lock(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("bash", "../scripts/postgres.sh", "restart", state).CombinedOutput(); err != nil {
		t.Fatalf("restart: %v: %s", err, out)
	}
	if err := l.Unlock(); err != nil {
		t.Fatalf("Unlock after a restart: %v", err)
	}
	next := newLock(t, p, name, pglock.WithPatience(0))
	ok, err := next.TryLock()
	if !ok || err != nil {
		t.Fatalf("TryLock after the release: %v %v", ok, err)
	}
	next.Unlock()
}

// TestCreateRace: on a database without the table, Locks in several
// processes' worth of pools race to create it on their first attempt (the
// migration example's 4 replicas on a fresh database): every one gets the
// lock in turn, none fails on the other's CREATE.
func TestCreateRace(t *testing.T) {
	tg := targets(t)[0]
	setup := newPool(t, tg.url, 1)
	for round := range 10 {
		table := fmt.Sprintf("pglock_create_race_%d", round)
		if _, err := setup.Exec(context.Background(), `DROP TABLE IF EXISTS `+table+`; DROP SEQUENCE IF EXISTS `+table+`_fence`); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 6)
		for range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				l := newLock(t, newPool(t, tg.url, 2), "create-race", pglock.WithTable(table))
				if err := l.Lock(ctxT(t, 30*time.Second)); err != nil {
					errs <- err
					return
				}
				errs <- l.Unlock()
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
}
