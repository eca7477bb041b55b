package pglock

// The holder's side of the lease: the refresh, the deadline, the release.
//
// Each acquisition has a deadline on the holder's own clock: when its last
// successful refresh (or the acquiring statement) was issued, plus TIMEOUT,
// minus MARGIN. The server sets the lease's expiry to its clock_timestamp()
// when it runs the statement plus TIMEOUT, which is no earlier than the
// statement's issue plus TIMEOUT; so no other holder can get in before the
// deadline plus MARGIN, whatever the network, the pooler or the server do
// with the statement meanwhile (only the two clocks' rates matter, not
// their settings). At the deadline Lost is closed by a timer of the
// holder's, never by the answer of a statement.

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

type acquisition struct {
	l     *Lock
	fence int64
	token string
	gone  chan struct{} // closed when lost
	stop  chan struct{} // closed when released: the refresh loop ends

	mu        sync.Mutex
	deadline  time.Time
	issued    time.Time // of the last successful refresh (or the acquiring statement)
	isLost    bool
	why       string
	releasing bool
	expiry    *clock.Timer
}

func newAcquisition(l *Lock, fence int64, token string, issued time.Time) *acquisition {
	return &acquisition{
		l: l, fence: fence, token: token,
		gone: make(chan struct{}), stop: make(chan struct{}),
		issued: issued, deadline: issued.Add(l.cfg.timeout - l.cfg.margin),
	}
}

// start arms the deadline and starts refreshing.
func (a *acquisition) start() {
	c := a.l.cfg.clock
	a.mu.Lock()
	a.expiry = c.AfterFunc(a.deadline.Sub(c.Now()), a.expire)
	a.mu.Unlock()
	go a.refreshLoop()
}

func (a *acquisition) isGone() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.isLost
}

func (a *acquisition) lostReason() (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.why, a.isLost
}

func (a *acquisition) markGone(why string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.markGoneLocked(why)
}

func (a *acquisition) markGoneLocked(why string) {
	if a.isLost {
		return
	}
	a.isLost, a.why = true, why
	close(a.gone)
	if a.expiry != nil {
		a.expiry.Stop()
	}
	a.l.cfg.log.Warn("pglock: lock lost", "name", a.l.name, "fence", a.fence, "reason", why)
}

// expire gives the lock up when its deadline has passed; it runs on the
// deadline timer and waits for no statement.
func (a *acquisition) expire() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.releasing || a.isLost || a.l.cfg.clock.Now().Before(a.deadline) {
		return
	}
	a.markGoneLocked(fmt.Sprintf("no refresh succeeded within TIMEOUT %v - MARGIN %v of the last one issued: the server (or the way to it) did not answer, or failed",
		a.l.cfg.timeout, a.l.cfg.margin))
}

// refreshLoop refreshes the lease every REFRESH; a refresh that succeeds
// moves the deadline to when it was issued plus TIMEOUT - MARGIN, one that
// fails is retried until the deadline gives the lock up. A refresh that
// finds the row gone, taken or expired loses the lock at once.
func (a *acquisition) refreshLoop() {
	l := a.l
	c := l.cfg.clock
	a.mu.Lock()
	wait := l.cfg.refresh - c.Since(a.issued)
	a.mu.Unlock()
	for {
		t := c.Timer(max(wait, 0))
		select {
		case <-a.stop:
			t.Stop()
			return
		case <-a.gone:
			t.Stop()
			return
		case <-t.C:
		}
		a.mu.Lock()
		deadline := a.deadline
		a.mu.Unlock()
		issued := c.Now()
		if !issued.Before(deadline) {
			a.expire()
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), deadline.Sub(issued))
		var f int64
		found, err := l.q.row(ctx, l.stmts.refresh, []any{l.name, a.fence, a.token, l.cfg.timeout.Milliseconds()}, &f)
		cancel()
		a.mu.Lock()
		if a.releasing || a.isLost {
			a.mu.Unlock()
			return
		}
		switch {
		case err == nil && found:
			if issued.Before(a.deadline) {
				a.issued = issued
				a.deadline = issued.Add(l.cfg.timeout - l.cfg.margin)
				a.expiry.Reset(a.deadline.Sub(c.Now()))
			}
			wait = l.cfg.refresh - c.Since(issued)
		case err == nil || isUndefinedTable(err):
			a.markGoneLocked("a refresh found its row gone, taken by another holder, or expired by the server's clock")
			a.mu.Unlock()
			return
		default:
			l.cfg.log.Warn("pglock: refresh failed; retrying", "name", l.name, "fence", a.fence, "err", err, "deadline in", a.deadline.Sub(c.Now()))
			wait = min(l.cfg.refresh, l.cfg.poll)
		}
		a.mu.Unlock()
	}
}

