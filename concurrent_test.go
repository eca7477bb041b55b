//go:build unix

package dlock

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lockdir/dlock/internal/fsys"
	"github.com/lockdir/dlock/internal/lockdir"
)

// The tests in this file use real processes: the test binary re-executes
// itself with DLOCK_TEST_CHILD naming the part a child plays (roles,
// roles_test.go).

// counterChild is the role "counter": counterRounds with DLOCK_PATH,
// DLOCK_DATA and DLOCK_ROUNDS.
func counterChild() int {
	rounds, _ := strconv.Atoi(os.Getenv("DLOCK_ROUNDS"))
	if err := counterRounds(os.Getenv("DLOCK_PATH"), os.Getenv("DLOCK_DATA"), rounds); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// crowdChild is the roles "sem", "read" and "write": crowdRounds, then
// the most holders it saw inside at once.
func crowdChild(role string) int {
	rounds, _ := strconv.Atoi(os.Getenv("DLOCK_ROUNDS"))
	max, err := crowdRounds(role, os.Getenv("DLOCK_PATH"), os.Getenv("DLOCK_DATA"), rounds)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("max", max)
	return 0
}

// singleChild is the role "single": SingleInstance, then "running" until
// a line on stdin.
func singleChild() int {
	SingleInstance(WithDir(os.Getenv("DLOCK_DATA")))
	fmt.Println("running")
	bufio.NewReader(os.Stdin).ReadString('\n')
	return 0
}

// holdChild is the role "hold": it takes the lock at DLOCK_PATH, says
// "held FENCE", waits for the parent's word on stdin, then reports what
// Unlock said.
func holdChild() int {
	timeout, _ := time.ParseDuration(os.Getenv("DLOCK_TIMEOUT"))
	poll, err := time.ParseDuration(os.Getenv("DLOCK_POLL"))
	if err != nil {
		poll = DefaultPollInterval
	}
	l, err := New(os.Getenv("DLOCK_PATH"), WithTimeout(timeout), WithPollInterval(poll))
	if err == nil {
		err = l.Lock(context.Background())
	}
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("held", l.Fence())
	// Wait for the parent's word, then report what Unlock said.
	bufio.NewReader(os.Stdin).ReadString('\n')
	lost := false
	select {
	case <-l.Lost():
		lost = true
	default:
	}
	err = l.Unlock()
	fmt.Printf("unlock lost=%v errlost=%v err=%v\n", lost, errors.Is(err, ErrLost), err)
	return 0
}

// counterRounds does a non-atomic read-modify-write of a counter file
// under the lock, rounds times, and fails on any overlap it sees.
func counterRounds(path, data string, rounds int) error {
	timeout, err := time.ParseDuration(os.Getenv("DLOCK_TIMEOUT"))
	if err != nil {
		timeout = DefaultTimeout
	}
	l, err := New(path, WithPollInterval(20*time.Millisecond), WithTimeout(timeout))
	if err != nil {
		return err
	}
	counter, inside := filepath.Join(data, "counter"), filepath.Join(data, "inside")
	for i := 0; i < rounds; i++ {
		if err := l.Lock(context.Background()); err != nil {
			return err
		}
		// Overlap detector: only one process may have this file at once.
		f, err := os.OpenFile(inside, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("OVERLAP: another holder is inside (fence %d): %v", l.Fence(), err)
		}
		f.Close()
		b, err := os.ReadFile(counter)
		if err != nil {
			return err
		}
		n, _ := strconv.Atoi(string(b))
		if err := os.WriteFile(counter, []byte(strconv.Itoa(n+1)), 0o644); err != nil {
			return err
		}
		if err := os.Remove(inside); err != nil {
			return err
		}
		if err := l.Unlock(); err != nil {
			return err
		}
	}
	return nil
}

// crowdRounds enters a semaphore (role "sem", size from DLOCK_N) or a
// reader/writer lock (roles "read" and "write") rounds times, from
// DLOCK_GOROUTINES goroutines sharing one value (through Do and RDo), or
// from one (through Lock and Unlock). Inside, it leaves a marker file in
// data and counts the markers there: more than N holders of the
// semaphore, or a writer with anyone else, is a violation. It returns the
// most holders it saw at once.
func crowdRounds(role, path, data string, rounds int) (int, error) {
	n, _ := strconv.Atoi(os.Getenv("DLOCK_N"))
	g, _ := strconv.Atoi(os.Getenv("DLOCK_GOROUTINES"))
	var l Locker
	var do func(ctx context.Context, fn func(context.Context) error) error
	var err error
	switch role {
	case "sem":
		var s *Semaphore
		s, err = NewSemaphore(path, n, WithPollInterval(20*time.Millisecond))
		l, do = s, s.Do
	case "read", "write":
		var rw *RWLock
		rw, err = NewRWLock(path, WithPollInterval(20*time.Millisecond), WithMaxReaders(n))
		l, do = rw, rw.Do
		if role == "read" {
			l, do = rw.RLocker(), rw.RDo
		}
	}
	if err != nil {
		return 0, err
	}
	inside := func(name string) (int, error) {
		marker := filepath.Join(data, name)
		if err := os.WriteFile(marker, nil, 0o644); err != nil {
			return 0, err
		}
		names, err := fsys.ReadNames(data)
		if err != nil {
			return 0, err
		}
		writers := 0
		for _, m := range names {
			if strings.HasPrefix(m, "write-") {
				writers++
			}
		}
		switch {
		case role == "sem" && len(names) > n:
			return 0, fmt.Errorf("VIOLATION: %d holders of a semaphore of %d: %q", len(names), n, names)
		case role == "write" && len(names) != 1:
			return 0, fmt.Errorf("VIOLATION: a writer with others: %q", names)
		case role == "read" && writers > 0:
			return 0, fmt.Errorf("VIOLATION: a reader with a writer: %q", names)
		}
		time.Sleep(time.Millisecond) // work, so that holders can overlap
		return len(names), os.Remove(marker)
	}
	if g <= 1 {
		most := 0
		for i := 0; i < rounds; i++ {
			if err := l.Lock(context.Background()); err != nil {
				return most, err
			}
			m, err := inside(fmt.Sprintf("%s-%d-%d", role, os.Getpid(), i))
			if err != nil {
				return most, err
			}
			most = max(most, m)
			if err := l.Unlock(); err != nil {
				return most, err
			}
		}
		return most, nil
	}
	var mu sync.Mutex
	most := 0
	var errs []error
	var wg sync.WaitGroup
	for k := range g {
		wg.Go(func() {
			for i := 0; i < rounds; i++ {
				err := do(context.Background(), func(context.Context) error {
					m, err := inside(fmt.Sprintf("%s-%d-%d-%d", role, os.Getpid(), k, i))
					mu.Lock()
					most = max(most, m)
					mu.Unlock()
					return err
				})
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return most, errors.Join(errs...)
}

// runCrowd runs the given roles as processes and returns the most holders
// at once that any of them saw.
func runCrowd(t *testing.T, n int, rounds int, roles ...string) int {
	t.Helper()
	return runCrowdG(t, n, rounds, 1, roles...)
}

// runCrowdG is runCrowd with g goroutines in each process sharing one
// semaphore or reader/writer lock value.
func runCrowdG(t *testing.T, n, rounds, g int, roles ...string) int {
	t.Helper()
	dir := t.TempDir()
	data := filepath.Join(dir, "inside")
	os.Mkdir(data, 0o755)
	var cmds []*exec.Cmd
	var outs []*strings.Builder
	for _, role := range roles {
		cmd := childCmd(t, role, "DLOCK_PATH="+filepath.Join(dir, "lock"), "DLOCK_DATA="+data,
			"DLOCK_ROUNDS="+strconv.Itoa(rounds), "DLOCK_N="+strconv.Itoa(n), "DLOCK_GOROUTINES="+strconv.Itoa(g))
		out := &strings.Builder{}
		cmd.Stdout = out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, out)
	}
	most := 0
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("%s process %d: %v", roles[i], i, err)
		}
		var m int
		fmt.Sscanf(outs[i].String(), "max %d", &m)
		most = max(most, m)
	}
	return most
}

// Six processes share a semaphore of two: never more than two inside, and
// two at once do happen.
func TestSemaphoreProcessesNeverMoreThanN(t *testing.T) {
	most := runCrowd(t, 2, 40, "sem", "sem", "sem", "sem", "sem", "sem")
	if most != 2 {
		t.Fatalf("most holders at once = %d, want exactly 2", most)
	}
}

// Readers and writers in separate processes: a writer is always alone,
// and readers really overlap.
// Three processes of four goroutines each, every process sharing one
// Semaphore value of three through Do: never more than three inside, and
// three at once do happen (goroutines of one value hold slots of their
// own).
func TestSemaphoreGoroutinesAndProcesses(t *testing.T) {
	most := runCrowdG(t, 3, 15, 4, "sem", "sem", "sem")
	if most != 3 {
		t.Fatalf("most holders at once = %d, want exactly 3", most)
	}
}

// Processes of four goroutines sharing one RWLock value each: readers of
// one value overlap, a writer is alone.
func TestRWLockGoroutinesAndProcesses(t *testing.T) {
	most := runCrowdG(t, 8, 10, 4, "read", "read", "write")
	if most < 2 {
		t.Fatalf("readers never overlapped (most at once %d)", most)
	}
}

func TestRWLockProcesses(t *testing.T) {
	most := runCrowd(t, 8, 30, "read", "read", "read", "write", "read", "write")
	if most < 2 {
		t.Fatalf("readers never overlapped (most at once %d)", most)
	}
}

// A program that calls SingleInstance runs once; a second copy says who
// runs and exits 1; once the first is killed, a third starts at once.
func TestSingleInstanceProcesses(t *testing.T) {
	dir := t.TempDir()
	start := func() (*exec.Cmd, *bufio.Reader, *strings.Builder) {
		cmd := childCmd(t, "single", "DLOCK_DATA="+dir)
		errOut := &strings.Builder{}
		cmd.Stderr = errOut
		cmd.StdinPipe()
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd, bufio.NewReader(out), errOut
	}
	first, out, _ := start()
	if line, _ := out.ReadString('\n'); line != "running\n" {
		t.Fatalf("first instance said %q", line)
	}
	second, _, errOut := start()
	err := second.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("second instance exited %v, want status 1", err)
	}
	if want := fmt.Sprintf("is already running (pid %d on ", first.Process.Pid); !strings.Contains(errOut.String(), want) {
		t.Fatalf("second instance said %q, want %q", errOut, want)
	}
	first.Process.Kill()
	first.Wait()
	if lockdir.Self().HostID == "0" {
		return
	}
	_, out, _ = start()
	if line, _ := out.ReadString('\n'); line != "running\n" {
		t.Fatalf("instance after a crash said %q", line)
	}
}

func childCmd(t *testing.T, role string, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{"DLOCK_TEST_CHILD=" + role}, env...)...)
	cmd.Stderr = os.Stderr
	return cmd
}

