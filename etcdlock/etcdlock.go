package etcdlock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/lockdir/dlock"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var _ dlock.Locker = (*Lock)(nil)

const (
	defaultTimeout = 10 * time.Second
	maxMargin      = 2 * time.Second
)

// Option configures a Lock.
type Option func(*Lock) error

// WithTimeout sets TIMEOUT, the TTL of the lease behind each acquisition:
// a holder that etcd does not hear from for this long loses the lock.
// It is rounded up to whole seconds, at least 1 s; default 10 s. etcd may
// grant a longer TTL (its minimum depends on its election timeout).
func WithTimeout(d time.Duration) Option {
	return func(l *Lock) error {
		if d <= 0 {
			return fmt.Errorf("etcdlock: timeout must be positive, got %s", d)
		}
		l.ttl = int64((d + time.Second - 1) / time.Second)
		return nil
	}
}

// WithPatience sets PATIENCE, how long Lock waits for another holder before
// it gives up with an error matching dlock.ErrBusy. 0 means one attempt;
// a negative value, the default, means no limit (ctx still bounds Lock).
func WithPatience(d time.Duration) Option {
	return func(l *Lock) error {
		l.patience = d
		return nil
	}
}

// WithMargin sets MARGIN: when etcd stops renewing the lease, the holder
// gives the lock up (Lost is closed) this long before the lease would
// expire, by its own clock. The default is min(TIMEOUT/4, 2s); it must be
// under two thirds of TIMEOUT (the client renews every TIMEOUT/3). dlock
// run sets it to its -grace plus a reaction slack, so that the job is
// stopped before another holder may start.
func WithMargin(d time.Duration) Option {
	return func(l *Lock) error {
		if d <= 0 {
			return fmt.Errorf("etcdlock: margin must be positive, got %s", d)
		}
		l.margin = d
		return nil
	}
}

// WithLogger sets where the Lock logs acquisitions, releases and losses.
// The default discards them.
func WithLogger(log *slog.Logger) Option {
	return func(l *Lock) error {
		if log == nil {
			log = slog.New(slog.DiscardHandler)
		}
		l.log = log
		return nil
	}
}

const (
	idle = iota
	acquiring
	held
)

// Lock is one holder of a lock kept in etcd under a key. Its methods may
// be called from several goroutines, but it holds at most one acquisition
// at a time: use one Lock per holder.
type Lock struct {
	client   *clientv3.Client
	key      string
	pfx      string
	ttl      int64         // seconds
	margin   time.Duration // 0: margin(ttl)
	patience time.Duration
	log      *slog.Logger
	host     string

	mu    sync.Mutex
	state int
	cur   *acquisition // the current or last acquisition
	lost  <-chan struct{}
}

// New returns a Lock on key in the etcd cluster that client talks to. It
// does not contact etcd. Waiters and the holder put their entries under
// key + "/".
func New(client *clientv3.Client, key string, opts ...Option) (*Lock, error) {
	if client == nil {
		return nil, errors.New("etcdlock: nil etcd client")
	}
	if key == "" {
		return nil, errors.New("etcdlock: empty key")
	}
	host, _ := os.Hostname()
	l := &Lock{
		client:   client,
		key:      key,
		pfx:      key + "/",
		ttl:      int64(defaultTimeout / time.Second),
		patience: -1,
		log:      slog.New(slog.DiscardHandler),
		host:     host,
		lost:     make(chan struct{}),
	}
	for _, o := range opts {
		if err := o(l); err != nil {
			return nil, err
		}
	}
	if l.margin >= l.timeout()*2/3 {
		return nil, fmt.Errorf("etcdlock: margin %s must be under two thirds of TIMEOUT %s", l.margin, l.timeout())
	}
	return l, nil
}

// Key returns the lock's key.
func (l *Lock) Key() string { return l.key }

// Fence returns the fencing token of the current or last acquisition: the
// create revision of its key, which rises strictly from one holder of the
// key to the next. It is 0 before the first acquisition.
func (l *Lock) Fence() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur == nil {
		return 0
	}
	return uint64(l.cur.rev)
}

// Lost returns a channel that is closed when the current (or last)
// acquisition is lost: its lease ended or its key was deleted. It is not
// closed by Unlock.
func (l *Lock) Lost() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lost
}

