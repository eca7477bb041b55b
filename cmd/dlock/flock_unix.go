//go:build unix

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lockdir/dlock"
	"golang.org/x/sys/unix"
)

// flockMain runs the flock personality: prog is the name it was invoked
// by, args the rest of the command line.
func flockMain(prog string, args []string, stdout, stderr io.Writer) int {
	c, code, stop := parseFlock(prog, args, stdout, stderr)
	if stop {
		return code
	}
	switch {
	case c.argv == nil:
		return flockDescriptor(c, stdout, stderr)
	case c.unlock:
		// flock -u FILE COMMAND unlocks a descriptor it has just opened,
		// which holds nothing: COMMAND runs unlocked.
		if c.file != "" {
			f, code := openLockFile(c, stderr)
			if f == nil {
				return code
			}
			f.Close()
		} else if code := flockUnlockFd(c, stderr); code != 0 {
			return code // --fd N -u COMMAND: that descriptor's lock goes first
		}
		return runUnlocked(c, stderr)
	case c.noFork:
		return flockNoFork(c, stdout, stderr)
	}
	rc, code, stop := flockRunConfig(c, stderr)
	if stop {
		return code
	}
	if c.useFd {
		if _, err := fdStat(c.fd); err != nil {
			fmt.Fprintf(stderr, "%s: %d: %s\n", prog, c.fd, strerror(err))
			return exDataErr
		}
	}
	return runFront(rc, append([]string{"flock", prog}, args...), stderr)
}

// flockRunConfig is the runConfig of the supervisor for a flock command
// line with a COMMAND.
func flockRunConfig(c *flockConfig, stderr io.Writer) (*runConfig, int, bool) {
	rc := &runConfig{lockFlags: c.lf, grace: c.grace, graceSet: c.graceSet, stopLeftovers: c.stopLeft, path: c.file, argv: c.argv, fl: c}
	rc.refresh = rc.timeout / 3
	rc.margin = rc.grace + reactionSlack(rc.timeout)
	switch {
	case rc.timeout <= 0 || rc.poll <= 0 || rc.maxSkew < 0:
		return nil, flockUsageError(stderr, c.prog, "--stale-after and --poll must be positive, --max-clock-skew not negative", false), true
	case rc.grace < 0 || rc.margin+rc.refresh >= rc.timeout:
		return nil, flockUsageError(stderr, c.prog, fmt.Sprintf("--grace %v with --stale-after %v cannot work: give --stale-after %s or more", rc.grace, rc.timeout, minTimeout(rc.grace)), false), true
	}
	return rc, 0, false
}

// openLockFile opens FILE as flock does: read-only (write-only for an
// exclusive --fcntl lock), created if missing (mode 0666 less umask);
// a directory read-only.
func openLockFile(c *flockConfig, stderr io.Writer) (*os.File, int) {
	fl := os.O_RDONLY
	if c.fcntl && !c.shared {
		fl = os.O_WRONLY
	}
	f, err := os.OpenFile(c.file, fl|os.O_CREATE|syscall.O_NOCTTY, 0o666)
	if errors.Is(err, syscall.EISDIR) {
		f, err = os.OpenFile(c.file, os.O_RDONLY|syscall.O_NOCTTY, 0)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: cannot open lock file %s: %s\n", c.prog, c.file, strerror(err))
		switch {
		case errors.Is(err, syscall.ENOMEM), errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
			return nil, exOSErr
		case errors.Is(err, syscall.EROFS), errors.Is(err, syscall.ENOSPC):
			return nil, exCantCreat
		}
		return nil, exNoInput
	}
	return f, 0
}