func TestProcessesCountExactly(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "lock")
	countTogether(t, []string{path, path, path, path, path, path, path, path}, dir, 150)
}

// countTogether runs a counter process per lock path (one lock seen by
// several paths, or the same path over and over), each doing rounds of a
// non-atomic read-modify-write of data/counter, and checks that no update
// was lost. env goes to every process.
func countTogether(t *testing.T, paths []string, data string, rounds int, env ...string) {
	t.Helper()
	os.WriteFile(filepath.Join(data, "counter"), []byte("0"), 0o644)
	var cmds []*exec.Cmd
	for _, p := range paths {
		cmd := childCmd(t, "counter", append([]string{"DLOCK_PATH=" + p, "DLOCK_DATA=" + data,
			"DLOCK_ROUNDS=" + strconv.Itoa(rounds)}, env...)...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("process %d (%s): %v", i, paths[i], err)
		}
	}
	want := len(paths) * rounds
	if b, _ := os.ReadFile(filepath.Join(data, "counter")); string(b) != strconv.Itoa(want) {
		t.Fatalf("counter = %s, want %d: updates were lost", b, want)
	}
}

// holder is a child process holding the lock.
type holder struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
	fence uint64
}

func startHolder(t *testing.T, path string, timeout time.Duration) *holder {
	t.Helper()
	cmd := childCmd(t, "hold", "DLOCK_PATH="+path, "DLOCK_TIMEOUT="+timeout.String())
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	h := &holder{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	line, err := h.out.ReadString('\n')
	if _, serr := fmt.Sscanf(line, "held %d", &h.fence); err != nil || serr != nil {
		t.Fatalf("holder said %q, %v", line, err)
	}
	return h
}

// A holder killed with SIGKILL on this host is reclaimed at once, long
// before its TIMEOUT.
func TestKilledHolderReclaimedAtOnce(t *testing.T) {
	if lockdir.Self().HostID == "0" {
		t.Skip("no host identity on this OS: dead holders wait for TIMEOUT")
	}
	path := filepath.Join(t.TempDir(), "lock")
	h := startHolder(t, path, time.Hour)
	if err := h.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	h.cmd.Wait()
	l, _ := New(path, WithPatience(30*time.Second))
	if err := l.Lock(context.Background()); err != nil {
		t.Fatalf("Lock after the holder was killed: %v", err)
	}
	if l.Fence() != h.fence+1 {
		t.Fatalf("fence %d after reclaiming fence %d", l.Fence(), h.fence)
	}
	l.Unlock()
}

// A holder killed while a waiter waits for it is reclaimed at once: the
// first waiter watches the holder's process (a pidfd, opened a tenth of
// the poll interval after it first saw that holder). Nothing else could
// wake it in time: it polls every 30 × 3 s (and checks the holder's pid
// every 3 s), the holder's TIMEOUT is an hour, and it gives up after 2 s.
func TestHolderKilledWhileWaitedForIsReclaimed(t *testing.T) {
	if runtime.GOOS != "linux" || lockdir.Self().HostID == "0" {
		t.Skip("needs pidfd (Linux) and a host identity")
	}
	path := filepath.Join(t.TempDir(), "lock")
	h := startHolder(t, path, time.Hour)
	l, _ := New(path, WithPollInterval(3*time.Second))
	lockWithin(t, l, 2*time.Second, func() {
		if err := h.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		h.cmd.Wait()
	})
	if l.Fence() != h.fence+1 {
		t.Fatalf("fence %d after reclaiming fence %d", l.Fence(), h.fence)
	}
	l.Unlock()
}

// startWaiter starts a child that waits for the lock at path (polling
// every poll, which the tests make too slow to matter), and returns once
// its ticket is in the queue. It says "held FENCE" when it acquires, and
// unlocks on a line on its stdin.
func startWaiter(t *testing.T, path string, poll time.Duration) *holder {
	t.Helper()
	cmd := childCmd(t, "hold", "DLOCK_PATH="+path, "DLOCK_TIMEOUT=1h", "DLOCK_POLL="+poll.String())
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGCONT); cmd.Process.Kill(); cmd.Wait() })
	mark := fmt.Sprintf(".%d.", cmd.Process.Pid)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) { // until it queues
		names, _ := fsys.ReadNames(filepath.Join(path, lockdir.QueueDir))
		if slices.ContainsFunc(names, func(n string) bool { return strings.Contains(n, mark) }) && holdsTicket(cmd.Process.Pid) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiter %d never queued: %q", cmd.Process.Pid, names)
		}
	}
	return &holder{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
}

