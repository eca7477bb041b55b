package main

import (
	"fmt"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// shared is a small file mapped MAP_SHARED by the parent and every worker
// of one trial: flags, the futex word that counts acquisitions, the
// releaser's timestamp and the exclusivity check.
type shared struct {
	mem []byte
}

// Offsets of the 8-byte slots in the shared page.
const (
	offGo       = 0  // uint32: workers may start
	offStop     = 8  // uint32: workers should exit at their next chance
	offCount    = 16 // uint32 futex word: acquisitions so far
	offOwner    = 24 // uint32: 1+index of the holder, 0 when free
	offViol     = 32 // uint32: acquisitions that found another owner
	offReady    = 40 // uint32: workers ready
	offHeld     = 48 // uint32: the "hold" worker holds the lock
	offRelease  = 56 // int64: CLOCK_MONOTONIC ns written just before Unlock
	offReleaser = 64 // uint32: 1+index of that releaser
	offT0       = 72 // int64: measuring window start (CLOCK_MONOTONIC ns)
	offT1       = 80 // int64: measuring window end
	shmSize     = 4096
)

func createShared(path string) (*shared, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := f.Truncate(shmSize); err != nil {
		return nil, err
	}
	return mapShared(f)
}

func openShared(path string) (*shared, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return mapShared(f)
}

func mapShared(f *os.File) (*shared, error) {
	mem, err := unix.Mmap(int(f.Fd()), 0, shmSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap %s: %w", f.Name(), err)
	}
	return &shared{mem: mem}, nil
}

func (s *shared) close() { unix.Munmap(s.mem) }

func (s *shared) u32(off int) *uint32 { return (*uint32)(unsafe.Pointer(&s.mem[off])) }
func (s *shared) i64(off int) *int64  { return (*int64)(unsafe.Pointer(&s.mem[off])) }

func (s *shared) load(off int) uint32     { return atomic.LoadUint32(s.u32(off)) }
func (s *shared) store(off int, v uint32) { atomic.StoreUint32(s.u32(off), v) }
func (s *shared) add(off int) uint32      { return atomic.AddUint32(s.u32(off), 1) }
func (s *shared) load64(off int) int64    { return atomic.LoadInt64(s.i64(off)) }
func (s *shared) store64(off int, v int64) {
	atomic.StoreInt64(s.i64(off), v)
}

// wake wakes every process waiting on the futex word at off. The mapping
// is shared, so the futex is not FUTEX_PRIVATE.
func (s *shared) wake(off int) {
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(s.u32(off))), futexWake, 1<<30, 0, 0, 0)
}

// waitChange blocks until the word at off differs from old, or d passed.
func (s *shared) waitChange(off int, old uint32, d time.Duration) {
	ts := unix.NsecToTimespec(int64(d))
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(s.u32(off))), futexWait, uintptr(old), uintptr(unsafe.Pointer(&ts)), 0, 0)
}

// mono reads CLOCK_MONOTONIC, which all processes of one host share.
func mono() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// sleepUntil sleeps until CLOCK_MONOTONIC reaches t.
func sleepUntil(t int64) {
	if d := t - mono(); d > 0 {
		time.Sleep(time.Duration(d))
	}
}

// cpuNow returns the user+system CPU time of this process and of its
// children that have exited (the dlock CLI of dlock-run), and how many
// context switches (voluntary and not) this process's threads made.
func cpuNow() (time.Duration, int64) {
	var ru, ch unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	unix.Getrusage(unix.RUSAGE_CHILDREN, &ch)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano() + ch.Utime.Nano() + ch.Stime.Nano()), ru.Nvcsw + ru.Nivcsw
}

// futex(2) operations (shared, not FUTEX_PRIVATE_FLAG).
const (
	futexWait = 0
	futexWake = 1
)