// stopForRelease stops refreshing and the deadline, and says how long a
// release may wait for the server: until the deadline, or MARGIN once it
// has passed (then the acquisition counts as lost).
func (a *acquisition) stopForRelease() time.Duration {
	c := a.l.cfg.clock
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.isLost && !c.Now().Before(a.deadline) {
		a.markGoneLocked(fmt.Sprintf("its deadline (TIMEOUT %v - MARGIN %v after the last refresh issued) passed before Unlock", a.l.cfg.timeout, a.l.cfg.margin))
	}
	a.releasing = true
	if a.expiry != nil {
		a.expiry.Stop()
	}
	select {
	case <-a.stop:
	default:
		close(a.stop)
	}
	if a.isLost {
		return a.l.cfg.margin
	}
	return a.deadline.Sub(c.Now())
}

// release marks the row free if it is still this acquisition's, waiting
// for the server at most wait (the statement itself is given TIMEOUT, so a
// late one still lands on the row it means, or on nothing).
func (a *acquisition) release(wait time.Duration) error {
	l := a.l
	type res struct {
		found, valid bool
		err          error
	}
	ch := make(chan res, 1)
	go func() {
		// A connection that failed (PgBouncer or the server restarted) is
		// tried again within TIMEOUT: the statement can only free this
		// acquisition's row, whenever it lands.
		ctx, cancel := context.WithTimeout(context.Background(), l.cfg.timeout)
		defer cancel()
		backoff := 20 * time.Millisecond
		for {
			var valid, nul bool
			found, err := l.q.row(ctx, l.stmts.release, []any{l.name, a.fence, a.token, payloadOf(l.s.plain, l.name)}, &valid, &nul)
			if err == nil || !transient(err) || ctx.Err() != nil {
				ch <- res{found, valid, err}
				return
			}
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				ch <- res{found, valid, err}
				return
			}
			backoff = min(2*backoff, 500*time.Millisecond)
		}
	}()
	t := l.cfg.clock.Timer(max(wait, time.Millisecond))
	defer t.Stop()
	select {
	case r := <-ch:
		switch {
		case r.err != nil:
			return r.err
		case !r.found:
			return errNotOurs
		case !r.valid:
			a.markGone("its lease had already expired by the server's clock when it was released")
		}
		return nil
	case <-t.C:
		return fmt.Errorf("%w within %v", errNoAnswer, wait.Round(time.Millisecond))
	}
}

// listener wakes a waiter when a release of its lock is announced.
type listener struct {
	woken   chan struct{}
	hub     *hub
	payload string
}

// hub is the one listening connection of a pool in this process, shared
// by all the waiters on it: however many wait, a pool gives one of its
// connections to listening, and the rest to attempts and refreshes.
type hub struct {
	pool   *pgxpool.Pool
	pc     *pgxpool.Conn
	cancel context.CancelFunc
	done   chan struct{} // closed when the connection failed or the hub stopped
	refs   int           // guarded by hubsMu

	mu   sync.Mutex
	subs map[string]map[chan struct{}]struct{} // payload -> waiters' channels
}

