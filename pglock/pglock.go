package pglock

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	neturl "net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/benbjohnson/clock"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/lockdir/dlock"
)

var _ dlock.Locker = (*Lock)(nil)

// DefaultTable is the table the leases are kept in unless WithTable says
// otherwise; its fence sequence is DefaultTable + "_fence".
const DefaultTable = "dlock_leases"

// DefaultTimeout is TIMEOUT unless WithTimeout says otherwise.
const DefaultTimeout = 10 * time.Second

// Option configures a Lock.
type Option func(*config) error

type config struct {
	timeout, refresh, margin, patience, poll time.Duration
	table                                    string
	log                                      *slog.Logger
	clock                                    clock.Clock
	listen                                   listenMode
}

type listenMode int

const (
	listenAuto listenMode = iota
	listenOff
)

// WithTimeout sets TIMEOUT, the lease's length: a holder that has not
// refreshed its row for this long, by the database server's clock, has
// lost the lock and the next one may take it. Default 10 s; at least 1 ms
// granularity.
func WithTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d < 10*time.Millisecond {
			return fmt.Errorf("pglock: TIMEOUT %v is too short (at least 10ms)", d)
		}
		c.timeout = d
		return nil
	}
}

// WithRefresh sets how often the holder refreshes its lease (default
// TIMEOUT/3).
func WithRefresh(d time.Duration) Option {
	return func(c *config) error { c.refresh = d; return nil }
}

// WithMargin sets MARGIN: the holder gives the lock up (Lost is closed,
// Do's context cancelled) TIMEOUT - MARGIN after its last successful
// refresh was issued, so MARGIN before the server can let another holder
// in. Default min(TIMEOUT/5, (TIMEOUT-REFRESH)/2).
func WithMargin(d time.Duration) Option {
	return func(c *config) error { c.margin = d; return nil }
}

// WithPatience sets PATIENCE, how long Lock waits for another holder before
// it gives up with an error matching dlock.ErrBusy. 0 means one attempt;
// a negative value, the default, means no limit (ctx still bounds Lock).
func WithPatience(d time.Duration) Option {
	return func(c *config) error { c.patience = d; return nil }
}

// WithPollInterval sets how often a waiter tries again when no
// notification wakes it (default 100 ms, jittered to ¾–1×; 1 s while it
// listens for notifications).
func WithPollInterval(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("pglock: poll interval %v must be positive", d)
		}
		c.poll = d
		return nil
	}
}

// WithTable sets the table ("name" or "schema.name") the leases are kept
// in; it is created if missing, with a sequence of the same name plus
// "_fence". Every user of a lock must name the same table.
func WithTable(name string) Option {
	return func(c *config) error { c.table = name; return nil }
}

// WithListen(false) makes waiters poll only. By default waiters on a
// pgxpool.Pool of 3 connections or more listen for releases (LISTEN/NOTIFY,
// on one connection of the pool shared by the process's waiters) when its
// connections go straight to the server, and poll only when they do not
// (behind PgBouncer or another pooler, where a session's LISTEN would stay
// on a server connection other clients then use).
func WithListen(on bool) Option {
	return func(c *config) error {
		c.listen = listenAuto
		if !on {
			c.listen = listenOff
		}
		return nil
	}
}

// WithLogger sets where the Lock logs acquisitions, releases and losses.
// The default discards them.
func WithLogger(log *slog.Logger) Option {
	return func(c *config) error {
		if log == nil {
			log = slog.New(slog.DiscardHandler)
		}
		c.log = log
		return nil
	}
}

// WithClock sets the clock of the holder's timers (refresh, deadline) and
// of PATIENCE: github.com/benbjohnson/clock; tests pass a mock. Expiry is
// judged by the database server's clock whatever this says.
func WithClock(c clock.Clock) Option {
	return func(cfg *config) error {
		if c == nil {
			return errors.New("pglock: nil clock")
		}
		cfg.clock = c
		return nil
	}
}

// Lock is one holder of the lock with a name, kept as a lease row in a
// PostgreSQL table. Its methods may be called from several goroutines, but
// it holds at most one acquisition at a time: use one Lock per holder.
type Lock struct {
	q     querier
	pool  *pgxpool.Pool // for LISTEN; nil with a *sql.DB
	owned *pgxpool.Pool // made by Open: Close closes it
	name  string
	s     schema
	cfg   config
	host  string
	stmts struct{ acquire, refresh, release, inspect string }

	ensureMu     sync.Mutex
	behindPooler atomic.Bool // a connection showed another backend's pid: poll, do not LISTEN

	mu    sync.Mutex
	state int
	cur   *acquisition // the current or last acquisition
	lost  <-chan struct{}
}

