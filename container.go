package dlock

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/lockdir/dlock/internal/fsys"
	"github.com/lockdir/dlock/internal/lockdir"
)

// container is the check, once per value, that a Semaphore's or an
// RWLock's directory is what it says (lockdir.Container), creating it,
// marker and all, if it is missing.
type container struct {
	mu      sync.Mutex // the check is I/O: not under the value's own mutex
	checked bool
}

// open checks the directory at path once: a container of the given kind
// (for errors) marked by marker.N, whose members are the names member
// accepts. Another process creating or removing it meanwhile is retried a
// few times. The filesystem check that passed for path counts for locks,
// the container's own locks (see Lock.vouch).
func (c *container) open(path, kind, marker string, n int, cfg config, member func(name string) bool, locks ...*Lock) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.checked {
		return nil
	}
	if err := fsys.Unsafe(path); err != nil {
		return err
	}
	safeAt := cfg.clock.Now()
	for range 3 {
		err := lockdir.Container(path, kind, marker+"."+strconv.Itoa(n), cfg.perm, cfg.clock.Now(), cfg.timeout, member)
		if err == nil {
			c.checked = true
			inMemory := fsys.InMemory(path)
			var walk fsys.Walk
			if len(locks) > 0 { // all in path: one answer for each
				walk = walkOf(locks[0].path, locks[0].testCaching)
			}
			for _, l := range locks {
				l.vouch(safeAt, inMemory, walk)
			}
			return nil
		}
		if !errors.Is(err, lockdir.ErrRetry) {
			return err
		}
	}
	return fmt.Errorf("dlock: %s %s keeps changing under us", kind, path)
}

// checkMarker refuses a container at dir marked KIND.M for M other than
// n (a missing or unreadable one is left to the first attempt).
func checkMarker(dir, what, kind string, n int) error {
	names, err := fsys.ReadNames(dir)
	if err != nil {
		return nil
	}
	for _, name := range names {
		if v, ok := strings.CutPrefix(name, kind+"."); ok && v != strconv.Itoa(n) {
			return fmt.Errorf("dlock: %s %s has %s %s, not %d: every user must open it with the same %s", what, dir, kind, v, n, kind)
		}
	}
	return nil
}
