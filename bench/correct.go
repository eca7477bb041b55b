package main

// The correctness checks of the alternatives, counted: a counter kept
// under the lock by processes split across mounts, the stale-reclaim race
// and the late release. Each drives peers (peer.go) directly.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lockdir/dlock"
)

// verdict is one correctness cell: bad out of n, or not applicable.
type verdict struct {
	Bad, N int
	Both   int    // counter only: times two were inside at once (Bad is lost updates then)
	NA     string // why the case cannot be expressed ("" if it ran)
	Note   string
	Cnt    bool `json:",omitempty"` // a counter verdict
	// Stale and late rounds in which it went wrong but the holder that was
	// overtaken had been told it lost the lock first (not in Bad).
	Told int `json:",omitempty"`
	// What each round that went wrong (Bad or Told) was, with its timeline.
	Rounds []string `json:",omitempty"`
}

func (v verdict) String() string {
	if v.NA != "" {
		return "n/a"
	}
	if v.Cnt {
		return fmt.Sprintf("%d lost, %d both in / %d", v.Bad, v.Both, v.N)
	}
	if v.Told > 0 {
		return fmt.Sprintf("%d/%d (+%d told first)", v.Bad, v.N, v.Told)
	}
	return fmt.Sprintf("%d/%d", v.Bad, v.N)
}

// bad: the verdict counts a failure.
func (v verdict) bad() bool { return v.NA == "" && (v.Bad > 0 || v.Both > 0) }

// mountPath is the lock path name on the i-th of dirs (workers alternate).
func mountPath(dirs []string, i int, name string) string {
	return filepath.Join(dirs[i%len(dirs)], name)
}