func fdStat(fd int) (*unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// kernelLock is the kernel's lock on the file: flock(2), or an open file
// description lock with --fcntl.
type kernelLock struct {
	f      *os.File
	c      *flockConfig
	reopen bool // reopened read-write once already
}

// name is the file as flock's messages name it.
func (k *kernelLock) name() string {
	if k.c.file != "" {
		return k.c.file
	}
	return strconv.Itoa(k.c.fd)
}

func (k *kernelLock) do(op int) error {
	fd := int(k.f.Fd())
	if !k.c.fcntl {
		return unix.Flock(fd, op)
	}
	return ofdLock(fd, op)
}

// acquire takes the kernel lock by deadline (zero: no limit; -n: one
// attempt). It returns conflict when the lock stayed busy.
func (k *kernelLock) acquire(ctx context.Context, deadline time.Time, nb bool) (conflict bool, err error) {
	op := unix.LOCK_EX
	if k.c.shared {
		op = unix.LOCK_SH
	}
	delay := time.Millisecond
	for {
		err := k.do(op | unix.LOCK_NB)
		switch {
		case err == nil:
			return false, nil
		case errors.Is(err, unix.EWOULDBLOCK), errors.Is(err, unix.EACCES):
			if nb || !deadline.IsZero() && !time.Now().Before(deadline) {
				return true, nil
			}
			select {
			case <-ctx.Done():
				return false, ctx.Err()
			case <-time.After(delay):
			}
			delay = min(2*delay, 25*time.Millisecond)
		case errors.Is(err, unix.EINTR):
		case (errors.Is(err, unix.EIO) || errors.Is(err, unix.EBADF)) && !k.reopen && !k.c.shared && k.c.file != "" && unix.Access(k.c.file, unix.R_OK|unix.W_OK) == nil:
			// NFSv4, where flock is emulated by fcntl: reopen read-write.
			f, oerr := os.OpenFile(k.c.file, os.O_RDWR|syscall.O_NOCTTY, 0)
			if oerr != nil {
				return false, err
			}
			k.f.Close()
			k.f, k.reopen = f, true
		default:
			return false, err
		}
	}
}

// fail reports an error of the kernel lock as flock does.
func (k *kernelLock) fail(err error, stderr io.Writer) int {
	fmt.Fprintf(stderr, "%s: %s: %s\n", k.c.prog, k.name(), strerror(err))
	if errors.Is(err, unix.ENOLCK) || errors.Is(err, unix.ENOMEM) {
		return exOSErr
	}
	return exDataErr
}

// heldEnv lists, for a job, the descriptors it inherits whose locks
// dlock's holder holds: "FD:DEV:INO:API" entries, comma-separated. A flock
// in the job that locks one of them again (the same open file
// description: the kernel lets it) does not wait for the dlock lock its
// own ancestor holds.
const heldEnv = "DLOCK_FLOCK_HELD"

func heldEntry(fd int, st *unix.Stat_t, fcntl bool) string {
	api := "flock"
	if fcntl {
		api = "fcntl"
	}
	return fmt.Sprintf("%d:%d:%d:%s", fd, st.Dev, st.Ino, api)
}

// heldByAncestor reports whether fd is one that an enclosing dlock flock
// holds the dlock lock for.
func heldByAncestor(fd int, st *unix.Stat_t, fcntl bool) bool {
	want := heldEntry(fd, st, fcntl)
	for _, e := range strings.Split(os.Getenv(heldEnv), ",") {
		if e == want {
			return true
		}
	}
	return false
}

// lockTimer measures the wait for flock's --verbose line.
type lockTimer struct {
	c     *flockConfig
	start time.Time
}

func (t lockTimer) deadline() time.Time {
	if t.c.haveWait && !t.c.nonblock {
		return t.start.Add(t.c.wait)
	}
	return time.Time{}
}

func (t lockTimer) remaining() time.Duration {
	switch d := t.deadline(); {
	case t.c.nonblock:
		return 0
	case d.IsZero():
		return -1
	default:
		return max(time.Until(d), 0)
	}
}

// conflict reports a busy lock as flock does.
func (t lockTimer) conflict(stderr io.Writer) int {
	if t.c.verbose {
		if t.c.haveWait && !t.c.nonblock {
			fmt.Fprintf(stderr, "%s: timeout while waiting to get lock\n", t.c.prog)
		} else {
			fmt.Fprintf(stderr, "%s: failed to get lock\n", t.c.prog)
		}
	}
	return t.c.conflict
}

// took prints flock's --verbose line once the lock is held.
func (t lockTimer) took(stdout io.Writer) {
	if t.c.verbose {
		d := time.Since(t.start)
		fmt.Fprintf(stdout, "%s: getting lock took %d.%06d seconds\n", t.c.prog, d/time.Second, (d%time.Second)/time.Microsecond)
	}
}

// dlockError reports an error of the dlock lock in flock's words.
func dlockError(c *flockConfig, err error, lockPath string, stderr io.Writer) int {
	msg := flockPrefix(c.prog, explain(err, lockPath))
	if _, lerr := os.Lstat(lockPath); errors.Is(err, iofs.ErrPermission) && errors.Is(lerr, iofs.ErrNotExist) {
		// flock needs only read access to FILE; dlock's lock needs a
		// directory made beside it, once.
		dir := filepath.Dir(lockPath)
		mode := ""
		if fi, serr := os.Stat(dir); serr == nil {
			mode = fmt.Sprintf(" (mode %04o%s)", uint32(fi.Mode().Perm()), describeOwner(fi))
		}
		msg = fmt.Sprintf("%s: cannot create the lock directory %s: permission denied in %s%s. Run this flock once as a user who may write there: the directory it makes lets every user who may read the file take the lock", c.prog, lockPath, dir, mode)
	}
	fmt.Fprintln(stderr, msg)
	switch {
	case errors.Is(err, syscall.EROFS), errors.Is(err, syscall.ENOSPC):
		return exCantCreat
	case errors.Is(err, syscall.ENOMEM):
		return exOSErr
	case errors.Is(err, iofs.ErrPermission), errors.Is(err, iofs.ErrNotExist):
		return exNoInput
	}
	return exDataErr
}

// flockLocked is what the supervisor holds for a flock command line.
type flockLocked struct {
	kl      *kernelLock
	st      *unix.Stat_t
	locker  dlock.Locker // nil when an ancestor holds it
	path    string       // the lock directory
	fence   uint64
	inherit int // the descriptor number COMMAND gets the file at; -1 none
}

// flockAcquire takes the dlock lock and the kernel lock for the
// supervisor: FILE opened here, or the descriptor the front passed as
// descriptor 5. It returns the exit status when it could not.
func flockAcquire(ctx context.Context, c *runConfig, extra []dlock.Option, stdout, stderr io.Writer) (*flockLocked, int) {
	fl := c.fl
	t := lockTimer{c: fl, start: time.Now()}
	var f *os.File
	inherit := 3
	if fl.file != "" {
		var code int
		if f, code = openLockFile(fl, stderr); f == nil {
			return nil, code
		}
	} else {
		f = os.NewFile(5, strconv.Itoa(fl.fd))
		syscall.CloseOnExec(5)
		inherit = fl.fd
	}
	if fl.close {
		inherit = -1
	}
	st, err := fdStat(int(f.Fd()))
	if err != nil {
		fmt.Fprintf(stderr, "%s: %s: %s\n", fl.prog, f.Name(), strerror(err))
		return nil, exDataErr
	}
	k := &kernelLock{f: f, c: fl}
	out := &flockLocked{kl: k, st: st, inherit: inherit}
	if fl.useFd && heldByAncestor(fl.fd, st, fl.fcntl) {
		// The ancestor's lock: its path and fence, from the environment
		// it gave its job.
		out.path = os.Getenv("DLOCK_PATH")
		out.fence, _ = strconv.ParseUint(os.Getenv("DLOCK_FENCE"), 10, 64)
	} else {
		lock, plain, mode, err := flockTarget(fl, f)
		if err != nil {
			return nil, dlockError(fl, err, fl.file, stderr)
		}
		out.path = lock
		l, err := openFlockAt(fl, lock, plain, mode, extra...)
		if err != nil {
			return nil, dlockError(fl, err, lock, stderr)
		}
		lf := c.lockFlags
		lf.patience = t.remaining()
		err = lockWithPatience(ctx, l, lf.patience)
		var busy *dlock.BusyError
		switch {
		case errors.As(err, &busy), errors.Is(err, dlock.ErrBusy):
			return nil, t.conflict(stderr)
		case err != nil:
			return nil, dlockError(fl, err, lock, stderr)
		}
		out.locker, out.fence = l, l.Fence()
	}
	conflict, err := k.acquire(ctx, t.deadline(), fl.nonblock)
	if conflict || err != nil {
		if out.locker != nil {
			out.locker.Unlock()
		}
		if conflict {
			return nil, t.conflict(stderr)
		}
		return nil, k.fail(err, stderr)
	}
	t.took(stdout)
	return out, 0
}

// lockWithPatience takes l, waiting at most patience (< 0: no limit).
func lockWithPatience(ctx context.Context, l dlock.Locker, patience time.Duration) error {
	if patience == 0 {
		ok, err := l.TryLock()
		if err == nil && !ok {
			return dlock.ErrBusy
		}
		return err
	}
	if patience > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, patience)
		defer cancel()
	}
	err := l.Lock(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		return dlock.ErrBusy
	}
	return err
}

