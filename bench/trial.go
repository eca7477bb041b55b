package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"time"
)

// trial is one run of n worker processes contending for one lock.
type trial struct {
	impl    string
	path    string   // the lock
	paths   []string // if set: worker i uses paths[i%len(paths)] (the same lock through other mounts)
	mode    string
	n       int
	hold    time.Duration
	holdMax time.Duration // if > hold: holds drawn uniformly from [hold, holdMax)
	idle    bool          // worker 0 holds the lock all along; worker 1 waits for it
	warm    time.Duration
	dur     time.Duration
	profile string // directory for per-worker CPU profiles, or ""
	etcd    string // etcd's client URL, for the etcd implementation
	warn    func(format string, args ...any)
	// window, if set, is called when the measuring window opens; what it
	// returns, when the window closes.
	window func() func()
}

var shmSeq atomic.Int64

// shmDir is where the shared page lives: RAM if there is some.
func shmDir() string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		return "/dev/shm"
	}
	return os.TempDir()
}

func (t trial) run() ([]workerResult, error) {
	shmPath := filepath.Join(shmDir(), fmt.Sprintf("dlockbench-%d-%d.shm", os.Getpid(), shmSeq.Add(1)))
	s, err := createShared(shmPath)
	if err != nil {
		return nil, err
	}
	defer os.Remove(shmPath)
	defer s.close()
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmds := make([]*exec.Cmd, t.n)
	outs := make([]*bytes.Buffer, t.n)
	errs := make([]*bytes.Buffer, t.n)
	for i := range t.n {
		path := t.path
		if len(t.paths) > 0 {
			path = t.paths[i%len(t.paths)]
		}
		job := workerJob{Impl: t.impl, Path: path, Shm: shmPath, Index: i, Mode: t.mode, Hold: t.hold, HoldMax: t.holdMax, Etcd: t.etcd}
		if t.idle {
			job.Mode, job.WaitHeld = modeSpin, true
			if i == 0 {
				job.Mode, job.WaitHeld = modeHold, false
			}
		}
		if t.profile != "" {
			mode := t.mode
			if t.idle {
				mode = "idle"
			}
			job.Profile = filepath.Join(t.profile, fmt.Sprintf("%s-%s-%d-w%d.prof", t.impl, mode, t.n, i))
		}
		js, _ := json.Marshal(job)
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), workerEnv+"="+string(js))
		outs[i], errs[i] = new(bytes.Buffer), new(bytes.Buffer)
		cmd.Stdout, cmd.Stderr = outs[i], errs[i]
		if err := cmd.Start(); err != nil {
			kill(cmds[:i])
			return nil, err
		}
		cmds[i] = cmd
	}
	waitErr := make(chan error, 1)
	go func() {
		var first error
		for i, c := range cmds {
			if err := c.Wait(); err != nil && first == nil {
				first = fmt.Errorf("worker %d: %v: %s", i, err, errs[i].Bytes())
			}
		}
		waitErr <- first
	}()
	for deadline := time.Now().Add(60 * time.Second); s.load(offReady) < uint32(t.n); {
		if time.Now().After(deadline) {
			kill(cmds)
			<-waitErr
			return nil, fmt.Errorf("%s: workers not ready after 60s", t.impl)
		}
		time.Sleep(2 * time.Millisecond)
	}
	t0 := mono() + int64(t.warm)
	t1 := t0 + int64(t.dur)
	s.store64(offT0, t0)
	s.store64(offT1, t1)
	s.store(offGo, 1)
	if t.window != nil {
		sleepUntil(t0)
		end := t.window()
		sleepUntil(t1)
		end()
	}
	sleepUntil(t1 + int64(20*time.Millisecond))
	s.store(offStop, 1)
	s.wake(offCount)
	select {
	case err = <-waitErr:
	case <-time.After(60 * time.Second):
		kill(cmds)
		<-waitErr
		err = fmt.Errorf("%s: workers did not stop within 60s", t.impl)
	}
	if err != nil {
		return nil, err
	}
	res := make([]workerResult, t.n)
	for i := range t.n {
		if err := json.Unmarshal(outs[i].Bytes(), &res[i]); err != nil {
			return nil, fmt.Errorf("worker %d: %v (output %q, stderr %q)", i, err, outs[i].Bytes(), errs[i].Bytes())
		}
		if res[i].Err != "" {
			return nil, fmt.Errorf("%s worker %d: %s", t.impl, i, res[i].Err)
		}
	}
	if v := s.load(offViol); v != 0 {
		t.warn("%s, %s, %d processes: %d acquisitions found the lock already held: MUTUAL EXCLUSION BROKEN", t.impl, t.mode, t.n, v)
	}
	lockErrs, first := 0, ""
	for _, r := range res {
		if lockErrs += r.LockErr; first == "" {
			first = r.FirstLE
		}
	}
	if lockErrs > 0 {
		t.warn("%s, %s, %d processes: %d Lock calls failed (retried); the first: %s", t.impl, t.mode, t.n, lockErrs, first)
	}
	return res, nil
}

func kill(cmds []*exec.Cmd) {
	for _, c := range cmds {
		if c != nil && c.Process != nil {
			c.Process.Kill()
		}
	}
}