// Do acquires the lock, runs fn while holding it and releases it; see
// dlock.Do. fn's context is cancelled with cause dlock.ErrLost if the lock
// is lost while fn runs.
func (l *Lock) Do(ctx context.Context, fn func(ctx context.Context) error) error {
	return dlock.Do(ctx, l, fn)
}

// Lock waits until it holds the lock, ctx is done, or PATIENCE runs out
// (a *dlock.BusyError naming the holder, matching dlock.ErrBusy). While
// etcd cannot be reached it keeps trying for as long as ctx allows, or for
// the larger of PATIENCE and TIMEOUT when PATIENCE is set.
func (l *Lock) Lock(ctx context.Context) error {
	return l.lock(ctx, l.patience, false)
}

// TryLock makes one attempt: (false, nil) when another holds the lock. It
// waits for etcd at most TIMEOUT.
func (l *Lock) TryLock() (bool, error) {
	err := l.lock(context.Background(), 0, true)
	if errors.Is(err, dlock.ErrBusy) {
		return false, nil
	}
	return err == nil, err
}

func (l *Lock) timeout() time.Duration { return time.Duration(l.ttl) * time.Second }

func (l *Lock) lock(ctx context.Context, patience time.Duration, try bool) error {
	l.mu.Lock()
	switch l.state {
	case held:
		var why string
		select {
		case <-l.cur.gone:
			why = " (it was lost: call Unlock first)"
		default:
		}
		l.mu.Unlock()
		return fmt.Errorf("etcdlock: %s: %w%s", l.key, dlock.ErrHeld, why)
	case acquiring:
		l.mu.Unlock()
		return fmt.Errorf("etcdlock: %s: %w", l.key, dlock.ErrHeld)
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
	return nil
}

// record is the value of a waiter's key: who it is.
type record struct {
	PID   int       `json:"pid"`
	Host  string    `json:"host"`
	Since time.Time `json:"since"`
	TTL   int64     `json:"ttl"`
}

// holderOf describes the holder whose key is kv.
func holderOf(kv *mvccpb.KeyValue) dlock.Holder {
	h := dlock.Holder{
		Fence: uint64(kv.CreateRevision),
		Token: fmt.Sprintf("%x", kv.Lease),
		Entry: string(kv.Key),
	}
	var r record
	if err := json.Unmarshal(kv.Value, &r); err != nil || r.PID == 0 {
		h.Unknown = true // e.g. an entry of etcd's concurrency.Mutex, whose value is empty
		return h
	}
	h.PID, h.Host, h.Since = r.PID, r.Host, r.Since
	h.Timeout = time.Duration(r.TTL) * time.Second
	return h
}

// Inspect returns who holds the lock on key (held is false when nobody
// does). It costs one read.
func Inspect(ctx context.Context, client *clientv3.Client, key string) (h dlock.Holder, held bool, err error) {
	resp, err := client.Get(ctx, key+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return dlock.Holder{}, false, fmt.Errorf("etcdlock: %s: inspecting: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return dlock.Holder{}, false, nil
	}
	return holderOf(resp.Kvs[0]), true, nil
}

// acquisition is one lease and the key put under it, from the first
// attempt to the release.
type acquisition struct {
	l     *Lock
	lease clientv3.LeaseID
	ttl   time.Duration // as granted
	myKey string
	rev   int64              // create revision of myKey
	stop  context.CancelFunc // stops keeping the lease alive and watching myKey
	ctx   context.Context    // done after stop
	gone  chan struct{}      // closed when the lease ended or myKey was deleted

	mu        sync.Mutex
	isGone    bool
	releasing bool // Unlock runs: its own deletion is no loss
	reason    string
}

func (a *acquisition) markGone(reason string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.isGone || a.releasing {
		return
	}
	a.isGone, a.reason = true, reason
	// Stop renewing: from now on this holder acts as if it had lost the
	// lock, so let the lease run out rather than keep the key alive.
	a.stop()
	close(a.gone)
	a.l.log.Warn("etcdlock: lock lost", "key", a.l.key, "entry", a.myKey, "fence", a.rev, "reason", reason)
}

func (a *acquisition) lostReason() (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.reason, a.isGone
}

// release marks the acquisition as being released and tells whether (and
// why) it was lost before.
func (a *acquisition) release() (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.releasing = true
	return a.reason, a.isGone
}

// margin is how long before its lease would expire, by the holder's clock,
// the holder gives it up when etcd stops answering.
func margin(ttl time.Duration) time.Duration {
	return min(ttl/4, maxMargin)
}

// margin is MARGIN for a lease of ttl: WithMargin's, or the default.
func (a *acquisition) margin(ttl time.Duration) time.Duration {
	if a.l.margin > 0 {
		return min(a.l.margin, ttl*2/3)
	}
	return margin(ttl)
}

// keepAlive consumes keep-alive answers; without one for ttl-margin, or when
// etcd says the lease is gone, the acquisition is gone.
func (a *acquisition) keepAlive(ch <-chan *clientv3.LeaseKeepAliveResponse) {
	wait := a.ttl - a.margin(a.ttl)
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return
		case r, ok := <-ch:
			if !ok {
				if a.ctx.Err() == nil {
					a.markGone(fmt.Sprintf("lease %x ended: etcd no longer keeps it alive (expired, revoked, or the client closed)", a.lease))
				}
				return
			}
			wait = time.Duration(r.TTL)*time.Second - a.margin(time.Duration(r.TTL)*time.Second)
			t.Reset(wait)
		case <-t.C:
			a.markGone(fmt.Sprintf("etcd did not renew lease %x for %s (TTL %s): giving it up before it expires", a.lease, wait, a.ttl))
			return
		}
	}
}