// prepareJob gives COMMAND the file (unless --close) and the lock's
// variables.
func (fl *flockLocked) prepareJob(c *flockConfig, cmd *exec.Cmd) {
	env := os.Environ()
	held := os.Getenv(heldEnv)
	if fl.inherit >= 3 {
		files := make([]*os.File, fl.inherit-2)
		files[fl.inherit-3] = fl.kl.f
		cmd.ExtraFiles = files
		if held != "" {
			held += ","
		}
		held += heldEntry(fl.inherit, fl.st, c.fcntl)
	}
	cmd.Env = append(env, "DLOCK_PATH="+fl.path, "DLOCK_FENCE="+strconv.FormatUint(fl.fence, 10), heldEnv+"="+held)
}

// release gives the locks back: the kernel's first (for FILE; a
// descriptor's stays with its open file description, as with flock), so
// that a waiter that gets the dlock lock finds the kernel's free.
func (fl *flockLocked) release(c *flockConfig) error {
	if c.file != "" {
		fl.kl.f.Close()
	}
	if fl.locker == nil {
		return nil
	}
	return fl.locker.Unlock()
}

// runUnlocked runs COMMAND without a lock, as flock -u FILE COMMAND does.
func runUnlocked(c *flockConfig, stderr io.Writer) int {
	cmd := exec.Command(c.argv[0], c.argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "%s: failed to execute %s: %s\n", c.prog, c.argv[0], strerror(err))
		return exUnavailable
	}
	cmd.Wait()
	return exitStatus(cmd.ProcessState)
}