var (
	hubsMu sync.Mutex
	hubs   = map[*pgxpool.Pool]*hub{}
)

// listen subscribes the waiter to releases of its lock, through its pool's
// hub, if the pool's connections go straight to the server: the server's
// backend pid is the one the connection was given at startup. Through
// PgBouncer (or any pooler) they differ, and the waiter polls. A pool of
// fewer than 3 connections is left to attempts and refreshes: it polls
// too. nil: poll.
func (l *Lock) listen(ctx context.Context) *listener {
	if l.behindPooler.Load() || l.pool.Config().MaxConns < 3 {
		return nil
	}
	hubsMu.Lock()
	defer hubsMu.Unlock()
	h := hubs[l.pool]
	if h == nil || h.dead() {
		var pooled bool
		h, pooled = startHub(ctx, l.pool)
		if pooled {
			l.behindPooler.Store(true)
			l.cfg.log.Debug("pglock: connections go through a pooler: waiters poll", "name", l.name)
		}
		if h == nil {
			return nil
		}
		hubs[l.pool] = h
	}
	h.refs++
	ln := &listener{woken: make(chan struct{}, 1), hub: h, payload: payloadOf(l.s.plain, l.name)}
	h.mu.Lock()
	if h.subs[ln.payload] == nil {
		h.subs[ln.payload] = map[chan struct{}]struct{}{}
	}
	h.subs[ln.payload][ln.woken] = struct{}{}
	h.mu.Unlock()
	return ln
}

// startHub takes a connection of pool and listens on it; pooled tells
// that the connection goes through a pooler (nil hub then).
func startHub(ctx context.Context, pool *pgxpool.Pool) (h *hub, pooled bool) {
	actx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	pc, err := pool.Acquire(actx)
	if err != nil {
		return nil, false
	}
	var pid int64
	err = pc.QueryRow(actx, "SELECT pg_backend_pid()", pgx.QueryExecModeSimpleProtocol).Scan(&pid)
	if err != nil {
		pc.Release()
		return nil, false
	}
	if uint32(pid) != pc.Conn().PgConn().PID() {
		pc.Release()
		return nil, true
	}
	if _, err := pc.Exec(actx, `LISTEN `+channel, pgx.QueryExecModeSimpleProtocol); err != nil {
		pc.Conn().Close(actx) // it may listen: never hand it back as it is
		pc.Release()
		return nil, false
	}
	lctx, lcancel := context.WithCancel(context.Background())
	h = &hub{pool: pool, pc: pc, cancel: lcancel, done: make(chan struct{}), subs: map[string]map[chan struct{}]struct{}{}}
	go func() {
		defer close(h.done)
		for {
			n, err := pc.Conn().WaitForNotification(lctx)
			if err != nil {
				return
			}
			h.mu.Lock()
			for ch := range h.subs[n.Payload] {
				select {
				case ch <- struct{}{}:
				default:
				}
			}
			h.mu.Unlock()
		}
	}()
	return h, false
}

func (h *hub) dead() bool {
	select {
	case <-h.done:
		return true
	default:
		return false
	}
}

// dead tells whether the listening connection has failed.
func (ln *listener) dead() bool { return ln.hub.dead() }

// close unsubscribes; the last waiter of a hub stops it and closes its
// connection before it goes back, so that the pool drops it rather than
// hand out a connection that listens.
func (ln *listener) close() {
	h := ln.hub
	h.mu.Lock()
	delete(h.subs[ln.payload], ln.woken)
	if len(h.subs[ln.payload]) == 0 {
		delete(h.subs, ln.payload)
	}
	h.mu.Unlock()
	hubsMu.Lock()
	h.refs--
	last := h.refs == 0
	if last && hubs[h.pool] == h {
		delete(hubs, h.pool)
	}
	hubsMu.Unlock()
	if !last {
		return
	}
	h.cancel()
	<-h.done
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	h.pc.Conn().Close(ctx)
	h.pc.Release()
}
