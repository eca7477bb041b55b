package pglock_test

// The migration users' failure cases side by side with pglock on the same
// servers: a session advisory lock the way golang-migrate (Atlas, Rails,
// tern, goose's SessionLocker, Flyway) takes it, through PgBouncer in
// transaction pooling; and a lock row without a lease (Liquibase's
// DATABASECHANGELOGLOCK) whose holder is killed.

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/lockdir/dlock/pglock"
)

// counterRun is what one way of locking did with sessions counting in a
// table row: increments kept, rounds in which two or more sessions were
// inside at once, sessions that never finished (blocked or failed).
type counterRun struct {
	kept, rounds, overlaps, stuck int
	warnings                      int
	took                          time.Duration
}

func (r counterRun) String() string {
	return fmt.Sprintf("%d of %d increments kept, %d overlapping rounds, %d of the sessions stuck or failed, %d server warnings, %v",
		r.kept, r.rounds, r.overlaps, r.stuck, r.warnings, r.took.Round(time.Millisecond))
}

// The counting, as the issue measured it: sessions x rounds of lock, a
// read, an update of the value read + 1, unlock.
const peerSessions, peerRounds = 8, 25

// peerBudget bounds one run: a session still blocked then counts as stuck.
var peerBudget = envDur("PGLOCK_PEER_BUDGET", 10*time.Second)