// flockTarget is the dlock lock that goes with the open file f.
func flockTarget(c *flockConfig, f *os.File) (lock string, plain bool, mode os.FileMode, err error) {
	fi, err := f.Stat()
	if err != nil {
		return "", false, 0, err
	}
	path := c.file
	if path == "" {
		if path, err = fdPath(f); err != nil {
			return "", false, 0, err
		}
	}
	lock, plain, err = flockLockPath(path, fi, c.fcntl)
	return lock, plain, flockLockMode(fi), err
}

// openFlockAt opens the dlock lock at lock: a reader/writer lock (-s a
// reader, else the writer), or a plain lock where one is already.
func openFlockAt(c *flockConfig, lock string, plain bool, mode os.FileMode, extra ...dlock.Option) (dlock.Locker, error) {
	lf := c.lf
	if plain {
		lf.shared, lf.exclusive = false, false // a plain lock: exclusive
	}
	if lf.mode == 0 {
		lf.mode = mode
	}
	l, _, err := lf.open(lock, extra...)
	return l, err
}

// The descriptor form, "flock [-s|-x|-u] NUMBER": the kernel lock is on
// the caller's open file description, and lasts while it does; the dlock
// lock is held by a background holder process for as long as the caller
// (this process's parent) lives and keeps that descriptor locked. -u
// unlocks the descriptor and stops the holder.

// holderArgs are the background holder's arguments: what it watches, then
// the lock and the flock command line it re-parses.
func fdHolderKey(watch, fd int, st *unix.Stat_t, fcntl bool) []string {
	api := "flock"
	if fcntl {
		api = "fcntl"
	}
	return []string{flockHolderCmd, strconv.Itoa(watch), strconv.Itoa(fd), strconv.FormatUint(uint64(st.Dev), 10), strconv.FormatUint(st.Ino, 10), api}
}