const (
	idle = iota
	acquiring
	held
)

// New returns a Lock named name in the database that pool connects to. It
// does not contact the server; the table is created when first needed.
// Every statement stands alone, so pool may go through PgBouncer in
// transaction pooling.
func New(pool *pgxpool.Pool, name string, opts ...Option) (*Lock, error) {
	if pool == nil {
		return nil, errors.New("pglock: nil pool")
	}
	l, err := newLock(poolQuerier{pool}, name, opts)
	if err != nil {
		return nil, err
	}
	l.pool = pool
	return l, nil
}

// NewDB is New for a database/sql pool (pgx's stdlib driver, lib/pq, ...).
// Its waiters poll (no LISTEN). Behind PgBouncer older than 1.21 in
// transaction pooling, open db with a driver setting that sends no named
// prepared statements (pgx: default_query_exec_mode=exec in the DSN).
func NewDB(db *sql.DB, name string, opts ...Option) (*Lock, error) {
	if db == nil {
		return nil, errors.New("pglock: nil *sql.DB")
	}
	return newLock(sqlQuerier{db}, name, opts)
}

func newLock(q querier, name string, opts []Option) (*Lock, error) {
	if name == "" {
		return nil, errors.New("pglock: empty lock name")
	}
	if !utf8.ValidString(name) || strings.ContainsRune(name, 0) {
		return nil, fmt.Errorf("pglock: lock name %q: must be UTF-8 without NUL bytes", name)
	}
	cfg := config{
		timeout:  DefaultTimeout,
		margin:   -1,
		patience: -1,
		poll:     100 * time.Millisecond,
		table:    DefaultTable,
		log:      slog.New(slog.DiscardHandler),
		clock:    clock.New(),
	}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if cfg.refresh == 0 {
		cfg.refresh = cfg.timeout / 3
	}
	if cfg.margin < 0 {
		cfg.margin = min(cfg.timeout/5, (cfg.timeout-cfg.refresh)/2)
	}
	switch {
	case cfg.refresh <= 0 || cfg.refresh >= cfg.timeout:
		return nil, fmt.Errorf("pglock: refresh %v must be positive and shorter than TIMEOUT %v", cfg.refresh, cfg.timeout)
	case cfg.margin <= 0 || cfg.refresh+cfg.margin >= cfg.timeout:
		return nil, fmt.Errorf("pglock: margin %v must be positive, and with refresh %v shorter than TIMEOUT %v", cfg.margin, cfg.refresh, cfg.timeout)
	}
	s, err := newSchema(cfg.table)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	l := &Lock{q: q, name: name, s: s, cfg: cfg, host: host, lost: make(chan struct{})}
	l.stmts.acquire, l.stmts.refresh = s.acquireSQL(), s.refreshSQL()
	l.stmts.release, l.stmts.inspect = s.releaseSQL(), s.inspectSQL()
	return l, nil
}

// Name returns the lock's name.
func (l *Lock) Name() string { return l.name }

// Table returns the table the lock's lease is kept in.
func (l *Lock) Table() string { return l.s.plain }

// Timeout returns TIMEOUT.
func (l *Lock) Timeout() time.Duration { return l.cfg.timeout }

// Margin returns MARGIN.
func (l *Lock) Margin() time.Duration { return l.cfg.margin }

// Fence returns the fencing token of the current or last acquisition (0
// before the first). Fences come from a sequence, and an acquisition that
// takes over a row takes GREATEST(nextval, old fence + 1) under its lock
// (a release leaves the row, free), so they rise from one holder to the
// next, even over a reset sequence; a row deleted by hand is made anew
// from the sequence. Hand it to what the lock guards:
//
//	UPDATE t SET ..., fence = $1 WHERE id = $2 AND fence <= $1
func (l *Lock) Fence() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur == nil {
		return 0
	}
	return uint64(l.cur.fence)
}

