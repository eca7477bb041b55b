//go:build linux

package dlock

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A release through one mount reaches a waiter on the other within its
// poll interval plus a round trip or two, whatever the mounts cache
// (issue 21): a holder process on mount 1 holds about 1.5 s while this
// process waits on mount 2 with the default poll; each hand-off, from the
// holder's Unlock returning (its rename done at the server) to the
// waiter's Lock returning (as the holder's line arrives here: under load
// the waiter may acquire before it), must take at most the poll interval
// plus 1 s.
// It also prints the server's filesystem operations per second of
// waiting, where it can count them (as root, with strace, on
// scripts/sharedfs.sh's rig: the sftp sessions' system calls that touch
// the filesystem; on scripts/glusterfs.sh's: `gluster volume profile`).
// DLOCK_SHAREDFS_HANDOFF_ROUNDS sets the rounds (default 3).
func TestSharedFSHandoff(t *testing.T) {
	fs := needSharedFS(t)
	// The holder plays "another host" (a pid namespace of its own): on
	// this host the waiter would watch its process, and its exit right
	// after Unlock would wake the waiter, which no other host can do.
	if os.Getuid() != 0 {
		t.Skip("a holder in a pid namespace of its own needs root (unshare --pid)")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skipf("a holder in a pid namespace of its own needs unshare: %v", err)
	}
	d1, d2 := fs.dirs(t)
	rounds := envInt("DLOCK_SHAREDFS_HANDOFF_ROUNDS", 3)
	counter, why := newFSOpsCounter(fs)
	limit := DefaultPollInterval + time.Second
	var hand []time.Duration
	var ops int
	var opsFor time.Duration
	opsWhich := map[string]int{}
	for i := range rounds {
		t.Setenv("DLOCK_TEST_ELSEWHERE", "1")
		h := startHolder(t, filepath.Join(d1, "lock"), fs.timeout)
		os.Unsetenv("DLOCK_TEST_ELSEWHERE")
		held := time.Now()
		l, err := New(filepath.Join(d2, "lock"), WithTimeout(fs.timeout))
		if err != nil {
			t.Fatal(err)
		}
		type res struct {
			at  time.Time
			err error
		}
		acquired := make(chan res, 1)
		ctx, cancel := context.WithTimeout(context.Background(), 3*fs.timeout+60*time.Second)
		waiting := time.Now()
		go func() {
			err := l.Lock(ctx)
			acquired <- res{time.Now(), err}
		}()
		time.Sleep(300 * time.Millisecond)
		if counter != nil {
			if err := counter.begin(); err != nil {
				t.Logf("counting the server's operations: %v", err)
				counter = nil
			}
		}
		time.Sleep(time.Until(waiting.Add(1300 * time.Millisecond)))
		if counter != nil {
			n, which, err := counter.end()
			if err != nil {
				t.Logf("counting the server's operations: %v", err)
				counter = nil
			} else {
				ops += n
				opsFor += counter.counted
				for _, part := range strings.Split(which, ", ") {
					if k, v, ok := strings.Cut(part, " "); ok {
						c, _ := strconv.Atoi(v)
						opsWhich[k] += c
					}
				}
			}
		}
		time.Sleep(time.Until(waiting.Add(1500 * time.Millisecond)))
		fmt.Fprintln(h.stdin, "unlock")
		line, _ := h.out.ReadString('\n')
		released := time.Now()
		var r res
		select {
		case r = <-acquired:
		case <-time.After(3*fs.timeout + 60*time.Second):
			cancel()
			r = <-acquired
		}
		cancel()
		if r.err != nil {
			t.Fatalf("round %d: the waiter on mount 2: %v", i+1, r.err)
		}
		d := r.at.Sub(released)
		hand = append(hand, d)
		t.Logf("  round %d: holder (mount 1) held %s; waiter (mount 2) waiting %s; holder's Unlock returned 0 (%s); waiter acquired %s: hand-off %.3fs",
			i+1, rel(held, released), rel(waiting, released), strings.TrimSpace(line), rel(r.at, released), d.Seconds())
		if !strings.Contains(line, "err=<nil>") {
			t.Errorf("round %d: the holder's Unlock: %s", i+1, line)
		}
		if d > limit {
			t.Errorf("round %d: hand-off took %.3fs, more than the poll interval + 1 s (%v)", i+1, d.Seconds(), limit)
		}
		if err := l.Unlock(); err != nil {
			t.Errorf("round %d: the waiter's Unlock: %v", i+1, err)
		}
		h.cmd.Wait()
	}
	sort.Slice(hand, func(i, j int) bool { return hand[i] < hand[j] })
	var sum time.Duration
	for _, d := range hand {
		sum += d
	}
	kind := fs.kind
	if kind == "" {
		kind = "sshfs"
	}
	cache := "coherent"
	if fs.cached {
		cache = "default caching"
	}
	opsText := "not counted (" + why + ")"
	if counter != nil && opsFor > 0 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(opsWhich)) {
			parts = append(parts, fmt.Sprintf("%s %.1f", k, float64(opsWhich[k])/opsFor.Seconds()))
		}
		opsText = fmt.Sprintf("%.1f ops/s (%s; counted %.1fs)", float64(ops)/opsFor.Seconds(), strings.Join(parts, ", "), opsFor.Seconds())
	}
	t.Logf("hand-off %s (%s), %d rounds, holder's TIMEOUT %v, poll %v: release -> waiter acquired %.3f s mean (%.3f–%.3f); server operations per waiting second: %s",
		kind, cache, rounds, fs.timeout, DefaultPollInterval, (sum / time.Duration(len(hand))).Seconds(),
		hand[0].Seconds(), hand[len(hand)-1].Seconds(), opsText)
}

