package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime/pprof"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// workerEnv carries a worker's job when the bench binary re-executes itself.
const workerEnv = "DLOCKBENCH_WORKER"

// Worker modes.
const (
	modeBaton = "baton" // hold, release, then wait until another process acquired
	modeSpin  = "spin"  // acquire and release as fast as possible
	modeHold  = "hold"  // acquire once and hold until told to stop
)

type workerJob struct {
	Impl     string
	Path     string
	Shm      string
	Index    int
	Mode     string
	Hold     time.Duration
	HoldMax  time.Duration // if > Hold: each hold is drawn uniformly from [Hold, HoldMax)
	WaitHeld bool          // start only once the "hold" worker holds the lock
	Profile  string        // write a CPU profile of the measuring window here
	Etcd     string        // etcd's client URL, for the etcd implementation
}

// cpuReporter is a locker whose work is done in another process (a peer):
// the CPU counted is that process's, not the worker's.
type cpuReporter interface{ cpu() int64 }

type workerResult struct {
	Acq     int     // acquisitions inside the measuring window
	Lat     []int64 // handoff latencies inside the window, ns
	CPU     int64   // user+system CPU inside the window, ns
	CSW     int64   // context switches inside the window
	NoWatch bool    // no inotify instance could be made: dlock would only poll
	LockErr int     // Lock calls that failed (and were retried)
	FirstLE string  // the first of those errors
	Err     string
}

// maybeWorker runs the worker job given in the environment, if any, and
// exits. main and TestMain call it first.
func maybeWorker() {
	s := os.Getenv(workerEnv)
	if s == "" {
		return
	}
	var job workerJob
	res := workerResult{}
	if err := json.Unmarshal([]byte(s), &job); err != nil {
		res.Err = err.Error()
	} else if err := runWorker(job, &res); err != nil {
		res.Err = err.Error()
	}
	json.NewEncoder(os.Stdout).Encode(res)
	os.Exit(0)
}

func runWorker(job workerJob, res *workerResult) error {
	s, err := openShared(job.Shm)
	if err != nil {
		return err
	}
	defer s.close()
	l, err := newLocker(job.Impl, job.Path, job.Etcd)
	if err != nil {
		return err
	}
	if c, ok := l.(io.Closer); ok {
		defer c.Close()
	}
	if w, err := fsnotify.NewWatcher(); err != nil {
		res.NoWatch = true
	} else {
		w.Close()
	}
	s.add(offReady)
	for s.load(offGo) == 0 {
		time.Sleep(time.Millisecond)
	}
	t0, t1 := s.load64(offT0), s.load64(offT1)

	// CPU is read at the window's edges by a goroutine that sleeps until
	// then, so start-up and shut-down are not counted.
	var cpu, csw atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		sleepUntil(t0)
		var prof *os.File
		if job.Profile != "" {
			if prof, err = os.Create(job.Profile); err == nil {
				pprof.StartCPUProfile(prof)
			}
		}
		c0, s0 := cpuNow()
		var p0 int64
		if r, ok := l.(cpuReporter); ok {
			p0 = r.cpu()
		}
		sleepUntil(t1)
		c1, s1 := cpuNow()
		if r, ok := l.(cpuReporter); ok {
			c0, c1 = 0, time.Duration(r.cpu()-p0)
		}
		cpu.Store(int64(c1 - c0))
		csw.Store(s1 - s0)
		if prof != nil {
			pprof.StopCPUProfile()
			prof.Close()
		}
	}()
	defer func() {
		select {
		case <-done:
		case <-time.After(time.Second):
		}
		res.CPU, res.CSW = cpu.Load(), csw.Load()
	}()

	ctx := context.Background()
	if job.Mode == modeHold {
		if err := l.Lock(ctx); err != nil {
			return err
		}
		s.store(offHeld, 1)
		for s.load(offStop) == 0 {
			time.Sleep(20 * time.Millisecond)
		}
		return l.Unlock()
	}
	for job.WaitHeld && s.load(offHeld) == 0 {
		time.Sleep(time.Millisecond)
	}
	me := uint32(job.Index + 1)
	for {
		if err := l.Lock(ctx); err != nil {
			// Report, do not stop: a failed Lock is a finding, and the
			// other workers still need this one to take part.
			if res.LockErr++; res.FirstLE == "" {
				res.FirstLE = err.Error()
			}
			if res.LockErr > 1000 {
				return fmt.Errorf("giving up after %d failed Lock calls: %v", res.LockErr, res.FirstLE)
			}
			if s.load(offStop) != 0 {
				return nil
			}
			time.Sleep(time.Millisecond)
			continue
		}
		t := mono()
		rel, who := s.load64(offRelease), s.load(offReleaser)
		if !atomic.CompareAndSwapUint32(s.u32(offOwner), 0, me) {
			s.add(offViol)
			s.store(offOwner, me)
		}
		if t >= t0 && t < t1 {
			res.Acq++
			if who != 0 && who != me {
				res.Lat = append(res.Lat, t-rel)
			}
		}
		c := s.add(offCount)
		s.wake(offCount)
		stop := s.load(offStop) != 0
		if hold := job.Hold; hold > 0 && !stop {
			if job.HoldMax > hold {
				hold += rand.N(job.HoldMax - hold)
			}
			time.Sleep(hold)
		}
		s.store(offOwner, 0)
		s.store(offReleaser, me)
		s.store64(offRelease, mono())
		if err := l.Unlock(); err != nil {
			return fmt.Errorf("unlock: %w", err)
		}
		if stop {
			return nil
		}
		if job.Mode == modeBaton {
			for s.load(offCount) == c && s.load(offStop) == 0 {
				s.waitChange(offCount, c, 100*time.Millisecond)
			}
		}
	}
}