// Lost returns a channel that is closed when the current (or last)
// acquisition is lost: at its deadline, TIMEOUT - MARGIN after its last
// successful refresh was issued, or when a refresh finds the row gone or
// taken. It is not closed by Unlock.
func (l *Lock) Lost() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lost
}

// Do acquires the lock, runs fn while holding it and releases it; see
// dlock.Do. fn's context is cancelled with cause dlock.ErrLost at the
// deadline, even if the server does not answer.
func (l *Lock) Do(ctx context.Context, fn func(ctx context.Context) error) error {
	return dlock.Do(ctx, l, fn)
}

// Lock waits until it holds the lock, ctx is done, or PATIENCE runs out (a
// *dlock.BusyError naming the holder, matching dlock.ErrBusy). While the
// server cannot be reached it keeps trying as long as ctx and PATIENCE
// allow (at least TIMEOUT when PATIENCE is shorter).
func (l *Lock) Lock(ctx context.Context) error {
	return l.lock(ctx, l.cfg.patience, false)
}

// TryLock makes one attempt: (false, nil) when another holds the lock. It
// waits for the server at most TIMEOUT.
func (l *Lock) TryLock() (bool, error) {
	err := l.lock(context.Background(), 0, true)
	if errors.Is(err, dlock.ErrBusy) {
		return false, nil
	}
	return err == nil, err
}

func (l *Lock) lock(ctx context.Context, patience time.Duration, try bool) error {
	l.mu.Lock()
	switch l.state {
	case held:
		var why string
		if l.cur.isGone() {
			why = " (it was lost: call Unlock first)"
		}
		l.mu.Unlock()
		return fmt.Errorf("pglock: %s: %w%s", l.name, dlock.ErrHeld, why)
	case acquiring:
		l.mu.Unlock()
		return fmt.Errorf("pglock: %s: %w", l.name, dlock.ErrHeld)
	}
	l.state = acquiring
	l.mu.Unlock()

	a, err := l.acquire(ctx, patience, try)

	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.state = idle
		return err
	}
	l.state = held
	l.cur = a
	l.lost = a.gone
	a.start()
	return nil
}

// record is the holder record kept in the row: who holds it.
type record struct {
	PID       int       `json:"pid"`
	Host      string    `json:"host"`
	Since     time.Time `json:"since"`
	TimeoutMS int64     `json:"timeout_ms"`
}

func holderOf(fence int64, rec, token string) dlock.Holder {
	h := dlock.Holder{Fence: uint64(fence), Token: token, Entry: rec}
	var r record
	if err := json.Unmarshal([]byte(rec), &r); err != nil || r.PID == 0 {
		h.Unknown = true
		return h
	}
	h.PID, h.Host, h.Since = r.PID, r.Host, r.Since
	h.Timeout = time.Duration(r.TimeoutMS) * time.Millisecond
	return h
}

// Inspect returns who holds the lock (held is false when nobody does, or
// its lease has expired) and how long ago it refreshed its lease, by the
// server's clock. It costs one read.
func (l *Lock) Inspect(ctx context.Context) (h dlock.Holder, age time.Duration, held bool, err error) {
	var fence, ageMS, leftMS int64
	var rec, token string
	found, err := l.q.row(ctx, l.stmts.inspect, []any{l.name}, &fence, &rec, &token, &ageMS, &leftMS)
	if isUndefinedTable(err) {
		return dlock.Holder{}, 0, false, nil
	}
	if err != nil || !found {
		if err != nil {
			err = fmt.Errorf("pglock: %s: inspecting: %w", l.name, err)
		}
		return dlock.Holder{}, 0, false, err
	}
	h = holderOf(fence, rec, token)
	h.Token = "" // the token is the holder's only proof of ownership; keep it out of messages
	return h, time.Duration(ageMS) * time.Millisecond, true, nil
}

// describeNow says who holds the lock now, in at most a second.
func (l *Lock) describeNow() string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	h, _, held, err := l.Inspect(ctx)
	switch {
	case err != nil:
		return "who holds it now is unknown (the server did not answer within 1s)"
	case !held:
		return "nobody holds it now"
	}
	return fmt.Sprintf("it is held by %s (fence %d) now", h, h.Fence)
}

// attemptResult is what one acquiring statement found.
type attemptResult struct {
	ok     bool
	fence  int64
	holder dlock.Holder
	left   time.Duration // until the holder's lease expires, by the server's clock
	raced  bool          // the row changed under the statement: no holder seen
}