// counterCheck: procs peers, split across dirs, each adds 1 to a counter
// kept on local disk (markDir) iters times under the lock. Inside, an
// O_EXCL marker (also on local disk) detects two holders at once. Returns
// lost updates and overlaps (the verdict counts both, out of procs*iters).
func counterCheck(impl string, dirs []string, name, markDir string, procs, iters int, limit time.Duration) (done, lost, overlaps int, err error) {
	counter := filepath.Join(markDir, name+".count")
	marker := filepath.Join(markDir, name+".inside")
	if err := os.WriteFile(counter, []byte("0"), 0o644); err != nil {
		return 0, 0, 0, err
	}
	peers := make([]*peerProc, procs)
	defer func() {
		for _, p := range peers {
			if p != nil {
				p.Close()
			}
		}
	}()
	for i := range peers {
		if peers[i], err = startPeer(impl, mountPath(dirs, i, name), 0); err != nil {
			return 0, 0, 0, err
		}
	}
	// A lock that waits out a cache (sshfs's default caching) may take
	// seconds per hand-off: stop at limit, count what was done. A peer
	// still waiting then is killed (a lock that never acquires must not
	// hang the run).
	deadline := time.Now().Add(limit)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for _, p := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range iters {
				if time.Now().After(deadline) {
					return
				}
				if err := p.Lock(ctx); err != nil {
					if errors.Is(err, errGaveUp) {
						err = fmt.Errorf("a process still waiting for the lock at the limit was stopped")
					}
					mu.Lock()
					firstErr = cmp(firstErr, err)
					mu.Unlock()
					return
				}
				f, err := os.OpenFile(marker, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
				mine := err == nil
				if mine {
					f.Close()
				} else {
					mu.Lock()
					overlaps++
					mu.Unlock()
				}
				b, _ := os.ReadFile(counter)
				n, _ := strconv.Atoi(string(b))
				time.Sleep(200 * time.Microsecond) // widen the window a lost update needs
				os.WriteFile(counter, []byte(strconv.Itoa(n+1)), 0o644)
				if mine {
					os.Remove(marker)
				}
				mu.Lock()
				done++
				mu.Unlock()
				if err := p.unlockIn(peerCallLimit); err != nil {
					mu.Lock()
					firstErr = cmp(firstErr, err)
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	b, _ := os.ReadFile(counter)
	n, _ := strconv.Atoi(string(b))
	return done, done - n, overlaps, firstErr
}

func cmp(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// errNeverReclaims: the waiters did not get a paused holder's lock.
var errNeverReclaims = errors.New("waiters never got the paused holder's lock")

// errNoExclusion: another process got the lock while its holder held it,
// before any stale time could have passed.
var errNoExclusion = errors.New("the lock does not exclude across these mounts")

// Note: "early" is judged against stale/2 from the holder's acquisition:
// every lock here that reclaims at all waits for the stale time first,
// counted from an mtime that sshfs keeps in whole seconds (so up to a
// second early: lockbydir and SoftFileLease reclaim through sshfs about
// 1.6 s into a 2 s stale time).
// Every process of a round is started before the holder acquires, so a
// process that starts slowly under load never makes an early acquisition
// look late (or a late one early); the acquisition times are the peers'
// own (CLOCK_MONOTONIC, one clock for every process).

// timeline is what happened in one round, stamped on CLOCK_MONOTONIC.
type timeline struct {
	t0 int64
	mu sync.Mutex
	ev []stamp // detail: "who: what"
}

func newTimeline() *timeline { return &timeline{t0: mono()} }

// at adds an event at t (0: now).
func (t *timeline) at(at int64, who, what string) {
	if at == 0 {
		at = mono()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ev = append(t.ev, stamp{at: at, detail: strings.TrimSpace(who + ": " + what)})
}

func (t *timeline) now(who, what string) { t.at(0, who, what) }

// logs adds what a peer's library reported (its log, its loss callbacks).
func (t *timeline) logs(who string, p *peerProc) {
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	for _, e := range p.logged(ctx) {
		t.at(e.at, who, "its library said: "+e.detail)
	}
}

// String is the timeline in order, in ms from the round's start.
func (t *timeline) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	ev := slices.Clone(t.ev)
	slices.SortStableFunc(ev, func(a, b stamp) int { return cmpInt(a.at, b.at) })
	parts := make([]string, len(ev))
	for i, e := range ev {
		parts[i] = fmt.Sprintf("%+.1f ms %s", float64(e.at-t.t0)/1e6, e.detail)
	}
	return strings.Join(parts, "; ")
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// roundOut is what one round of the stale race or the late release gave.
type roundOut struct {
	// bad: two held at once (stale race), or a third process got the lock
	// while the successor held it (late release).
	bad bool
	// told: bad, but the holder that was overtaken had been told that it
	// lost the lock before the other got in (its deadline passed while the
	// load starved it): legitimate, and told, so not counted as bad.
	told    bool
	lateErr error  // late release: what the waking holder's release said
	story   string // for a bad round: which it was, and its timeline
}

// startPeers starts a round's processes, each on its mount.
func startPeers(impl string, paths []string, stale time.Duration) ([]*peerProc, func(), error) {
	ps := make([]*peerProc, len(paths))
	closeAll := func() {
		for _, p := range ps {
			if p != nil {
				p.Close()
			}
		}
	}
	// At once: on a loaded machine a Python peer takes a while to start.
	errs := make([]error, len(paths))
	var wg sync.WaitGroup
	for i, path := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ps[i], errs[i] = startPeer(impl, path, stale)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		closeAll()
		return nil, nil, err
	}
	return ps, closeAll, nil
}

// pauseHolder has p acquire and stops the process that holds the lock
// (SIGSTOP). kill ends it for good.
func pauseHolder(p *peerProc, tl *timeline) (acq stamp, pid int, kill func(), err error) {
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	if acq, err = p.lockAt(ctx); err != nil {
		return acq, 0, nil, err
	}
	if acq.at == 0 {
		acq.at = mono()
	}
	tl.t0 = acq.at // the timeline counts from here
	tl.at(acq.at, "holder", "acquired "+acq.detail)
	pid, err = p.holderPid()
	if err != nil || pid <= 0 {
		return acq, 0, nil, fmt.Errorf("%s: holder's pid: %v", p.impl, err)
	}
	if err := p.signal(pid, syscall.SIGSTOP); err != nil {
		return acq, 0, nil, err
	}
	tl.now("bench", "paused the holder (SIGSTOP)")
	return acq, pid, func() {
		p.signal(pid, syscall.SIGKILL)
		p.signal(pid, syscall.SIGCONT)
		p.kill()
		<-p.done
	}, nil
}

// gaveUp: a loss report that says the holder's own deadline passed (it
// could not refresh in time: the load starved it), in each library's
// words, as opposed to finding its lock removed or taken, which is what a
// late release that deletes the successor's lock makes it report.
func gaveUp(why string) bool {
	for _, s := range []string{
		"no refresh succeeded within",                      // dlock, dlock run
		"refresh-failed",                                   // SoftFileLease's on_compromise
		"Unable to update lock within the stale threshold", // proper-lockfile's onCompromised
	} {
		if strings.Contains(why, s) {
			return true
		}
	}
	return false
}

// overtaken asks the holder that was overtaken (by a process that got in
// at in) whether it had been told that it lost the lock, and says which
// kind of bad round this was: legitimate only if it was told before the
// other got in that its own deadline had passed (it gave the lock up).
// Told that its lock was removed or taken is a deletion it learnt of.
func overtaken(p *peerProc, who string, in int64, tl *timeline) (told bool, verdict string) {
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	n, err := p.lost(ctx)
	switch {
	case err != nil:
		return false, fmt.Sprintf("%s could not be asked whether it was told (%v)", who, err)
	case !n.can:
		return false, fmt.Sprintf("%s was not told: this lock has no way to tell its holder", who)
	case !n.told:
		return false, fmt.Sprintf("%s was never told that it lost the lock", who)
	}
	tl.at(n.at, strings.TrimPrefix(who, "the "), "told that it lost the lock: "+n.why)
	switch {
	case n.at > in:
		return false, fmt.Sprintf("%s was told that it lost the lock only %.1f ms after the other got in", who, float64(n.at-in)/1e6)
	case !gaveUp(n.why):
		return false, fmt.Sprintf("%s was told %.1f ms before the other got in, but that its lock was removed or taken (%s), not that its deadline had passed", who, float64(in-n.at)/1e6, n.why)
	}
	return true, fmt.Sprintf("%s had been told that its deadline passed (%s) %.1f ms before the other got in: it gave the lock up, legitimate and told", who, n.why, float64(in-n.at)/1e6)
}

// isDlock: the lock is a dlock lock directory the bench can inspect.
func isDlock(impl string) bool {
	return impl == implDlock || impl == implDlockPoll || impl == implDlockRun
}

// staleRace is one round: a holder paused past the stale time while two
// waiters (on different mounts) reclaim. Each waiter, once it holds,
// makes an O_EXCL marker on local disk and holds for hold. bad: both held
// at once.
//
// grace is how long after 2×stale + 2×hold a waiter that has not got the
// lock counts as never getting it.
func staleRace(impl string, dirs []string, name, markDir string, stale, hold, grace time.Duration) (out roundOut, err error) {
	tl := newTimeline()
	ps, closeAll, err := startPeers(impl, []string{mountPath(dirs, 0, name), mountPath(dirs, 1, name), mountPath(dirs, 2, name)}, stale)
	if err != nil {
		return out, err
	}
	defer closeAll()
	h, ws := ps[0], ps[1:]
	acq, _, kill, err := pauseHolder(h, tl)
	if err != nil {
		return out, err
	}
	defer kill()
	// Does the lock exclude across the mounts at all? The first waiter
	// tries once, at once: no lock reclaims a holder that early.
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	ok, first, err := ws[0].try(ctx)
	cancel()
	if err != nil {
		return out, err
	}
	var pre *stamp
	if ok {
		if first.at == 0 {
			first.at = mono()
		}
		tl.at(first.at, "waiter 1", "acquired at its first try "+first.detail)
		if first.at-acq.at < int64(stale/2) {
			ws[0].unlockIn(peerCallLimit)
			return out, errNoExclusion
		}
		pre = &first // it reclaimed: it holds
	} else {
		tl.now("waiter 1", "first try: busy")
	}
	marker := filepath.Join(markDir, name+".inside")
	type res struct {
		i       int
		got     bool
		at      int64
		overlap bool
		err     error
	}
	ch := make(chan res, 2)
	// Only the first reclaim must come in time: a second waiter that is
	// still waiting when the deadline comes (behind a mount's cache) did
	// not overlap the first, whose hold has ended by then.
	lctx, lcancel := context.WithTimeout(context.Background(), 2*stale+2*hold+grace)
	defer lcancel()
	for i, w := range ws {
		who := fmt.Sprintf("waiter %d", i+1)
		go func() {
			var st stamp
			if i == 0 && pre != nil {
				st = *pre
			} else {
				var err error
				if st, err = w.lockAt(lctx); err != nil {
					ch <- res{i: i, err: err}
					return
				}
				if st.at == 0 {
					st.at = mono()
				}
				tl.at(st.at, who, "acquired "+st.detail)
			}
			f, err := os.OpenFile(marker, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			if err == nil {
				f.Close()
				tl.now(who, "made the marker")
			} else {
				tl.now(who, "found the marker: the other one holds")
			}
			time.Sleep(hold)
			if err == nil {
				os.Remove(marker)
				tl.now(who, "removed the marker, releases")
			}
			w.unlockIn(peerCallLimit)
			ch <- res{i: i, got: true, at: st.at, overlap: err != nil}
		}()
	}
	var rs [2]res
	for range 2 {
		r := <-ch
		rs[r.i] = r
	}
	got := 0
	for _, r := range rs {
		switch {
		case r.got:
			got++
		case errors.Is(r.err, errGaveUp):
			tl.now(fmt.Sprintf("waiter %d", r.i+1), "still waiting at the round's limit: stopped")
		case r.err != nil:
			return out, r.err
		}
	}
	if got == 0 {
		return out, errNeverReclaims
	}
	for _, r := range rs {
		if r.got && r.at-acq.at < int64(stale/2) {
			return out, errNoExclusion
		}
	}
	for i, r := range rs {
		if !r.overlap {
			continue
		}
		// r got in while the other (o) held: was o told first?
		o := 1 - i
		out.bad = true
		for j, w := range ws {
			tl.logs(fmt.Sprintf("waiter %d", j+1), w)
		}
		var why string
		out.told, why = overtaken(ws[o], fmt.Sprintf("waiter %d", o+1), r.at, tl)
		out.story = fmt.Sprintf("waiter %d got in while waiter %d held; %s. Timeline: %s", i+1, o+1, why, tl)
	}
	return out, nil
}

// lateRelease is one round: a paused holder's lock is taken over by a
// waiter (the successor); then the holder wakes and releases. bad: a
// third process could then acquire while the successor still held (the
// late release deleted the successor's lock, unless the successor had
// been told it lost the lock first: out.told). grace: as for staleRace.
func lateRelease(impl string, dirs []string, name string, stale, grace time.Duration) (out roundOut, err error) {
	tl := newTimeline()
	// The successor and the third process on the other mount.
	ps, closeAll, err := startPeers(impl, []string{mountPath(dirs, 0, name), mountPath(dirs, 1, name), mountPath(dirs, 1, name)}, stale)
	if err != nil {
		return out, err
	}
	defer closeAll()
	h, w, x := ps[0], ps[1], ps[2]
	acq, pid, kill, err := pauseHolder(h, tl)
	if err != nil {
		return out, err
	}
	defer kill()
	try := func(what string) (bool, stamp, error) {
		ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
		defer cancel()
		ok, st, err := x.try(ctx)
		if ok && st.at == 0 {
			st.at = mono()
		}
		if err == nil {
			if ok {
				tl.at(st.at, "third", what+": acquired "+st.detail)
			} else {
				tl.now("third", what+": busy")
			}
		}
		return ok, st, err
	}
	// Does the lock exclude across the mounts at all? The third process
	// tries once, at once: no lock reclaims a holder that early.
	if ok, st, err := try("try while the holder is paused"); err != nil {
		return out, err
	} else if ok {
		x.unlockIn(peerCallLimit)
		if st.at-acq.at < int64(stale/2) {
			return out, errNoExclusion
		}
		return out, fmt.Errorf("the third process reclaimed the paused holder's lock at its first try, %v after it was acquired: the machine is too loaded for this round", time.Duration(st.at-acq.at).Round(time.Millisecond))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*stale+grace)
	sw, err := w.lockAt(ctx)
	cancel()
	if errors.Is(err, errGaveUp) {
		return out, errNeverReclaims
	} else if err != nil {
		return out, err
	}
	if sw.at == 0 {
		sw.at = mono()
	}
	tl.at(sw.at, "successor", "acquired "+sw.detail)
	if sw.at-acq.at < int64(stale/2) {
		w.unlockIn(peerCallLimit)
		return out, errNoExclusion
	}
	// Before the holder wakes, a third process must find the lock busy;
	// if it does not, the lock does not exclude here at all, unless the
	// successor had already given it up (starved past its deadline, and
	// told): then this round has nothing left to test.
	if ok, sx, err := try("try while the successor holds"); err != nil {
		return out, err
	} else if ok {
		told, why := overtaken(w, "the successor", sx.at, tl)
		x.unlockIn(peerCallLimit)
		w.unlockIn(peerCallLimit)
		if told {
			return out, fmt.Errorf("%s, before the holder woke: nothing left to test. Timeline: %s", why, tl)
		}
		return out, errNoExclusion
	}
	h.signal(pid, syscall.SIGCONT)
	tl.now("bench", "continued the holder (SIGCONT)")
	out.lateErr = h.unlockIn(peerCallLimit)
	if out.lateErr != nil {
		tl.now("holder", "its late release said: "+out.lateErr.Error())
	} else {
		tl.now("holder", "its late release said nothing was wrong")
	}
	if isDlock(impl) {
		// What the lock directory shows now, read by the bench.
		if st, err := dlock.Inspect(hostView(mountPath(dirs, 1, name))); err == nil {
			tl.now("bench", "the lock shows: "+strings.TrimPrefix(st.String(), st.Path+": "))
		}
	}
	ok, sx, err := try("try after the late release")
	if err != nil {
		return out, err
	}
	if ok {
		out.bad = true
		tl.logs("successor", w)
		tl.logs("holder", h)
		var why string
		out.told, why = overtaken(w, "the successor", sx.at, tl)
		out.story = fmt.Sprintf("a third process got in after the late release while the successor held; %s. Timeline: %s", why, tl)
		x.unlockIn(peerCallLimit)
	}
	w.unlockIn(peerCallLimit)
	return out, nil
}