// watchOwn closes gone when myKey is deleted after revision from.
func (a *acquisition) watchOwn(from int64) {
	c := a.l.client
	backoff := 50 * time.Millisecond
	for a.ctx.Err() == nil {
		wch := c.Watch(a.ctx, a.myKey, clientv3.WithRev(from), clientv3.WithFilterPut())
		for wr := range wch {
			if wr.Err() != nil {
				break
			}
			for _, ev := range wr.Events {
				if ev.Type == mvccpb.DELETE {
					a.markGone(fmt.Sprintf("its key %s was deleted at revision %d", a.myKey, ev.Kv.ModRevision))
					return
				}
			}
		}
		if a.ctx.Err() != nil {
			return
		}
		// The watch ended (compaction, lost connection): look again.
		gctx, cancel := context.WithTimeout(a.ctx, a.ttl)
		g, err := c.Get(gctx, a.myKey)
		cancel()
		if err == nil {
			if len(g.Kvs) == 0 || g.Kvs[0].CreateRevision != a.rev {
				a.markGone(fmt.Sprintf("its key %s is gone", a.myKey))
				return
			}
			from = g.Header.Revision + 1
			backoff = 50 * time.Millisecond
		}
		select {
		case <-a.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// abandon stops the acquisition and revokes its lease (removing its key),
// best effort: if etcd cannot be reached, the lease expires on its own.
func (a *acquisition) abandon() {
	a.revoke(time.Now().Add(min(a.ttl, maxMargin)))
	a.stop()
}

// revoke revokes the acquisition's lease, which deletes its key and no
// other, trying again until deadline. It reports whether the lease is
// gone, revoked now or before.
func (a *acquisition) revoke(deadline time.Time) bool {
	backoff := 50 * time.Millisecond
	for {
		ctx, cancel := context.WithDeadline(context.Background(), earlier(deadline, time.Now().Add(time.Second)))
		_, err := a.l.client.Revoke(ctx, a.lease)
		cancel()
		if err == nil || errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return true
		}
		if time.Now().Add(backoff).After(deadline) {
			a.l.log.Debug("etcdlock: revoking lease", "key", a.l.key, "lease", fmt.Sprintf("%x", a.lease), "err", err)
			return false
		}
		time.Sleep(backoff) // between attempts, bounded by deadline
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

func (l *Lock) acquire(ctx context.Context, patience time.Duration, try bool) (*acquisition, error) {
	start := time.Now()
	rpcCtx := ctx
	if patience >= 0 {
		var cancel context.CancelFunc
		rpcCtx, cancel = context.WithDeadline(ctx, start.Add(max(patience, l.timeout())))
		defer cancel()
	}
	backoff := 50 * time.Millisecond
	for {
		a, err := l.attempt(ctx, rpcCtx, patience, try, start)
		var re retryable
		if err == nil || !errors.As(err, &re) || !l.transient(re.error) || try || patience == 0 || rpcCtx.Err() != nil {
			return a, err
		}
		// etcd failed a request (e.g. its leader changed): try again while
		// there is time.
		l.log.Debug("etcdlock: acquiring, will retry", "key", l.key, "err", err)
		select {
		case <-time.After(backoff):
		case <-rpcCtx.Done():
			return nil, err
		}
		backoff = min(2*backoff, time.Second)
	}
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// transient tells whether err is one that etcd gives while it changes
// leader or a member goes away, after which another attempt may do.
func (l *Lock) transient(err error) bool {
	if l.client.Ctx().Err() != nil { // the client was closed
		return false
	}
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return ee.Code() == codes.Unavailable
	}
	return status.Code(err) == codes.Unavailable
}

// retryable marks a failed request after which another attempt may do.
type retryable struct{ error }

func (r retryable) Unwrap() error { return r.error }

func (l *Lock) attempt(ctx, rpcCtx context.Context, patience time.Duration, try bool, start time.Time) (*acquisition, error) {
	c := l.client
	lresp, err := c.Grant(rpcCtx, l.ttl)
	if err != nil {
		return nil, retryable{fmt.Errorf("etcdlock: %s: granting a lease: %w", l.key, err)}
	}
	actx, stop := context.WithCancel(context.Background())
	a := &acquisition{
		l:     l,
		lease: lresp.ID,
		ttl:   time.Duration(lresp.TTL) * time.Second,
		myKey: fmt.Sprintf("%s%x", l.pfx, lresp.ID),
		stop:  stop,
		ctx:   actx,
		gone:  make(chan struct{}),
	}
	ka, err := c.KeepAlive(actx, a.lease)
	if err != nil {
		a.abandon()
		return nil, fmt.Errorf("etcdlock: %s: keeping lease %x alive: %w", l.key, a.lease, err)
	}
	go a.keepAlive(ka)

	val, _ := json.Marshal(record{PID: os.Getpid(), Host: l.host, Since: time.Now().UTC(), TTL: lresp.TTL})
	resp, err := c.Txn(rpcCtx).
		If(clientv3.Compare(clientv3.CreateRevision(a.myKey), "=", 0)).
		Then(clientv3.OpPut(a.myKey, string(val), clientv3.WithLease(a.lease)),
			clientv3.OpGet(l.pfx, clientv3.WithFirstCreate()...)).
		Else(clientv3.OpGet(a.myKey),
			clientv3.OpGet(l.pfx, clientv3.WithFirstCreate()...)).
		Commit()
	if err != nil {
		a.abandon()
		return nil, retryable{fmt.Errorf("etcdlock: %s: queueing: %w", l.key, err)}
	}
	rev := resp.Header.Revision
	if !resp.Succeeded { // cannot happen with a fresh lease, but stay correct
		rev = resp.Responses[0].GetResponseRange().Kvs[0].CreateRevision
	}
	a.mu.Lock() // keepAlive may already log it
	a.rev = rev
	a.mu.Unlock()
	acquiredAt := resp.Header.Revision
	owner := resp.Responses[1].GetResponseRange().Kvs
	if len(owner) > 0 && owner[0].CreateRevision != a.rev {
		holder := holderOf(owner[0])
		if try || patience == 0 {
			a.abandon()
			return nil, l.busy(holder, owner[0].Lease, start, !try)
		}
		acquiredAt, err = l.wait(ctx, rpcCtx, a, holder, owner[0].Lease, patience, start)
		if err != nil {
			a.abandon()
			return nil, err
		}
		// Record when it was acquired rather than queued (best effort: the
		// lock is held either way).
		val, _ := json.Marshal(record{PID: os.Getpid(), Host: l.host, Since: time.Now().UTC(), TTL: lresp.TTL})
		pctx, cancel := context.WithTimeout(context.Background(), a.ttl)
		_, err := c.Txn(pctx).
			If(clientv3.Compare(clientv3.CreateRevision(a.myKey), "=", a.rev)).
			Then(clientv3.OpPut(a.myKey, string(val), clientv3.WithLease(a.lease))).
			Commit()
		cancel()
		if err != nil {
			l.log.Debug("etcdlock: recording the acquisition time", "key", l.key, "err", err)
		}
	}
	go a.watchOwn(acquiredAt + 1)
	l.log.Debug("etcdlock: lock acquired", "key", l.key, "entry", a.myKey, "fence", a.rev, "waited", time.Since(start))
	return a, nil
}

// wait waits until no key under the prefix is older than a's; it returns
// the revision at which that was seen.
func (l *Lock) wait(ctx, rpcCtx context.Context, a *acquisition, holder dlock.Holder, holderLease int64, patience time.Duration, start time.Time) (int64, error) {
	c := l.client
	var expired <-chan time.Time
	if patience > 0 {
		t := time.NewTimer(patience - time.Since(start))
		defer t.Stop()
		expired = t.C
	}
	busy := func() error { return l.busy(holder, holderLease, start, true) }
	// outOfTime tells why rpcCtx ended: ctx itself, or PATIENCE.
	outOfTime := func(err error) error {
		if ctx.Err() != nil {
			return fmt.Errorf("etcdlock: %s: waiting for %s: %w", l.key, holder, context.Cause(ctx))
		}
		if rpcCtx.Err() != nil {
			return busy()
		}
		return err
	}
	backoff := 50 * time.Millisecond
	for {
		resp, err := c.Txn(rpcCtx).
			If(clientv3.Compare(clientv3.CreateRevision(a.myKey), "=", a.rev)).
			Then(clientv3.OpGet(l.pfx, append(clientv3.WithLastCreate(), clientv3.WithMaxCreateRev(a.rev-1))...),
				clientv3.OpGet(l.pfx, clientv3.WithFirstCreate()...)).
			Commit()
		if err != nil {
			if rpcCtx.Err() != nil || !l.transient(err) {
				return 0, outOfTime(fmt.Errorf("etcdlock: %s: waiting: %w", l.key, err))
			}
			// A read only: try again (e.g. "leader changed") until out of time.
			l.log.Debug("etcdlock: waiting", "key", l.key, "err", err)
			select {
			case <-time.After(backoff):
			case <-expired:
				return 0, busy()
			case <-rpcCtx.Done():
				return 0, outOfTime(fmt.Errorf("etcdlock: %s: waiting: %w", l.key, err))
			case <-a.gone:
				r, _ := a.lostReason()
				return 0, fmt.Errorf("etcdlock: %s: lost our place in the queue while waiting for %s: %s", l.key, holder, r)
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		if !resp.Succeeded {
			return 0, fmt.Errorf("etcdlock: %s: our waiting entry %s is gone (its lease expired or it was deleted); not acquired", l.key, a.myKey)
		}
		pred := resp.Responses[0].GetResponseRange().Kvs
		if len(pred) == 0 {
			return resp.Header.Revision, nil
		}
		if o := resp.Responses[1].GetResponseRange().Kvs; len(o) > 0 {
			holder, holderLease = holderOf(o[0]), o[0].Lease
		}
		// Wait for the key just before ours to go: a release wakes only its
		// successor.
		deleted, err := func() (bool, error) {
			wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(rpcCtx))
			defer cancel()
			// Watch from now, then look: a watch that starts at a past
			// revision joins etcd's unsynced watchers, which are caught up
			// only every 100 ms (the new holder's value rewrite has
			// usually moved the revision on since our read).
			wch := c.Watch(wctx, string(pred[0].Key), clientv3.WithCreatedNotify(), clientv3.WithFilterPut())
			for {
				select {
				case wr, ok := <-wch:
					if !ok || wr.Err() != nil {
						return false, nil // look again
					}
					if wr.Created {
						g, err := c.Get(wctx, string(pred[0].Key), clientv3.WithCountOnly())
						if err != nil {
							return false, nil // look again
						}
						if g.Count == 0 {
							return true, nil // gone before the watch began
						}
						continue
					}
					for _, ev := range wr.Events {
						if ev.Type == mvccpb.DELETE {
							return true, nil
						}
					}
				case <-expired:
					return false, busy()
				case <-rpcCtx.Done():
					return false, outOfTime(rpcCtx.Err())
				case <-a.gone:
					r, _ := a.lostReason()
					return false, fmt.Errorf("etcdlock: %s: lost our place in the queue while waiting for %s: %s", l.key, holder, r)
				}
			}
		}()
		if err != nil {
			return 0, err
		}
		if deleted {
			backoff = 50 * time.Millisecond
			continue
		}
		select {
		case <-time.After(backoff):
		case <-expired:
			return 0, busy()
		case <-rpcCtx.Done():
			return 0, outOfTime(rpcCtx.Err())
		}
		backoff = min(2*backoff, time.Second)
	}
}

// busy builds the error for PATIENCE running out; with details it asks
// etcd how long ago the holder renewed its lease.
func (l *Lock) busy(h dlock.Holder, lease int64, start time.Time, details bool) error {
	e := &dlock.BusyError{Path: l.key, Holder: h, Waited: time.Since(start)}
	if details && lease != 0 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if r, err := l.client.TimeToLive(ctx, clientv3.LeaseID(lease)); err == nil && r.TTL > 0 {
			e.Age = time.Duration(r.GrantedTTL-r.TTL) * time.Second
		}
	}
	return e
}

// Unlock releases the lock: dlock.ErrNotHeld if this Lock does not hold it,
// an error matching dlock.ErrLost if it was lost meanwhile. It deletes the
// key only if it is still this acquisition's, so it never frees a
// successor. It waits for etcd at most TIMEOUT; if etcd cannot be reached,
// the lease expires on its own.
func (l *Lock) Unlock() error {
	l.mu.Lock()
	if l.state != held {
		l.mu.Unlock()
		return fmt.Errorf("etcdlock: %s: %w", l.key, dlock.ErrNotHeld)
	}
	a := l.cur
	l.state = idle
	l.mu.Unlock()

	reason, wasLost := a.release()
	wait := a.ttl
	if wasLost {
		// The lease has ended or was given up with at most margin left:
		// deleting the key matters only within that margin.
		wait = max(a.margin(a.ttl), time.Second)
	}
	deadline := time.Now().Add(wait)
	ctx, cancel := context.WithDeadline(context.Background(), earlier(deadline, time.Now().Add(maxMargin)))
	defer cancel()
	resp, err := l.client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(a.myKey), "=", a.rev)).
		Then(clientv3.OpDelete(a.myKey)).
		Else(clientv3.OpGet(l.pfx, clientv3.WithFirstCreate()...)).
		Commit()
	// Revoking the acquisition's own lease removes only its own key: it
	// completes the release when the transaction failed (its outcome
	// unknown, e.g. etcd's leader changed), and cleans up otherwise.
	revoked := a.revoke(deadline)
	a.stop()
	if err != nil && revoked && !wasLost {
		err = nil
		resp = &clientv3.TxnResponse{Succeeded: true}
	}
	switch {
	case err == nil && !resp.Succeeded:
		now := "nobody holds it now"
		if o := resp.Responses[0].GetResponseRange().Kvs; len(o) > 0 {
			h := holderOf(o[0])
			now = fmt.Sprintf("now held by %s (fence %d)", h, h.Fence)
		}
		if !wasLost {
			reason = fmt.Sprintf("its key %s was gone", a.myKey)
		}
		return fmt.Errorf("etcdlock: %s: %w (fence %d): %s; %s", l.key, dlock.ErrLost, a.rev, reason, now)
	case wasLost && err == nil:
		return fmt.Errorf("etcdlock: %s: %w (fence %d): %s; nobody else took it meanwhile, released now", l.key, dlock.ErrLost, a.rev, reason)
	case wasLost:
		return fmt.Errorf("etcdlock: %s: %w (fence %d): %s (releasing: %v)", l.key, dlock.ErrLost, a.rev, reason, err)
	case err != nil:
		return fmt.Errorf("etcdlock: %s: releasing fence %d: %w (its lease %x expires within %s)", l.key, a.rev, err, a.lease, a.ttl)
	}
	l.log.Debug("etcdlock: lock released", "key", l.key, "fence", a.rev)
	return nil
}