// attempt runs the acquiring statement once (creating the table first if
// it is missing).
func (l *Lock) attempt(ctx context.Context, token, rec string) (attemptResult, error) {
	var r attemptResult
	var hrec string
	var leftMS int64
	args := []any{l.name, token, rec, l.cfg.timeout.Milliseconds()}
	found, err := l.q.row(ctx, l.stmts.acquire, args, &r.ok, &r.fence, &hrec, &leftMS)
	if isUndefinedTable(err) {
		if err = l.ensure(ctx); err != nil {
			return r, err
		}
		found, err = l.q.row(ctx, l.stmts.acquire, args, &r.ok, &r.fence, &hrec, &leftMS)
	}
	if err != nil {
		return r, err
	}
	if !found || (!r.ok && leftMS == 0) {
		// the row changed under the statement: taken by another from a
		// holder whose lease had ended, so what it shows is not the
		// holder now
		r.raced = true
		return r, nil
	}
	if !r.ok {
		r.holder = holderOf(r.fence, hrec, "")
		r.left = time.Duration(leftMS) * time.Millisecond
	}
	return r, nil
}

// ensure creates the table and its sequence, when a statement found them
// missing (first use, or dropped since).
func (l *Lock) ensure(ctx context.Context) error {
	l.ensureMu.Lock()
	defer l.ensureMu.Unlock()
	return l.s.ensure(ctx, l.q)
}

func newToken() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// transient tells whether err may go away if we try again: the server or
// the network failed, or a pooler is paused or restarting, rather than the
// statement being wrong or refused.
func transient(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"), // connection exception
			strings.HasPrefix(pe.Code, "57P"),      // admin shutdown, crash shutdown, cannot connect now
			strings.HasPrefix(pe.Code, "53"),       // insufficient resources (too many connections)
			pe.Code == "40001", pe.Code == "40P01", // serialization failure, deadlock
			pe.Code == "42P01", // the table, just made by another, not yet seen
			pe.Code == "55000" && strings.Contains(pe.Message, "recovery"):
			return true
		}
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return true
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	s := err.Error()
	return strings.Contains(s, "conn closed") || strings.Contains(s, "EOF") ||
		strings.Contains(s, "connection reset") || strings.Contains(s, "broken pipe") ||
		strings.Contains(s, "connection refused") || strings.Contains(s, "bad connection") ||
		strings.Contains(s, "server closed") || strings.Contains(s, "pgbouncer")
}

