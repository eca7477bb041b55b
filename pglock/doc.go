// Package pglock is the dlock lock kept in PostgreSQL instead of a lock
// directory: for processes on hosts that share no filesystem but all reach
// one database, typically the web workers of an application that must run
// its schema migration once. A *Lock satisfies dlock.Locker, so code
// written against dlock.Locker works with either backend, and `dlock run
// postgres://…` uses it.
//
// # How it works
//
// Each lock is a lease row in a table the package creates if missing
// (dlock_leases, WithTable), keyed by the lock's name:
//
//	CREATE SEQUENCE IF NOT EXISTS dlock_leases_fence AS bigint;
//	CREATE TABLE IF NOT EXISTS dlock_leases (
//		name       text PRIMARY KEY,
//		fence      bigint NOT NULL,      -- the holder's fencing token
//		token      text NOT NULL,        -- random, the acquisition's own
//		holder     jsonb NOT NULL,       -- pid, host, since, timeout_ms
//		timeout_ms bigint NOT NULL,      -- TIMEOUT
//		acquired   timestamptz NOT NULL, -- by the server's clock
//		refreshed  timestamptz NOT NULL,
//		expires    timestamptz NOT NULL, -- refreshed + TIMEOUT
//		beats      bigint NOT NULL DEFAULT 0);
//
// Every transition is one statement that is a compare-and-swap, with
// expiry judged by the server's clock_timestamp() alone:
//
//   - acquire: INSERT … ON CONFLICT (name) DO UPDATE … WHERE
//     expires <= clock_timestamp(): the row is written only if it is
//     missing or its lease has expired. PostgreSQL re-checks the WHERE on
//     the newest row version under the row's lock, so of two racing
//     statements one writes and the other sees the new lease. A takeover's
//     fence is GREATEST(nextval(sequence), old fence + 1), evaluated under
//     the row's lock.
//   - refresh: UPDATE … SET expires = clock_timestamp() + TIMEOUT WHERE
//     name = $1 AND fence = $2 AND token = $3 AND expires >
//     clock_timestamp(): only the acquisition's own, unexpired lease (a
//     lapsed lease is never revived).
//   - release: UPDATE … SET expires = clock_timestamp() WHERE name = $1
//     AND fence = $2 AND token = $3, and pg_notify in the same statement:
//     the row stays, free, with its fence; a late release never touches a
//     successor's row.
//
// No statement depends on the session: no advisory lock, no prepared
// statement kept, no transaction spanning calls. So a Lock works through
// PgBouncer (or any pooler) in transaction pooling, through a pgxpool.Pool
// or a *sql.DB, and survives its connections being killed or the server
// restarting (the row is in a table).
//
// Fences come from the sequence and rise from one holder of a lock to the
// next: a takeover takes GREATEST(nextval, the row's fence + 1) under the
// row's lock, and a release keeps the row (marked free) so that the next
// holder rises above it. (A release that deleted the row would let an
// INSERT whose nextval was drawn before a quicker holder's come in lower:
// the chaos test caught exactly that.) A row deleted by hand is made anew
// from the sequence, which only a racing insert drawn before the deletion
// could undercut; only dropping the sequence and the row (or the table)
// starts fences over. There is one row per lock name ever used.
//
// Waiters try the acquiring statement again every poll interval (100 ms,
// WithPollInterval), and no later than the holder's lease expires. Where
// the pool's connections are sessions of their own (the backend pid the
// server reports is the one the connection got at startup), the waiters
// of a process on one pool share one of its connections that LISTENs, and
// the release's NOTIFY wakes them (then they poll every second as a safety
// net); a pool of fewer than 3 connections keeps them all for attempts and
// refreshes, and its waiters poll. Behind a pooler the pids differ and
// waiters only poll: a LISTEN there would stay on a server connection that
// other clients then use.
//
// # The deadline rule
//
// As with the directory lock: each acquisition has a deadline on the
// holder's own monotonic clock, when its last successful refresh (or the
// acquiring statement) was issued, plus TIMEOUT, minus MARGIN (WithMargin,
// default TIMEOUT/5). The server sets expires from its clock when it runs
// the statement, which is after it was issued, so no one else can acquire
// before the deadline plus MARGIN, however long the statement was delayed
// in the network, a paused pooler or the server. At the deadline Lost is
// closed and Do's context cancelled by a timer, even if the server never
// answers; Unlock returns by the deadline at the latest (ErrLost once it
// has passed).
//
// # What it does not guarantee
//
//   - The server's clock must not jump forward (an NTP step on the database
//     host) by more than MARGIN: leases would expire early. Holders'
//     clocks need only run at the right rate; their settings never matter.
//   - A holder is not stopped: a process paused (SIGSTOP, a long GC, a VM
//     migration) past its deadline learns of the loss only when it runs
//     again. Pass Fence to what the lock guards and refuse writes with a
//     lower fence: UPDATE t SET …, fence = $1 WHERE … AND fence <= $1.
//   - With the database unreachable nobody can acquire; it is not a lock
//     of its own. Locks are only as durable as the table (fsync etc.).
//   - A Lock is not reentrant and holds one acquisition at a time (ErrHeld).
package pglock