// fsOpsCounter counts the filesystem operations of a rig's server between
// begin and end (as the bench does: bench/alt.go).
type fsOpsCounter struct {
	start   func() error
	stop    func() (int, string, error)
	began   time.Time
	counted time.Duration
	// snapshot: start and stop each take a snapshot of the server's
	// counts somewhere in the call (gluster's CLI, slow under load): the
	// window is from the middle of one call to the middle of the other.
	// Otherwise (strace) it is from start's return to stop's call.
	snapshot bool
}

func (c *fsOpsCounter) begin() error {
	t0 := time.Now()
	if err := c.start(); err != nil {
		return err
	}
	c.began = time.Now()
	if c.snapshot {
		c.began = t0.Add(c.began.Sub(t0) / 2)
	}
	return nil
}

func (c *fsOpsCounter) end() (int, string, error) {
	t0 := time.Now()
	n, which, err := c.stop()
	c.counted = t0.Sub(c.began)
	if c.snapshot {
		c.counted += time.Since(t0) / 2
	}
	return n, which, err
}

// newFSOpsCounter finds the rig's server: the sshd of scripts/sharedfs.sh
// (its sessions' system calls, by strace -c -f) or the glusterd of
// scripts/glusterfs.sh (volume profile). nil and why not where it cannot.
func newFSOpsCounter(fs sharedFS) (*fsOpsCounter, string) {
	if os.Getuid() != 0 {
		return nil, "not root"
	}
	if fs.glusterFS() {
		state := filepath.Dir(filepath.Dir(fs.m1))
		sock := filepath.Join(state, "glusterd", "run", "glusterd.socket")
		vol := "gluster-dlock-" + strings.TrimPrefix(fs.kind, "glusterfs-")
		if _, err := os.Stat(sock); err != nil {
			return nil, "no glusterd socket of scripts/glusterfs.sh"
		}
		cli := func(args ...string) ([]byte, error) {
			out, err := exec.Command("gluster", append([]string{"--glusterd-sock=" + sock, "--mode=script", "volume", "profile", vol}, args...)...).CombinedOutput()
			if err != nil {
				return nil, fmt.Errorf("gluster volume profile %s %s: %v: %s", vol, strings.Join(args, " "), err, out)
			}
			return out, nil
		}
		if out, err := cli("info", "incremental"); err != nil || bytes.Contains(out, []byte("not started")) {
			if _, err := cli("start"); err != nil {
				return nil, err.Error()
			}
		}
		return &fsOpsCounter{
			start: func() error { _, err := cli("info", "incremental"); return err },
			stop: func() (int, string, error) {
				out, err := cli("info", "incremental")
				if err != nil {
					return 0, "", err
				}
				return glusterProfileCalls(out)
			},
			snapshot: true,
		}, ""
	}
	if _, err := exec.LookPath("strace"); err != nil {
		return nil, "no strace"
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(os.Getenv("DLOCK_SHAREDFS_EXPORT")), "sshd.pid"))
	if err != nil {
		return nil, "no sshd.pid of scripts/sharedfs.sh"
	}
	root, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	out := filepath.Join(os.TempDir(), fmt.Sprintf("dlock-handoff-strace-%d.txt", os.Getpid()))
	var st *exec.Cmd
	var stderr bytes.Buffer
	return &fsOpsCounter{
		start: func() error {
			pids := processesBelow(root)
			if len(pids) == 0 {
				return fmt.Errorf("no sftp session under sshd %d", root)
			}
			os.Remove(out)
			args := []string{"-c", "-f", "-qq", "-o", out}
			for _, p := range pids {
				args = append(args, "-p", strconv.Itoa(p))
			}
			st = exec.Command("strace", args...)
			stderr.Reset()
			st.Stderr = &stderr
			if err := st.Start(); err != nil {
				return err
			}
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				if _, err := os.Stat(out); err == nil {
					break
				}
				if time.Now().After(deadline) {
					st.Process.Kill()
					st.Wait()
					return fmt.Errorf("strace did not start within 10s: %s", strings.TrimSpace(stderr.String()))
				}
			}
			time.Sleep(100 * time.Millisecond) // attached
			return nil
		},
		stop: func() (int, string, error) {
			st.Process.Signal(syscall.SIGINT)
			st.Wait()
			defer os.Remove(out)
			return straceFSCalls(out)
		},
	}, ""
}