func flockDescriptor(c *flockConfig, stdout, stderr io.Writer) int {
	st, err := fdStat(c.fd)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %d: %s\n", c.prog, c.fd, strerror(err))
		return exDataErr
	}
	f := os.NewFile(uintptr(c.fd), strconv.Itoa(c.fd))
	if c.fd > 2 {
		// Not to the holder: the lock must end with the caller's
		// descriptor, not live on in a copy of it.
		syscall.CloseOnExec(c.fd)
	}
	k := &kernelLock{f: f, c: c}
	parent := os.Getppid()
	key := fdHolderKey(parent, c.fd, st, c.fcntl)
	if c.unlock {
		return flockUnlockFd(c, stderr)
	}
	t := lockTimer{c: c, start: time.Now()}
	typ := "x"
	if c.shared {
		typ = "s"
	}
	var h *holderConn
	if !heldByAncestor(c.fd, st, c.fcntl) {
		// A holder of this descriptor's lock already (flock -s 9, then
		// flock -x 9): the same kind is kept, another is replaced.
		mine := findHolders(key, typ)
		stopHolders(except(findHolders(key, ""), mine))
		if len(mine) == 0 {
			lock, plain, mode, err := flockTarget(c, f)
			if err != nil {
				return dlockError(c, err, strconv.Itoa(c.fd), stderr)
			}
			args := append(key, typ, lock, strconv.FormatBool(plain), strconv.FormatUint(uint64(mode), 8), strconv.FormatInt(int64(t.remaining()), 10), c.prog)
			var code int
			if h, code = startFlockHolder(append(args, c.origArgs...), stderr); h == nil {
				if code == exitBusy {
					return t.conflict(stderr)
				}
				return code
			}
		}
	}
	conflict, err := k.acquire(context.Background(), t.deadline(), c.nonblock)
	if conflict || err != nil {
		if h != nil {
			h.abandon()
		}
		if conflict {
			return t.conflict(stderr)
		}
		return k.fail(err, stderr)
	}
	if h != nil {
		h.start()
	}
	t.took(stdout)
	return 0
}

// flockUnlockFd is -u of a descriptor: the kernel's lock of its open
// file description goes, and so does the dlock lock its holder keeps,
// before flock returns.
func flockUnlockFd(c *flockConfig, stderr io.Writer) int {
	st, err := fdStat(c.fd)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %d: %s\n", c.prog, c.fd, strerror(err))
		return exDataErr
	}
	k := &kernelLock{f: os.NewFile(uintptr(c.fd), strconv.Itoa(c.fd)), c: c}
	if err := k.do(unix.LOCK_UN); err != nil {
		return k.fail(err, stderr)
	}
	stopHolders(findHolders(fdHolderKey(os.Getppid(), c.fd, st, c.fcntl), ""))
	return 0
}

func except(all, keep []int) []int {
	var out []int
	for _, p := range all {
		kept := false
		for _, k := range keep {
			kept = kept || k == p
		}
		if !kept {
			out = append(out, p)
		}
	}
	return out
}

// stopHolders stops the holders and waits until they are gone (they
// release first).
func stopHolders(pids []int) {
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, pid := range pids {
		for processAlive(pid) && !zombie(pid) && time.Now().Before(deadline) {
			time.Sleep(2 * time.Millisecond)
		}
	}
}

// holderConn is a started holder that holds the dlock lock.
type holderConn struct {
	cmd   *exec.Cmd
	goOn  *os.File      // "go": the kernel lock is held too; closed without: release
	rep   *bufio.Reader // the holder's reports
	fence string
}

// abandon tells the holder to release, and waits until it has.
func (h *holderConn) abandon() {
	h.goOn.Close()
	h.cmd.Wait()
}

// start tells the holder that the kernel lock is held, and waits until it
// has looked whether the caller holds it (flock -n 7 7>F does not, once
// flock exits: the holder releases before flock does).
func (h *holderConn) start() {
	fmt.Fprintln(h.goOn, "go")
	h.goOn.Close()
	h.rep.ReadString('\n')
	h.cmd.Process.Release()
}

