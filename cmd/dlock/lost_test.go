package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/lockdir/dlock"
)

// dlock run never starts COMMAND for a lock already lost: an acquisition
// whose deadline passed before the job could start (in the field, a rename
// an NFS server's grace period held for 6.6 s; here its directory removed) runs nothing, and run exits
// 76 (the caller, runCmd's supervisor, says so).
func TestNoJobStartsForALostLock(t *testing.T) {
	dir := t.TempDir()
	clk := clock.NewMock()
	l, err := dlock.New(filepath.Join(dir, "lock"), dlock.WithClock(clk), dlock.WithTimeout(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Lost before the job starts: here the lock directory is removed, and
	// the next refresh finds its entry gone.
	if err := os.RemoveAll(filepath.Join(dir, "lock")); err != nil {
		t.Fatal(err)
	}
	for lost := false; !lost; {
		clk.Add(100 * time.Millisecond)
		select {
		case <-l.Lost():
			lost = true
		case <-time.After(10 * time.Millisecond): // the heartbeat runs in its own goroutine
		}
	}
	marker := filepath.Join(dir, "ran")
	j, err := startHeld(l.Lost(), exec.Command("touch", marker), &runConfig{})
	if !errors.Is(err, errLostFirst) || j != nil {
		t.Fatalf("startHeld on a lost lock = %v, %v; want errLostFirst and no job", j, err)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("COMMAND ran for a lost lock (stat %s: %v)", marker, err)
	}
}