// stop stops the child pid and returns once it is stopped (a signal is
// delivered when the child next runs: it could acquire before that).
func stop(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(pid, &ws, syscall.WUNTRACED, nil); err != nil || !ws.Stopped() {
		t.Fatalf("waiting for %d to stop: %v, %v", pid, ws, err)
	}
}

// holdsTicket reports whether process pid has a ticket open (as a waiter
// does while it waits, on Linux), or cannot tell.
func holdsTicket(pid int) bool {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return true
	}
	for _, fd := range fds {
		if target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); lockdir.IsTicketPath(target) {
			return true
		}
	}
	return runtime.GOOS != "linux"
}

// acquired reads the waiter's "held" line, then lets it unlock.
func (h *holder) acquired(t *testing.T) {
	t.Helper()
	line, err := h.out.ReadString('\n')
	if _, serr := fmt.Sscanf(line, "held %d", &h.fence); err != nil || serr != nil {
		t.Fatalf("waiter said %q, %v", line, err)
	}
	io.WriteString(h.stdin, "unlock\n")
}

// lockWithin starts l.Lock, waits until it blocks, runs then, and fails
// unless Lock succeeds within d. (A context, not PATIENCE: a wait whose
// PATIENCE ends makes one last attempt, which would hide a missed wake-up.)
func lockWithin(t *testing.T, l *Lock, d time.Duration, then func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	blocked := make(chan struct{}, 1)
	l.testBlocked = func() {
		select {
		case blocked <- struct{}{}:
		default:
		}
	}
	done := make(chan error, 1)
	go func() { done <- l.Lock(ctx) }()
	select {
	case <-blocked:
	case err := <-done:
		t.Fatalf("Lock returned %v, want it to wait", err)
	}
	then()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A waiter killed in the queue does not hold up the line: the waiter
// behind it watches its process as well as its ticket (a pidfd), takes
// its place at once and is woken when the one ahead acquires and leaves.
// Nothing else could wake it in time: it polls every 30 × 3 s.
func TestKilledWaiterDoesNotHoldUpTheLine(t *testing.T) {
	if runtime.GOOS != "linux" || lockdir.Self().HostID == "0" {
		t.Skip("needs pidfd (Linux) and a host identity")
	}
	path := filepath.Join(t.TempDir(), "lock")
	h, _ := New(path)
	mustLock(t, h)
	w1 := startWaiter(t, path, time.Hour)
	w2 := startWaiter(t, path, time.Hour)
	l, _ := New(path, WithPollInterval(3*time.Second))
	lockWithin(t, l, 5*time.Second, func() {
		w2.cmd.Process.Kill()
		w2.cmd.Wait()
		if err := h.Unlock(); err != nil {
			t.Fatal(err)
		}
		w1.acquired(t)
	})
	if l.Fence() != w1.fence+1 {
		t.Fatalf("fence %d after %d", l.Fence(), w1.fence)
	}
	l.Unlock()
}

// A first waiter stopped (^Z) when the lock is released does not hold up
// the line: the waiter right behind it polls at the plain interval, not
// the slow one of a watched directory, and takes the free lock. The
// stopped waiter, continued, keeps its place and gets the lock next.
func TestStoppedWaiterDoesNotHoldUpTheLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	h, _ := New(path)
	mustLock(t, h)
	w1 := startWaiter(t, path, time.Hour)
	l, _ := New(path, WithPollInterval(time.Second))
	lockWithin(t, l, 5*time.Second, func() {
		stop(t, w1.cmd.Process.Pid)
		if err := h.Unlock(); err != nil {
			t.Fatal(err)
		}
	})
	w1.cmd.Process.Signal(syscall.SIGCONT)
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	w1.acquired(t)
	if w1.fence != l.Fence()+1 {
		t.Fatalf("fence %d after %d", w1.fence, l.Fence())
	}
}