// startFlockHolder starts the holder and waits until it holds the dlock
// lock. The holder gets a pipe on descriptor 3 to report on, and one on
// descriptor 4 on which "go" tells it that the kernel lock is held too.
// It keeps the caller's stderr for the news of a loss, unless that is a
// pipe or socket someone reads to its end.
func startFlockHolder(args []string, stderr io.Writer) (*holderConn, int) {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "dlock: cannot find its own executable to start the holder: %v\n", err)
		return nil, exitError
	}
	rep, repW, err := os.Pipe()
	if err != nil {
		return nil, exitError
	}
	goR, goW, err := os.Pipe()
	if err != nil {
		return nil, exitError
	}
	h := exec.Command(exe, args...)
	var e unix.Stat_t
	if unix.Fstat(2, &e) == nil && e.Mode&unix.S_IFMT != unix.S_IFIFO && e.Mode&unix.S_IFMT != unix.S_IFSOCK {
		h.Stderr = os.Stderr
	}
	h.ExtraFiles = []*os.File{repW, goR}
	h.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := h.Start(); err != nil {
		fmt.Fprintf(stderr, "dlock: starting the holder: %v\n", err)
		return nil, exitError
	}
	repW.Close()
	goR.Close()
	r := bufio.NewReader(rep)
	line, _ := r.ReadString('\n')
	if fence, ok := strings.CutPrefix(strings.TrimSpace(line), "held "); ok {
		return &holderConn{cmd: h, goOn: goW, rep: r, fence: fence}, 0
	}
	rep.Close()
	goW.Close()
	h.Wait()
	code := exitStatus(h.ProcessState)
	if code == 0 {
		code = exitError
	}
	return nil, code
}