func (l *Lock) acquire(ctx context.Context, patience time.Duration, try bool) (*acquisition, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("pglock: %s: %w", l.name, context.Cause(ctx))
	}
	c := l.cfg.clock
	start := c.Now()
	// How long to keep trying while the server does not answer: ctx, and
	// with PATIENCE set, the larger of PATIENCE and TIMEOUT.
	rpcCtx := ctx
	if patience >= 0 {
		var cancel context.CancelFunc
		rpcCtx, cancel = context.WithTimeout(ctx, max(patience, l.cfg.timeout))
		defer cancel()
	}
	var expired <-chan time.Time
	if patience > 0 {
		t := c.Timer(patience)
		defer t.Stop()
		expired = t.C
	}
	token := newToken()

	var ln *listener
	defer func() {
		if ln != nil {
			ln.close()
		}
	}()
	backoff := 50 * time.Millisecond
	var last attemptResult
	var lastErr error
	raced := 0
	for {
		rec, _ := json.Marshal(record{PID: os.Getpid(), Host: l.host, Since: time.Now().UTC(), TimeoutMS: l.cfg.timeout.Milliseconds()})
		issued := c.Now()
		r, err := l.attemptIn(rpcCtx, token, string(rec))
		if err == nil && r.ok {
			a := newAcquisition(l, r.fence, token, issued)
			l.cfg.log.Debug("pglock: acquired", "name", l.name, "fence", r.fence, "waited", c.Since(start))
			return a, nil
		}
		wait := l.cfg.poll
		if err != nil {
			if !transient(err) {
				return nil, fmt.Errorf("pglock: %s: acquiring: %w", l.name, err)
			}
			lastErr = err
			if try || rpcCtx.Err() != nil {
				return nil, l.unreachable(ctx, err)
			}
			l.cfg.log.Debug("pglock: acquiring, will retry", "name", l.name, "err", err)
			wait, backoff = backoff, min(2*backoff, time.Second)
		} else {
			lastErr = nil
			backoff = 50 * time.Millisecond
			if r.raced && raced < 3 {
				// the row changed under the statement (acquired or released
				// by another meanwhile): look again at once
				raced++
				continue
			}
			raced = 0
			if !r.raced {
				last = r
			}
			if try || patience == 0 {
				return nil, l.busy(last, start)
			}
			if ln == nil && l.cfg.listen == listenAuto && l.pool != nil {
				ln = l.listen(rpcCtx)
				if ln != nil {
					continue // listening now: look again before waiting
				}
			}
			if ln != nil && ln.dead() {
				ln.close() // its connection failed (the server restarted?): poll until the next LISTEN
				ln = nil
			}
			if ln != nil {
				wait = max(wait, time.Second)
			}
			if !r.raced {
				// no earlier than the lease can expire by the server's clock
				wait = min(wait, r.left+time.Millisecond)
			}
			wait = wait*3/4 + mrand.N(wait/4+1)
		}
		t := c.Timer(wait)
		var woken <-chan struct{}
		if ln != nil {
			woken = ln.woken
		}
		select {
		case <-t.C:
		case <-woken:
			t.Stop()
		case <-expired:
			t.Stop()
			if lastErr != nil {
				return nil, l.unreachable(ctx, lastErr)
			}
			return nil, l.busy(last, start)
		case <-rpcCtx.Done():
			t.Stop()
			if ctx.Err() != nil {
				return nil, fmt.Errorf("pglock: %s: waiting for %s: %w", l.name, last.holder, context.Cause(ctx))
			}
			if lastErr != nil {
				return nil, l.unreachable(ctx, lastErr)
			}
			return nil, l.busy(last, start)
		}
	}
}

// attemptIn runs an attempt that returns when ctx ends even if the server
// never answers; an attempt that acquires after that is released at once.
func (l *Lock) attemptIn(ctx context.Context, token, rec string) (attemptResult, error) {
	type res struct {
		r   attemptResult
		err error
	}
	ch := make(chan res, 1)
	var mu sync.Mutex
	abandoned := false
	issued := l.cfg.clock.Now()
	go func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.cfg.timeout)
		defer cancel()
		r, err := l.attempt(sctx, token, rec)
		mu.Lock()
		defer mu.Unlock()
		if !abandoned {
			ch <- res{r, err}
			return
		}
		if err == nil && r.ok {
			a := newAcquisition(l, r.fence, token, issued)
			l.cfg.log.Warn("pglock: releasing a lock acquired after Lock gave up", "name", l.name, "fence", r.fence)
			a.release(l.cfg.timeout)
		}
	}()
	select {
	case x := <-ch:
		return x.r, x.err
	case <-ctx.Done():
	}
	mu.Lock()
	defer mu.Unlock()
	select {
	case x := <-ch:
		return x.r, x.err
	default:
	}
	abandoned = true
	return attemptResult{}, fmt.Errorf("gave up while an attempt was waiting for the server: %w", context.Cause(ctx))
}

func (l *Lock) unreachable(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("pglock: %s: %w (the server did not answer: %v)", l.name, context.Cause(ctx), err)
	}
	return fmt.Errorf("pglock: %s: the server could not be reached to acquire the lock: %w", l.name, err)
}

func (l *Lock) busy(r attemptResult, start time.Time) error {
	h := r.holder
	var age time.Duration
	if h.Timeout > 0 {
		age = max(h.Timeout-r.left, 0)
	}
	return &dlock.BusyError{Path: l.s.plain + ":" + l.name, Holder: h, Age: age, Waited: l.cfg.clock.Since(start)}
}