// A holder stopped with SIGSTOP past its TIMEOUT is reclaimed; once it is
// continued, it learns of the loss, and its late Unlock is ErrLost and
// leaves the successor's lock alone.
func TestStoppedHolderLosesLockAndIsTold(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	const timeout = 500 * time.Millisecond
	h := startHolder(t, path, timeout)
	h.cmd.Process.Signal(syscall.SIGSTOP)
	l, _ := New(path, WithPatience(30*time.Second), WithTimeout(time.Minute))
	if err := l.Lock(context.Background()); err != nil {
		t.Fatalf("Lock while the holder is stopped: %v", err)
	}
	if l.Fence() != h.fence+1 {
		t.Fatalf("fence %d after reclaiming fence %d", l.Fence(), h.fence)
	}
	mine := entryOf(t, path)
	h.cmd.Process.Signal(syscall.SIGCONT)
	io.WriteString(h.stdin, "unlock\n")
	line, _ := h.out.ReadString('\n')
	if !strings.HasPrefix(line, "unlock") || !strings.Contains(line, "errlost=true") {
		t.Fatalf("stopped holder's late Unlock said %q, want ErrLost", line)
	}
	if got := entryOf(t, path); got != mine {
		t.Fatalf("the late Unlock changed the successor's entry %q to %q", mine, got)
	}
	if err := l.Unlock(); err != nil {
		t.Fatalf("successor's Unlock: %v", err)
	}
}

