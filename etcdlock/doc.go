// Package etcdlock is the dlock lock kept in etcd instead of a lock
// directory: for processes on hosts that share no filesystem but can all
// reach one etcd cluster. A *Lock satisfies dlock.Locker, so code written
// against dlock.Locker works with either backend.
//
// # How it works
//
// Each acquisition is its own etcd lease of TIMEOUT seconds (WithTimeout,
// default 10 s), kept alive while the Lock holds or waits. A process
// queues by putting the key "KEY/LEASEID" (LEASEID in hex) attached to
// that lease; the value records the holder (pid, host, time). The waiter
// whose key has the lowest create revision holds the lock. Every other
// waiter watches only the key just before its own, so a release wakes one
// waiter, not all of them. This is the key layout and recipe of etcd's
// concurrency.Mutex, so the two exclude each other on the same KEY.
//
// Fence returns the create revision of the holder's key. etcd revisions
// rise with every write to the cluster, so fences rise strictly from one
// holder of KEY to the next.
//
// # What it guarantees
//
//   - While etcd serves linearizable requests (a majority of its members
//     are up and reach each other), at most one Lock's key is the oldest
//     under KEY, that is at most one Lock acquires at a time.
//   - A holder that dies, hangs or loses etcd releases the lock at the
//     latest when its lease expires, TIMEOUT after etcd last heard from it.
//     Lost is closed when the holder's lease ended (keep-alive refused or
//     unanswered for most of TIMEOUT: the Lock then stops renewing it) or
//     its key was deleted. Lost is meant to fire before etcd lets the next
//     holder in, since the Lock gives up a quarter of TIMEOUT (at most 2 s)
//     before its lease would run out by its own clock.
//   - Unlock deletes the key only if it is still this acquisition's (a
//     transaction comparing its create revision), so a late Unlock after
//     the lease was lost never frees a successor: it returns ErrLost.
//
// # What it does not guarantee
//
//   - A holder cut off from etcd is not stopped: it goes on running until
//     it notices Lost (or the context from Do is cancelled). A long
//     garbage-collection pause, a stopped process or a clock running slow
//     can delay that past the moment the next holder acquires. Where two
//     holders overlapping would do harm, pass Fence to the protected
//     resource and have it refuse writes with a fence lower than one it
//     has already seen.
//   - Timing rests on etcd's lease expiry and the holder's clock rate; it
//     assumes neither is far off. Leases are extended when etcd elects a
//     new leader, so a release by expiry can take longer than TIMEOUT.
//   - etcd being unreachable makes Lock wait (bounded by ctx, or by the
//     larger of PATIENCE and TIMEOUT); it is not a lock of its own.
//   - A Lock is not reentrant and holds one acquisition at a time (ErrHeld).
package etcdlock