// straceFSCalls sums the calls of strace -c's summary that are filesystem
// operations (SFTP requests), not the server's transport.
func straceFSCalls(name string) (int, string, error) {
	fsCalls := map[string]bool{
		"mkdir": true, "mkdirat": true, "rmdir": true, "unlink": true, "unlinkat": true,
		"rename": true, "renameat": true, "renameat2": true, "stat": true, "lstat": true,
		"newfstatat": true, "statx": true, "open": true, "openat": true, "getdents64": true,
		"utimensat": true, "utimes": true, "fsync": true, "link": true, "linkat": true,
		"symlink": true, "symlinkat": true, "readlink": true, "readlinkat": true,
		"pread64": true, "pwrite64": true, "truncate": true, "ftruncate": true, "fchmod": true, "chmod": true,
		"fchmodat": true, "fchown": true, "chown": true, "fchownat": true, "lchown": true, "statfs": true, "fstatfs": true,
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return 0, "", err
	}
	n := 0
	var parts []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || !fsCalls[f[len(f)-1]] {
			continue
		}
		if c, err := strconv.Atoi(f[3]); err == nil {
			n += c
			parts = append(parts, fmt.Sprintf("%s %d", f[len(f)-1], c))
		}
	}
	return n, strings.Join(parts, ", "), nil
}

// glusterProfileCalls sums the bricks' calls in `volume profile info
// incremental`, without FORGET, RELEASE and RELEASEDIR.
func glusterProfileCalls(out []byte) (int, string, error) {
	calls := map[string]int{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		fop := f[len(f)-1]
		n, err := strconv.Atoi(f[len(f)-2])
		if err != nil || strings.ToUpper(fop) != fop || fop == "FORGET" || fop == "RELEASE" || fop == "RELEASEDIR" {
			continue
		}
		calls[fop] += n
	}
	total := 0
	var parts []string
	for _, fop := range slices.Sorted(maps.Keys(calls)) {
		total += calls[fop]
		parts = append(parts, fmt.Sprintf("%s %d", fop, calls[fop]))
	}
	return total, strings.Join(parts, ", "), nil
}

// processesBelow lists the processes below pid.
func processesBelow(pid int) []int {
	parent := map[int]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		if f := strings.Fields(s[i+1:]); len(f) > 1 {
			parent[p], _ = strconv.Atoi(f[1])
		}
	}
	var out []int
	for p := range parent {
		for q := parent[p]; q != 0; q = parent[q] {
			if q == pid {
				out = append(out, p)
				break
			}
			if parent[q] == q {
				break
			}
		}
	}
	return out
}