func entryOf(t *testing.T, path string) string {
	t.Helper()
	st, err := readState(path)
	if err != nil || st.Entries != 1 {
		t.Fatalf("lock state %+v, %v", st, err)
	}
	return st.e.name
}

// Two waiters judge the same stale lock at the same instant and both try
// to reclaim it: exactly one wins, a thousand times over.
func TestTwoWaitersRaceToReclaim(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-time.Hour)
	elsewhere := lockdir.Identity{PID: 1, HostID: "e1", Host: "elsewhere"}
	for i := 0; i < 1000; i++ {
		path := filepath.Join(dir, strconv.Itoa(i))
		os.MkdirAll(filepath.Join(path, lockdir.FormatHeld(uint64(i), lockdir.NewToken(), 0, old, old, time.Second, elsewhere)), 0o755)
		var wg sync.WaitGroup
		var won [2]bool
		start := make(chan struct{})
		for w := range 2 {
			l, _ := New(path)
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				ok, err := l.TryLock()
				if err != nil {
					t.Error(err)
				}
				won[w] = ok
			}()
		}
		close(start)
		wg.Wait()
		if won[0] == won[1] {
			t.Fatalf("round %d: winners %v, want exactly one", i, won)
		}
		if e := parseEntry(entryOf(t, path)); e.fence != uint64(i)+1 {
			t.Fatalf("round %d: entry %q", i, e.name)
		}
	}
}