func counterTable(t *testing.T, url, table string) {
	t.Helper()
	var err error
	for range 5 { // see readCounter
		p := newPool(t, url, 1)
		_, err = p.Exec(context.Background(), `CREATE TABLE IF NOT EXISTS `+table+` (id int PRIMARY KEY, n bigint NOT NULL);
		INSERT INTO `+table+` VALUES (1, 0) ON CONFLICT (id) DO UPDATE SET n = 0`)
		p.Close()
		if err == nil {
			return
		}
		t.Logf("setting up the count: %v (trying again)", err)
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatal(err)
}

// readCounter reads the count. Right after the advisory run, whose cut-off
// sessions' server connections were terminated, PgBouncer 1.18 has once in
// a while refused the next client with "FATAL: invalid server parameter"
// (08P01, its own, about a server connection it set up): a new connection
// is tried then, as pglock's statements would.
func readCounter(t *testing.T, url, table string) int {
	var err error
	for range 5 {
		p := newPool(t, url, 1)
		var n int
		err = p.QueryRow(context.Background(), `SELECT n FROM `+table+` WHERE id = 1`).Scan(&n)
		p.Close()
		if err == nil {
			return n
		}
		t.Logf("reading the count: %v (trying again)", err)
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatal(err)
	return 0
}

// advisoryRun: each session is one connection (golang-migrate holds one
// *sql.Conn for its lock), taking pg_advisory_lock(42) and releasing it
// with pg_advisory_unlock(42), as separate statements.
func advisoryRun(t *testing.T, url string) counterRun {
	table := "pglock_peer_advisory"
	counterTable(t, url, table)
	var inside, overlaps, stuck, warnings atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), peerBudget)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for range peerSessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg, err := pgx.ParseConfig(url)
			if err != nil {
				t.Error(err)
				return
			}
			cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
			cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
				if strings.Contains(n.Message, "you don't own a lock") {
					warnings.Add(1)
				}
			}
			c, err := pgx.ConnectConfig(ctx, cfg)
			if err != nil {
				stuck.Add(1)
				return
			}
			defer c.Close(context.Background())
			for range peerRounds {
				if _, err := c.Exec(ctx, `SELECT pg_advisory_lock(42)`); err != nil {
					stuck.Add(1)
					return
				}
				if inside.Add(1) != 1 {
					overlaps.Add(1)
				}
				var n int
				err := c.QueryRow(ctx, `SELECT n FROM `+table+` WHERE id = 1`).Scan(&n)
				if err == nil {
					time.Sleep(time.Millisecond)
					_, err = c.Exec(ctx, `UPDATE `+table+` SET n = $1 WHERE id = 1`, n+1)
				}
				inside.Add(-1)
				if err != nil {
					stuck.Add(1)
					return
				}
				if _, err := c.Exec(ctx, `SELECT pg_advisory_unlock(42)`); err != nil {
					stuck.Add(1)
					return
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	// Sessions that were cut off leave their server connections holding
	// the advisory lock; clear them for the next run.
	clear := newPool(t, strings.Replace(url, os.Getenv(envBouncer), os.Getenv(envDirect), 1), 1)
	clear.Exec(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND objid = 42 AND pid <> pg_backend_pid()`)
	return counterRun{kept: readCounter(t, url, table), rounds: peerSessions * peerRounds,
		overlaps: int(overlaps.Load()), stuck: int(stuck.Load()), warnings: int(warnings.Load()), took: took}
}

// pglockRun: the same sessions, each a pglock.Lock on a pool of its own
// (one connection, like the advisory lock's session).
func pglockRun(t *testing.T, url string) counterRun {
	table := "pglock_peer_pglock"
	counterTable(t, url, table)
	name := lockName(t)
	var inside, overlaps, stuck atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 6*peerBudget)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for range peerSessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := newPool(t, url, 1)
			l := newLock(t, p, name)
			for range peerRounds {
				err := l.Do(ctx, func(ctx context.Context) error {
					if inside.Add(1) != 1 {
						overlaps.Add(1)
					}
					defer inside.Add(-1)
					var n int
					if err := p.QueryRow(ctx, `SELECT n FROM `+table+` WHERE id = 1`).Scan(&n); err != nil {
						return err
					}
					time.Sleep(time.Millisecond)
					_, err := p.Exec(ctx, `UPDATE `+table+` SET n = $1 WHERE id = 1`, n+1)
					return err
				})
				if err != nil {
					t.Log(err)
					stuck.Add(1)
					return
				}
			}
		}()
	}
	wg.Wait()
	return counterRun{kept: readCounter(t, url, table), rounds: peerSessions * peerRounds,
		overlaps: int(overlaps.Load()), stuck: int(stuck.Load()), took: time.Since(start)}
}

// TestPeersAdvisoryBehindPgBouncer counts what golang-migrate's way of
// locking does through PgBouncer in transaction pooling (pool of 4 server
// connections), and pglock on the same setup. pglock must be exact; the
// advisory lock's numbers are reported (they vary from run to run).
func TestPeersAdvisoryBehindPgBouncer(t *testing.T) {
	tgs := targets(t)
	rows := []string{}
	for _, tg := range tgs {
		a := advisoryRun(t, tg.url)
		rows = append(rows, fmt.Sprintf("pg_advisory_lock (golang-migrate's way), %-9s: %v", tg.name, a))
		if tg.name == "direct" && (a.kept != a.rounds || a.overlaps != 0) {
			t.Errorf("the advisory lock straight to the server should be exact: %v", a)
		}
		p := pglockRun(t, tg.url)
		rows = append(rows, fmt.Sprintf("pglock,                                %-9s: %v", tg.name, p))
		if p.kept != p.rounds || p.overlaps != 0 || p.stuck != 0 {
			t.Errorf("pglock through %s: %v", tg.name, p)
		}
	}
	t.Logf("%d sessions x %d rounds of lock, read, write the value read + 1, unlock (a session blocked for %v counts as stuck):\n  %s",
		peerSessions, peerRounds, peerBudget, strings.Join(rows, "\n  "))
}

// TestPeersRowLockKilledHolder: a holder killed (SIGKILL) while holding.
// A lock row without a lease stays taken: a waiter polling it for
// 3 x TIMEOUT never gets it. pglock's waiter gets it once the lease
// expires, TIMEOUT after the holder's last refresh.
func TestPeersRowLockKilledHolder(t *testing.T) {
	tgs := targets(t)
	url := tgs[1].url // through PgBouncer: where the migration pools are
	const timeout = 2 * time.Second
	setup := newPool(t, url, 1)
	if _, err := setup.Exec(context.Background(), `CREATE TABLE IF NOT EXISTS pglock_test_changeloglock (id int PRIMARY KEY, locked bool NOT NULL, lockedby text);
		INSERT INTO pglock_test_changeloglock VALUES (1, false, NULL) ON CONFLICT (id) DO UPDATE SET locked = false, lockedby = NULL`); err != nil {
		t.Fatal(err)
	}

	// the lock row
	t0 := time.Now()
	rh := startProc(t, t0, "rowholder", "rowholder", "R_URL="+url)
	rh.waitEvent(t, "acquired", 20*time.Second)
	rh.cmd.Process.Signal(syscall.SIGKILL)
	killedRow := time.Since(t0)
	rowGot := time.Duration(-1)
	for time.Since(t0)-killedRow < 3*timeout {
		tag, err := setup.Exec(context.Background(), `UPDATE pglock_test_changeloglock SET locked = true, lockedby = 'waiter' WHERE id = 1 AND NOT locked`)
		if err != nil {
			t.Fatal(err)
		}
		if tag.RowsAffected() == 1 {
			rowGot = time.Since(t0) - killedRow
			break
		}
		time.Sleep(100 * time.Millisecond)
	}

	// pglock
	name := lockName(t)
	t1 := time.Now()
	h := startProc(t, t1, "holder", "holder", "R_URL="+url, "R_NAME="+name, "R_TIMEOUT="+timeout.String(), "R_HOLD=1h")
	h.waitEvent(t, "acquired", 20*time.Second)
	h.cmd.Process.Signal(syscall.SIGKILL)
	killed := time.Since(t1)
	w := newLock(t, newPool(t, url, 2), name, pglock.WithTimeout(timeout))
	if err := w.Lock(ctxT(t, 3*timeout)); err != nil {
		t.Fatalf("pglock: the waiter did not get the lock of a killed holder within 3 x TIMEOUT: %v", err)
	}
	got := time.Since(t1) - killed
	w.Unlock()
	rowSays := "never (still locked; a person must clear it)"
	if rowGot >= 0 {
		rowSays = rowGot.Round(time.Millisecond).String()
	}
	t.Logf("holder killed (SIGKILL) while holding, through PgBouncer; a waiter asking for %v:\n  lock row without a lease (Liquibase's way): acquired after %s\n  pglock (TIMEOUT %v):                         acquired after %v",
		3*timeout, rowSays, timeout, got.Round(time.Millisecond))
	if got > timeout+500*time.Millisecond {
		t.Errorf("pglock took %v after the kill, more than TIMEOUT %v (+500ms)", got, timeout)
	}
}

// TestPeersAdvisoryBackendKilled: the holder of a session advisory lock
// loses it the moment its backend is killed (a failover, an idle-session
// reaper, an operator), and nothing tells it: a waiter has the lock at
// once while the holder works on. pglock's holder keeps its lease through
// the same kill (TestFaults, first row).
func TestPeersAdvisoryBackendKilled(t *testing.T) {
	url := targets(t)[0].url
	conn := func(app string) *pgx.Conn {
		cfg, err := pgx.ParseConfig(url)
		if err != nil {
			t.Fatal(err)
		}
		cfg.RuntimeParams["application_name"] = app
		c, err := pgx.ConnectConfig(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}
	holder, waiter := conn("advisory-holder"), conn("advisory-waiter")
	if _, err := holder.Exec(context.Background(), `SELECT pg_advisory_lock(4343)`); err != nil {
		t.Fatal(err)
	}
	got := make(chan time.Time, 1)
	go func() {
		if _, err := waiter.Exec(ctxT(t, 20*time.Second), `SELECT pg_advisory_lock(4343)`); err != nil {
			t.Error(err)
		}
		got <- time.Now()
	}()
	time.Sleep(300 * time.Millisecond)
	killedAt := time.Now()
	if n := terminate(t, url, "advisory-holder"); n != 1 {
		t.Fatalf("killed %d backends", n)
	}
	var at time.Time
	select {
	case at = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter did not get the advisory lock after the holder's backend was killed")
	}
	// The holder, between statements, has had no word of it.
	t.Logf("pg_advisory_lock: the holder's backend killed; the waiter acquired %v later; the holder was told nothing (it learns only at its next statement, if that fails)",
		at.Sub(killedAt).Round(time.Millisecond))
	waiter.Exec(context.Background(), `SELECT pg_advisory_unlock(4343)`)
}
