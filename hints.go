package dlock

// Wake-up hints (WithWakeHints): a waiter announces an address in the
// lock directory (lockdir's wake.go) and listens there (internal/hint); a
// releaser lists the announcements after its release and sends each a
// datagram naming the released fence; a waiter that gets one makes one
// attempt at once (wait.go's wokeHint) instead of at its next poll. The
// rename of that attempt still decides: a datagram only says when to
// look.

import (
	"context"
	"errors"
	"io/fs"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/lockdir/dlock/internal/hint"
	"github.com/lockdir/dlock/internal/lockdir"
)

// WithWakeHints makes this Lock's waits hear of a release from another
// host in about one network round trip, instead of at their next poll, so
// that a long poll interval (and a server load as many times lower) keeps
// hand-offs fast: a waiter announces addr in the lock directory and
// listens on it (UDP); a Lock with hints lists the announcements after
// each release (one listing at the server, which Unlock does not wait
// for; one failed open when nobody waits) and sends each waiter a
// datagram naming the release. A datagram is only a hint: it makes the
// waiter look once more (at most perSecond times a second, see
// WithWakeHintRate); the rename still decides. Every process sharing the
// lock should pass it: a waiter hears only the releases of Locks with
// hints, and polls for the others.
//
// addr is "IP:PORT", "IP" (any free port), ":PORT", or "" for this host's
// first non-loopback IPv4 address (see hint.HostAddr); the process's waits
// on one address share one socket. Give the address the other hosts reach
// this one at: behind NAT (qemu's user networking, a container's bridge)
// no datagram arrives, and the waiter polls as it would without hints. If
// addr cannot be listened on, waits go on without hints (and a logger, if
// any, says why). Default: off. Only Lock waits take hints (not
// Semaphore's or RWLock's).
func WithWakeHints(addr string) Option {
	return func(c *config) { c.hints, c.hintAddr = true, addr }
}

// WithWakeHintRate bounds the wake-ups one wait takes from datagrams to n
// a second (default 10): a flood of datagrams, forged or not, costs at
// most n looks a second.
func WithWakeHintRate(n int) Option { return func(c *config) { c.hintRate = n } }

// Announcements are renewed (a rename, giving them a new TIME) every
// announceRenew, and a releaser removes those older than announceStale
// plus the clock-skew bound: the waiter died without withdrawing it.
const (
	announceRenew = 2 * time.Minute
	announceStale = 10 * time.Minute
)

// wakeHints is one wait's hints: its subscription to datagrams and its
// announcement. Its methods may be called on nil: a wait without hints.
// The announcement's system calls (make, renew, withdraw) are made in
// goroutines of their own, one at a time (io): a wait whose mount hangs
// still ends when its context does.
type wakeHints struct {
	lock  *Lock
	sub   *hint.Sub
	path  string
	addr  netip.AddrPort
	clock clock.Clock
	perm  fs.FileMode

	io     sync.Mutex // held across the announcement's system calls
	mu     sync.Mutex // never held across one
	name   string     // the announcement made, "" if none
	renew  *clock.Timer
	closed bool
}

// announce starts hints for a wait of l, if l takes them: it listens, and
// announces in the background; once the announcement is made the wait
// looks once more (a release before it sent the wait no datagram). nil
// if l takes no hints, or cannot listen (the wait polls).
func (l *Lock) announce() *wakeHints {
	if !l.cfg.hints {
		return nil
	}
	addr, err := hint.Resolve(l.cfg.hintAddr)
	var ln *hint.Listener
	if err == nil {
		ln, err = hint.Listen(addr)
	}
	if err != nil {
		l.logWarn("waiting without wake hints", "err", err)
		return nil
	}
	tok, _ := hint.ParseToken(lockdir.NewToken()[:16])
	h := &wakeHints{lock: l, path: l.path, addr: ln.Addr(), clock: l.cfg.clock, perm: l.cfg.perm}
	h.sub = ln.Subscribe(tok, l.cfg.clock, l.cfg.hintRate)
	go h.make()
	return h
}

// make makes the announcement, then wakes the wait for one more look.
func (h *wakeHints) make() {
	h.io.Lock()
	defer h.io.Unlock()
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed {
		return
	}
	name := hint.AnnouncementName(h.clock.Now(), h.sub.Token(), h.addr)
	if err := lockdir.Announce(h.path, name, h.perm); err != nil {
		h.lock.logWarn("waiting without wake hints: cannot announce", "err", err)
		return
	}
	h.mu.Lock()
	h.name, closed = name, h.closed
	if !closed {
		h.renew = h.clock.AfterFunc(announceRenew, h.renewed)
	}
	h.mu.Unlock()
	if closed {
		lockdir.Withdraw(h.path, name)
		return
	}
	h.sub.Poke()
}

// renewed gives the announcement a new TIME, or makes it again if a
// releaser took it for a dead waiter's (a clock far behind theirs).
func (h *wakeHints) renewed() {
	h.io.Lock()
	defer h.io.Unlock()
	h.mu.Lock()
	old, closed := h.name, h.closed
	h.mu.Unlock()
	if closed || old == "" {
		return
	}
	name := hint.AnnouncementName(h.clock.Now(), h.sub.Token(), h.addr)
	err := lockdir.Renew(h.path, old, name)
	if errors.Is(err, fs.ErrNotExist) {
		err = lockdir.Announce(h.path, name, h.perm)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		h.name = name
	}
	if !h.closed {
		h.renew.Reset(announceRenew)
	}
}

// c is signalled when a datagram asks for a look.
func (h *wakeHints) c() <-chan struct{} {
	if h == nil {
		return nil
	}
	return h.sub.C()
}