// turnsChild is the role "turns": DLOCK_ROUNDS rounds, each a new Lock of
// DLOCK_PATH that polls (WithWatch(false): a network filesystem's waiter,
// in a polled queue) every DLOCK_POLL, held DLOCK_HOLD; it says "acq
// FENCE" for each (and fails if another holder's marker is there), and
// wants the lock again as soon as it released it,
// as a worker loop or a script calling `dlock run` in a loop does.
func turnsChild() int {
	rounds, _ := strconv.Atoi(os.Getenv("DLOCK_ROUNDS"))
	poll, _ := time.ParseDuration(os.Getenv("DLOCK_POLL"))
	hold, _ := time.ParseDuration(os.Getenv("DLOCK_HOLD"))
	fmt.Println("ready") // and all start at the parent's word
	bufio.NewReader(os.Stdin).ReadString('\n')
	for range rounds {
		l, err := New(os.Getenv("DLOCK_PATH"), WithWatch(false), WithPollInterval(poll))
		if err == nil {
			err = l.Lock(context.Background())
		}
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		fmt.Println("acq", l.Fence())
		// Inside: an O_EXCL marker beside the lock, so that two holders at
		// once (the queue's hand-off gone wrong) fail the test, not only a
		// fence seen twice.
		inside := os.Getenv("DLOCK_PATH") + ".inside"
		f, err := os.OpenFile(inside, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			fmt.Println("error: two inside at once:", err)
			return 1
		}
		f.Close()
		time.Sleep(hold)
		os.Remove(inside)
		if err := l.Unlock(); err != nil {
			fmt.Println("error", err)
			return 1
		}
	}
	return 0
}