// flockHolderMain is the holder: args are fdHolderKey's (but the
// command), the lock type, the lock directory, whether it is plain, its
// mode, the patience in nanoseconds, the personality's name and the
// flock command line.
func flockHolderMain(args []string, stderr io.Writer) int {
	report := os.NewFile(3, "report")
	goOn := os.NewFile(4, "go")
	syscall.CloseOnExec(3)
	syscall.CloseOnExec(4)
	if len(args) < 11 {
		return exitUsage
	}
	watch, _ := strconv.Atoi(args[0])
	fd, _ := strconv.Atoi(args[1])
	dev, _ := strconv.ParseUint(args[2], 10, 64)
	ino, _ := strconv.ParseUint(args[3], 10, 64)
	typ, lock := args[5], args[6]
	plain, _ := strconv.ParseBool(args[7])
	mode, _ := strconv.ParseUint(args[8], 8, 32)
	patience, _ := strconv.ParseInt(args[9], 10, 64)
	c, code, stop := parseFlock(args[10], args[11:], io.Discard, stderr)
	if stop {
		return code
	}
	c.shared = typ == "s"
	c.lf.shared, c.lf.exclusive = c.shared, !c.shared
	watched := watchProcess(watch)
	l, err := openFlockAt(c, lock, plain, os.FileMode(mode))
	if err != nil {
		return dlockError(c, err, lock, stderr)
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	locked := make(chan error, 1)
	go func() { locked <- lockWithPatience(ctx, l, time.Duration(patience)) }()
	select {
	case err = <-locked:
	case <-watched:
		cancel()
		if err := <-locked; err == nil {
			l.Unlock()
		}
		return exitError
	case sig := <-sigs:
		cancel()
		if err := <-locked; err == nil {
			l.Unlock()
		}
		return 128 + signum(sig)
	}
	var busy *dlock.BusyError
	switch {
	case errors.As(err, &busy), errors.Is(err, dlock.ErrBusy):
		return exitBusy
	case err != nil:
		return dlockError(c, err, lock, stderr)
	}
	fmt.Fprintf(report, "held %d\n", l.Fence())
	line, _ := bufio.NewReader(goOn).ReadString('\n')
	goOn.Close()
	if line != "go\n" {
		l.Unlock()
		return 0
	}
	// Held: while the caller's open file description holds the kernel's
	// lock (whoever shares it: children that inherited the descriptor
	// too), as flock's lock lasts. A probe, a lock of the other kind on
	// a descriptor of our own, waits in the kernel until that lock is
	// gone (closed everywhere, unlocked, the caller dead). Where no probe
	// can be made, the caller's descriptor is looked at every 50ms while
	// the caller lives. First, now: flock -n 7 7>FILE locks a descriptor
	// that is gone once flock exits.
	var tickC <-chan time.Time
	var probeFree <-chan struct{}
	switch {
	case fd < 0: // -F: the command's process
	case !fdStillLocked(watch, fd, dev, ino, c.fcntl):
		l.Unlock()
		fmt.Fprintln(report, "released") // after: flock returns once it is
		return 0
	default:
		if probeFree = probeLock(watch, fd, dev, ino, c.fcntl, c.shared); probeFree == nil {
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			tickC = tick.C
		} else {
			watched = nil // the caller's death shows in the probe
		}
	}
	fmt.Fprintln(report, "watching")
	report.Close()
loop:
	for {
		select {
		case <-watched:
			break loop
		case <-sigs:
			break loop
		case <-probeFree:
			break loop
		case <-tickC:
			if !fdStillLocked(watch, fd, dev, ino, c.fcntl) {
				break loop
			}
		case <-l.Lost():
			fmt.Fprintf(stderr, "%s: lost the dlock lock %s of descriptor %d: sending process %d SIGTERM\n", c.prog, lock, fd, watch)
			terminate(watch)
			break loop
		}
	}
	if err := l.Unlock(); err != nil && !errors.Is(err, dlock.ErrLost) {
		fmt.Fprintln(stderr, flockPrefix(c.prog, explain(err, lock)))
		return exitError
	}
	return 0
}

// flockNoFork is -F: the command replaces this process, which keeps the
// kernel lock through the descriptor it inherits; a holder keeps the
// dlock lock while the command's process lives.
func flockNoFork(c *flockConfig, stdout, stderr io.Writer) int {
	t := lockTimer{c: c, start: time.Now()}
	var f *os.File
	if c.file != "" {
		var code int
		if f, code = openLockFile(c, stderr); f == nil {
			return code
		}
	} else {
		if _, err := fdStat(c.fd); err != nil {
			fmt.Fprintf(stderr, "%s: %d: %s\n", c.prog, c.fd, strerror(err))
			return exDataErr
		}
		f = os.NewFile(uintptr(c.fd), strconv.Itoa(c.fd))
		if c.fd > 2 {
			syscall.CloseOnExec(c.fd) // not to the holder; the command gets it back
		}
	}
	st, err := fdStat(int(f.Fd()))
	if err != nil {
		fmt.Fprintf(stderr, "%s: %s: %s\n", c.prog, f.Name(), strerror(err))
		return exDataErr
	}
	k := &kernelLock{f: f, c: c}
	lock := os.Getenv("DLOCK_PATH")
	var h *holderConn
	fence := os.Getenv("DLOCK_FENCE")
	if !(c.useFd && heldByAncestor(c.fd, st, c.fcntl)) {
		var plain bool
		var mode os.FileMode
		lock, plain, mode, err = flockTarget(c, f)
		if err != nil {
			return dlockError(c, err, c.file, stderr)
		}
		typ := "x"
		if c.shared {
			typ = "s"
		}
		// The holder watches this process's descriptor, which the
		// command inherits: the lock lasts while any process has it.
		key := fdHolderKey(os.Getpid(), int(k.f.Fd()), st, c.fcntl)
		args := append(key, typ, lock, strconv.FormatBool(plain), strconv.FormatUint(uint64(mode), 8), strconv.FormatInt(int64(t.remaining()), 10), c.prog)
		var code int
		if h, code = startFlockHolder(append(args, c.origArgs...), stderr); h == nil {
			if code == exitBusy {
				return t.conflict(stderr)
			}
			return code
		}
		fence = h.fence
	}
	conflict, err := k.acquire(context.Background(), t.deadline(), c.nonblock)
	if conflict || err != nil {
		if h != nil {
			h.abandon()
		}
		if conflict {
			return t.conflict(stderr)
		}
		return k.fail(err, stderr)
	}
	t.took(stdout)
	if h != nil {
		h.start()
	}
	if c.verbose {
		fmt.Fprintf(stdout, "%s: executing %s\n", c.prog, c.argv[0])
	}
	prog, err := exec.LookPath(c.argv[0])
	if err == nil {
		os.Setenv("DLOCK_PATH", lock)
		if fence != "" {
			os.Setenv("DLOCK_FENCE", fence)
		}
		// The descriptor stays open across exec: the command holds the
		// kernel's lock.
		syscall.Syscall(syscall.SYS_FCNTL, k.f.Fd(), syscall.F_SETFD, 0)
		err = syscall.Exec(prog, c.argv, os.Environ())
	}
	fmt.Fprintf(stderr, "%s: failed to execute %s: %s\n", c.prog, c.argv[0], strerror(err))
	return exUnavailable
}
