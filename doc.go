// Package dlock provides cross-process locks that work where flock(2)
// does not: on network and shared filesystems (NFS, SMB, sshfs), between
// containers sharing a volume, and between hosts.
//
// A lock is a directory at a path you choose. Inside it a single empty
// entry, whose name is the lock's state, is renamed on every transition:
// acquire, refresh, release, reclaim. A rename succeeds only if its exact
// source name still exists, so every transition is an atomic
// compare-and-swap done by the filesystem, and two processes can never
// both hold the lock, however their calls interleave:
//
//	PATH/free.41                        unlocked
//	PATH/held.42.<token>.0.<times>...   held, fence 42
//
// While a Lock is held, a heartbeat refreshes it every REFRESH (default
// TIMEOUT/3). Each acquisition has a deadline on the holder's own clock:
// when its last successful refresh was issued, plus TIMEOUT, minus MARGIN
// (WithMargin). At the deadline the holder gives the lock up (Lost is
// closed, Do's context cancelled) whatever its filesystem is doing: a
// refresh stuck in a hung mount does not delay it. A waiter reclaims a
// holder only once it has seen its entry unchanged for the holder's
// TIMEOUT on its own clock, which is MARGIN after the holder's deadline
// at the earliest; a lock whose holder ran on the same host and whose
// process is gone is reclaimed at once. A holder whose lock was reclaimed
// or removed learns it at its next heartbeat or at Unlock (ErrLost): its
// late Unlock never frees its successor's lock.
//
// Waiters watch the directory (inotify on Linux, fsnotify elsewhere, one
// instance per process shared by all its waits) and also poll, because a
// watch sees nothing done by another client of a network filesystem.
//
// # Guarantees and residual risk
//
// No two holders ever hold the same lock at once, as far as the
// filesystem's rename of a name is atomic (it is on local filesystems,
// NFS, kernel SMB, sshfs and GlusterFS; some object-store FUSE mounts
// give no guarantee). A holder is told it lost the lock MARGIN before
// anyone else can take it, even when its filesystem hangs. A holder that
// is itself paused (stopped, swapped out, a laptop asleep) runs no timer:
// it keeps running until its timer or its next heartbeat tells it the lock
// was lost; meanwhile a successor may hold the lock. Only the resource can
// close that gap: pass Fence to it and have it refuse an older fence.
//
// Clocks decide only when a lock may be reclaimed, never whether two
// holders can coexist. A waiter that has watched a holder trusts only its
// own clock. A newcomer trusts the time a holder wrote only once it is
// older than TIMEOUT plus the clock-skew bound (WithMaxClockSkew, default
// a minute): a holder whose clock is behind by more than that can lose
// its lock to a newcomer early (and is told).
//
// # Platform notes
//
// Linux gives everything, including RENAME_NOREPLACE and process start
// times to tell a dead holder from a reused pid. macOS and Windows read
// process start times too; the BSDs check only that the pid exists. On
// other systems dead holders are reclaimed only after TIMEOUT.
package dlock