// expect takes datagrams about the release of fence or a later one:
// the holder the waiter last saw, seen.
func (h *wakeHints) expect(seen entry) {
	if h == nil {
		return
	}
	h.sub.Expect(seen.fence)
}

// close ends the subscription and withdraws the announcement, in the
// background; won: the wait acquired, and its Lock, now the holder, then
// learns who else waits.
func (h *wakeHints) close(won bool) {
	if h == nil {
		return
	}
	h.sub.Close()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	if h.renew != nil {
		h.renew.Stop()
	}
	var fence uint64
	if won {
		fence = h.lock.Fence()
	}
	go func() {
		h.io.Lock()
		defer h.io.Unlock()
		h.mu.Lock()
		name := h.name
		h.name = ""
		h.mu.Unlock()
		if name != "" {
			lockdir.Withdraw(h.path, name)
		}
		if won {
			h.lock.hintLearn(h.sub.Token(), fence)
		}
	}()
}

// hintSender is a Lock's sending of hints after its releases: one
// goroutine at a time, which takes the newest release. Its mutex is never
// held across a system call.
//
// A release tells the waiters it knows of first, without a listing: those
// a listing found when this Lock acquired after waiting (learn), the
// contended case, where hand-offs follow each other. Then it lists the
// announcements and tells those it did not know. An uncontended
// acquisition learns nothing: its release lists (one failed open when
// nobody announced, since the wake directory goes with its last waiter).
type hintSender struct {
	mu       sync.Mutex
	running  bool
	done     chan struct{} // closed when the goroutine that runs ends
	fence    uint64        // a release to tell of, 0 if none
	learnt   targets       // from the listing after an acquisition by waiting
	known    targets       // what the goroutine tells first
	learn    uint64        // list to learn the waiters of this acquisition's fence
	learntOf uint64        // the fence of the acquisition learnt is of
	self     hint.Token
}

// targets are announced waiters: where to send, and their tokens.
type targets struct {
	to   []netip.AddrPort
	toks []hint.Token
}

func (ts *targets) add(to netip.AddrPort, tok hint.Token) {
	ts.to = append(ts.to, to)
	ts.toks = append(ts.toks, tok)
}

// msgs are the datagrams telling ts of the release of fence.
func (ts targets) msgs(fence uint64) []hint.Msg {
	m := make([]hint.Msg, len(ts.toks))
	for i, tok := range ts.toks {
		m[i] = hint.Msg{Token: tok, Fence: fence}
	}
	return m
}

// hintRelease tells the waiters announced in the lock that the
// acquisition of the given fence was released, from a goroutine of its
// own: the release waits for neither the listing nor the network.
func (l *Lock) hintRelease(fence uint64) {
	if !l.cfg.hints {
		return
	}
	s := &l.hintSend
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fence, s.known = fence, targets{}
	if s.learntOf == fence { // (else learnt for an earlier acquisition)
		s.known = s.learnt
	}
	s.learnt, s.learntOf = targets{}, 0
	s.start(l)
}

// WaitHints waits until the wake-up hints of this Lock's releases
// (WithWakeHints) have been sent, or ctx ends. Unlock sends them in the
// background, so that it waits for no listing and no network; a process
// that exits right after Unlock calls WaitHints first (with a deadline: a
// second is plenty), or its waiters hear of the release only at their
// next poll. Without hints it returns at once.
func (l *Lock) WaitHints(ctx context.Context) error {
	s := &l.hintSend
	s.mu.Lock()
	running, done := s.running, s.done
	s.mu.Unlock()
	if !running {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// hintLearn lists the announcements, in the background, after this Lock
// acquired by waiting (the acquisition of the given fence; its wait's
// token self is its own): that acquisition's release then tells them
// without listing first.
func (l *Lock) hintLearn(self hint.Token, fence uint64) {
	s := &l.hintSend
	s.mu.Lock()
	defer s.mu.Unlock()
	s.learn, s.self = fence, self
	s.start(l)
}

// start runs the goroutine unless it runs. Called with s.mu held.
func (s *hintSender) start(l *Lock) {
	if !s.running {
		s.running, s.done = true, make(chan struct{})
		go l.sendHints()
	}
}

func (l *Lock) sendHints() {
	s := &l.hintSend
	for {
		s.mu.Lock()
		fence, known, learn, self := s.fence, s.known, s.learn, s.self
		s.fence, s.known, s.learn = 0, targets{}, 0
		if fence == 0 && learn == 0 {
			s.running = false
			close(s.done)
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		if fence == 0 { // learn
			found := l.announced(self, targets{})
			s.mu.Lock()
			if s.fence == 0 { // (else released meanwhile: that listed)
				s.learnt, s.learntOf = found, learn
			}
			s.mu.Unlock()
			continue
		}
		hint.Send(known.to, known.msgs(fence))
		more := l.announced(hint.Token{}, known)
		hint.Send(more.to, more.msgs(fence))
	}
}

// announced lists the announcements in the lock, but for self's and those
// in skip; it removes those that dead waiters left (older than
// announceStale plus the clock-skew bound).
func (l *Lock) announced(self hint.Token, skip targets) targets {
	var found targets
	names, err := lockdir.Announcements(l.path)
	if err != nil {
		return found
	}
	now := l.cfg.clock.Now()
	for _, n := range names {
		at, tok, addr, ok := hint.ParseAnnouncement(n)
		switch {
		case !ok || tok == self || slices.Contains(skip.toks, tok):
			continue // not ours (left alone), or told already
		case now.Sub(at) > announceStale+l.cfg.maxSkew:
			lockdir.Withdraw(l.path, n)
			continue
		}
		found.add(addr, tok)
	}
	return found
}
