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
	"strconv"
	"sync"
	"syscall"
	"time"
)

// verdict is one correctness cell: bad out of n, or not applicable.
type verdict struct {
	Bad, N int
	Both   int    // counter only: times two were inside at once (Bad is lost updates then)
	NA     string // why the case cannot be expressed ("" if it ran)
	Note   string
	Cnt    bool `json:",omitempty"` // a counter verdict
}

func (v verdict) String() string {
	if v.NA != "" {
		return "n/a"
	}
	if v.Cnt {
		return fmt.Sprintf("%d lost, %d both in / %d", v.Bad, v.Both, v.N)
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
	// seconds per hand-off: stop at limit, count what was done.
	deadline := time.Now().Add(limit)
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
				if err := p.Lock(context.Background()); err != nil {
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
				if err := p.Unlock(); err != nil {
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

// errNoExclusion: a third process got the lock while the successor held
// it, before the late holder did anything.
var errNoExclusion = errors.New("the lock does not exclude across these mounts")

// Note: "early" is judged against stale/2: every lock here that reclaims
// at all waits for the stale time first.

// pausedHolder starts a peer on path, has it acquire, and stops the
// process that holds the lock (SIGSTOP). kill ends it for good.
func pausedHolder(impl, path string, stale time.Duration) (p *peerProc, pid int, at time.Time, kill func(), err error) {
	if p, err = startPeer(impl, path, stale); err != nil {
		return nil, 0, at, nil, err
	}
	if err := p.Lock(context.Background()); err != nil {
		p.Close()
		return nil, 0, at, nil, err
	}
	at = time.Now()
	pid, err = p.holderPid()
	if err != nil || pid <= 0 {
		p.Close()
		return nil, 0, at, nil, fmt.Errorf("%s: holder's pid: %v", impl, err)
	}
	syscall.Kill(pid, syscall.SIGSTOP)
	return p, pid, at, func() {
		syscall.Kill(pid, syscall.SIGKILL)
		syscall.Kill(pid, syscall.SIGCONT)
		p.kill()
		<-p.done
	}, nil
}

// staleRace is one round: a holder paused past the stale time while two
// waiters (on different mounts) reclaim. Each waiter, once it holds,
// makes an O_EXCL marker on local disk and holds for hold. two: both held
// at once.
//
// grace is how long after 2×stale + 2×hold a waiter that has not got the
// lock counts as never getting it.
func staleRace(impl string, dirs []string, name, markDir string, stale, hold, grace time.Duration) (two bool, err error) {
	_, _, start, kill, err := pausedHolder(impl, mountPath(dirs, 0, name), stale)
	if err != nil {
		return false, err
	}
	defer kill()
	marker := filepath.Join(markDir, name+".inside")
	type res struct {
		overlap, early bool
		err            error
	}
	ch := make(chan res, 2)
	var ws [2]*peerProc
	for i := range ws {
		if ws[i], err = startPeer(impl, mountPath(dirs, i+1, name), stale); err != nil {
			return false, err
		}
		defer ws[i].Close()
	}
	for _, w := range ws {
		go func() {
			if err := w.Lock(context.Background()); err != nil {
				ch <- res{err: err}
				return
			}
			// Long before the stale time (counted from the holder's
			// acquisition): the holder's lock did not exclude this
			// waiter at all (flock across sshfs mounts).
			early := time.Since(start) < stale/2
			f, err := os.OpenFile(marker, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			if err == nil {
				f.Close()
			}
			time.Sleep(hold)
			if err == nil {
				os.Remove(marker)
			}
			w.Unlock()
			ch <- res{overlap: err != nil, early: early}
		}()
	}
	// Only the first reclaim must come in time: a second waiter that is
	// still waiting when it expires (behind a mount's cache) did not
	// overlap the first, whose hold has ended by then.
	deadline := time.After(2*stale + 2*hold + grace)
	for got := 0; got < 2; got++ {
		select {
		case r := <-ch:
			if r.err != nil {
				return false, r.err
			}
			if r.early {
				err = errNoExclusion
			}
			two = two || r.overlap
		case <-deadline:
			for _, w := range ws {
				w.kill()
			}
			if got == 0 {
				return false, errNeverReclaims
			}
			got = 2
		}
	}
	if err != nil {
		return false, err
	}
	return two, nil
}

// lateRelease is one round: a paused holder's lock is taken over by a
// waiter; then the holder wakes and releases. deleted: a third process
// could then acquire while the successor still held (the late release
// deleted the successor's lock). lateErr: what the holder's release said.
// grace: as for staleRace.
func lateRelease(impl string, dirs []string, name string, stale, grace time.Duration) (deleted bool, lateErr error, err error) {
	h, pid, start, kill, err := pausedHolder(impl, mountPath(dirs, 0, name), stale)
	if err != nil {
		return false, nil, err
	}
	defer kill()
	w, err := startPeer(impl, mountPath(dirs, 1, name), stale)
	if err != nil {
		return false, nil, err
	}
	defer w.Close()
	x, err := startPeer(impl, mountPath(dirs, 1, name), stale) // on the successor's mount
	if err != nil {
		return false, nil, err
	}
	defer x.Close()
	got := make(chan error, 1)
	go func() { got <- w.Lock(context.Background()) }()
	select {
	case err := <-got:
		if err != nil {
			return false, nil, err
		}
		if time.Since(start) < stale/2 {
			w.Unlock()
			return false, nil, errNoExclusion
		}
	case <-time.After(2*stale + grace):
		w.kill()
		return false, nil, errNeverReclaims
	}
	// Before the holder wakes, a third process must find the lock busy;
	// if it does not, the lock does not exclude here at all.
	if ok, err := x.try(); err != nil {
		return false, nil, err
	} else if ok {
		x.Unlock()
		w.Unlock()
		return false, nil, errNoExclusion
	}
	syscall.Kill(pid, syscall.SIGCONT)
	lateErr = h.Unlock()
	ok, err := x.try()
	if err != nil {
		return false, lateErr, err
	}
	if ok {
		x.Unlock()
	}
	w.Unlock()
	return ok, lateErr, nil
}