// Waiters that poll (as every waiter on a network filesystem does) take
// the lock in turn: each queues, a holder that knows of waiters releases
// to free.E.q, which only the first in line takes, and a releaser that
// wants the lock again at once queues behind the others instead of
// taking it back. 4 processes × 12 rounds, each wanting the lock again
// as soon as it released it, all starting together: until the first
// process is done, no process holds it more than twice in a row (FIFO
// would be once; twice allows for a release that found nobody in the
// queue because every other process was between its rounds). Before the
// polled queue one process kept it for 10 and more rounds.
func TestPolledWaitersTakeTurns(t *testing.T) {
	const procs, rounds = 4, 12
	path := filepath.Join(t.TempDir(), "lock")
	var outs []*bufio.Scanner
	var cmds []*exec.Cmd
	var gos []io.WriteCloser
	for range procs {
		cmd := childCmd(t, "turns", "DLOCK_PATH="+path, "DLOCK_ROUNDS="+strconv.Itoa(rounds), "DLOCK_POLL=20ms", "DLOCK_HOLD=30ms")
		out, _ := cmd.StdoutPipe()
		in, _ := cmd.StdinPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		sc := bufio.NewScanner(out)
		if !sc.Scan() || sc.Text() != "ready" {
			t.Fatalf("child said %q", sc.Text())
		}
		cmds, outs, gos = append(cmds, cmd), append(outs, sc), append(gos, in)
	}
	for _, in := range gos {
		io.WriteString(in, "go\n")
	}
	type acq struct {
		fence uint64
		who   int
	}
	var mu sync.Mutex
	var acqs []acq
	var wg sync.WaitGroup
	for i, sc := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sc.Scan() {
				var f uint64
				if _, err := fmt.Sscanf(sc.Text(), "acq %d", &f); err != nil {
					t.Errorf("process %d: %s", i, sc.Text())
					continue
				}
				mu.Lock()
				acqs = append(acqs, acq{f, i})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("process %d: %v", i, err)
		}
	}
	if len(acqs) != procs*rounds {
		t.Fatalf("%d acquisitions, want %d", len(acqs), procs*rounds)
	}
	slices.SortFunc(acqs, func(a, b acq) int { return int(a.fence - b.fence) })
	longest, run := 0, 0
	var order strings.Builder
	count, finished := map[int]int{}, false
	for i, a := range acqs {
		if i > 0 && acqs[i-1].fence == a.fence {
			t.Fatalf("fence %d acquired twice", a.fence)
		}
		if i > 0 && acqs[i-1].who == a.who {
			run++
		} else {
			run = 1
		}
		if !finished { // (until the first process is done)
			longest = max(longest, run)
		}
		count[a.who]++
		finished = finished || count[a.who] == rounds
		fmt.Fprintf(&order, "%d", a.who)
	}
	t.Logf("holders in fence order: %s; longest run of one process %d", order.String(), longest)
	if longest > 2 {
		t.Errorf("one process held the lock %d times in a row while %d others waited (more than 2)", longest, procs-1)
	}
}