// Unlock releases the lock: dlock.ErrNotHeld if this Lock does not hold
// it, an error matching dlock.ErrLost if it was lost meanwhile (its
// deadline passed, or the row was taken). It frees the row only if it
// still carries this acquisition's fence and token, so it never frees a
// successor. It waits for the server until the deadline at most (or, past
// it, MARGIN); if the server does not answer, the lease expires on its
// own.
func (l *Lock) Unlock() error {
	l.mu.Lock()
	if l.state != held {
		l.mu.Unlock()
		return fmt.Errorf("pglock: %s: %w", l.name, dlock.ErrNotHeld)
	}
	a := l.cur
	l.state = idle
	l.mu.Unlock()

	wait := a.stopForRelease()
	err := a.release(wait)
	if errors.Is(err, errNoAnswer) {
		// waited until the deadline: the lease is left to expire, and the
		// holder must act as if it had lost the lock
		a.markGone(fmt.Sprintf("the release was not answered by the deadline (TIMEOUT %v - MARGIN %v after the last refresh issued): %v; the lease expires on its own", l.cfg.timeout, l.cfg.margin, err))
	}
	why, lost := a.lostReason()
	switch {
	case lost:
		return &dlock.LostError{Path: l.s.plain + ":" + l.name, Fence: uint64(a.fence), Why: why, Now: l.describeNow()}
	case errors.Is(err, errNotOurs):
		a.markGone("its row was gone or held by another acquisition when released")
		return &dlock.LostError{Path: l.s.plain + ":" + l.name, Fence: uint64(a.fence), Why: "the row was no longer this acquisition's", Now: l.describeNow()}
	case err != nil:
		return fmt.Errorf("pglock: %s: releasing fence %d: %w (its lease expires within TIMEOUT %v)", l.name, a.fence, err, l.cfg.timeout)
	}
	l.cfg.log.Debug("pglock: released", "name", l.name, "fence", a.fence)
	return nil
}

var (
	errNotOurs  = errors.New("the row is not this acquisition's")
	errNoAnswer = errors.New("the server did not answer")
)

// Open connects to the PostgreSQL server at url ("postgres://…" or
// "postgresql://…", as pgx takes it) and returns the Lock named name on it,
// with a pool of its own that Close closes. When name is "", the URL's
// fragment names the lock ("postgres://db/app#migrate", so that it can be
// appended to a DATABASE_URL that has a query), or else its query
// parameter "lock"; "lock_table" sets WithTable. They are removed before
// the URL is handed to pgx. It does not contact the server.
func Open(url, name string, opts ...Option) (*Lock, error) {
	cfg, name, table, err := parseURL(url, name)
	if err != nil {
		return nil, err
	}
	if table != "" {
		opts = append([]Option{WithTable(table)}, opts...)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("pglock: connecting to %s: %w", redact(url), err)
	}
	l, err := New(pool, name, opts...)
	if err != nil {
		pool.Close()
		return nil, err
	}
	l.owned = pool
	return l, nil
}

// Close closes the pool Open made (nothing for a Lock made by New or
// NewDB). Call it after Unlock.
func (l *Lock) Close() {
	if l.owned != nil {
		l.owned.Close()
	}
}

// parseURL takes the lock's name and table out of url's query.
func parseURL(raw, name string) (*pgxpool.Config, string, string, error) {
	if !strings.HasPrefix(raw, "postgres://") && !strings.HasPrefix(raw, "postgresql://") {
		return nil, "", "", fmt.Errorf("pglock: %s is not a postgres:// or postgresql:// URL", redact(raw))
	}
	u, err := neturl.Parse(raw)
	if err != nil {
		return nil, "", "", fmt.Errorf("pglock: bad URL %s: %v", redact(raw), err)
	}
	q := u.Query()
	if name == "" {
		name = u.Fragment
	}
	if name == "" {
		name = q.Get("lock")
	}
	table := q.Get("lock_table")
	q.Del("lock")
	q.Del("lock_table")
	u.RawQuery = q.Encode()
	u.Fragment, u.RawFragment = "", ""
	if name == "" {
		return nil, "", "", fmt.Errorf("pglock: %s names no lock: add #NAME or ?lock=NAME", redact(raw))
	}
	cfg, err := pgxpool.ParseConfig(u.String())
	if err != nil {
		return nil, "", "", fmt.Errorf("pglock: bad URL %s: %v", redact(raw), err)
	}
	if cfg.MaxConns > 4 && !q.Has("pool_max_conns") {
		cfg.MaxConns = 4
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "pglock"
	}
	return cfg, name, table, nil
}

// redact hides a password in a URL for messages.
func redact(raw string) string {
	u, err := neturl.Parse(raw)
	if err != nil || u.User == nil {
		if err != nil {
			return "the URL"
		}
		return raw
	}
	if _, ok := u.User.Password(); ok {
		u.User = neturl.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}
