package dlock

// When a holder is stale, as one Lock can tell: how long it has seen the
// same entry, the time the holder wrote, whether the holder's process is
// gone; and telling a holder whose clock is far off ours.

import (
	"math"
	"time"

	"github.com/lockdir/dlock/internal/lockdir"
	"github.com/lockdir/dlock/internal/proc"
)

// staleAt returns when the entry e becomes reclaimable by this Lock, and
// why. A holder is stale once it has not refreshed for its own TIMEOUT
// (recorded in the entry, so a waiter with a shorter TIMEOUT cannot steal
// early), as this Lock can tell:
//   - by how long this Lock has seen the very same entry unchanged on its
//     own clock. The entry was made by a rename the holder issued no
//     later than that, so this never ends before the holder's deadline
//     (deadline.go), whatever the clocks say;
//   - by the refresh time the holder wrote with its clock, once it is
//     older than TIMEOUT plus the clock-skew bound (WithMaxClockSkew), so
//     that a newcomer can judge a long-dead lock at once. A holder whose
//     clock is behind ours by less than the bound is never reclaimed by
//     this early.
//
// A holder on this host whose process is gone is stale at once. For an
// unknown state (e.Holder.Unknown: no entry, two, or one that does not
// parse) only the observation counts, with this Lock's TIMEOUT.
//
// now is when the attempt began, seenAt when the listing that showed e
// ended. Called with l.op held.
func (l *Lock) staleAt(now, seenAt time.Time, e entry) (time.Time, string) {
	l.observe(seenAt, e)
	timeout := l.cfg.timeout
	if !e.holder.Unknown {
		timeout = e.holder.Timeout
	}
	// Remaining durations, each from a difference of times of one kind:
	// the real clock's monotonic reading for what we saw, wall time for
	// the holder's record (which has no monotonic reading to compare).
	left := timeout - now.Sub(l.seenSince)
	why := "unchanged for its TIMEOUT, by our clock"
	if !e.holder.Unknown {
		if byBeat := trustAfter(timeout, l.cfg.maxSkew) - now.Sub(e.holder.Beat); byBeat < left {
			left, why = byBeat, "not refreshed for its TIMEOUT plus the clock-skew bound, by its clock"
		}
		if left > 0 && l.holderDead(now, e) {
			return now, "holder process is gone"
		}
	}
	return now.Add(left), why
}

// observe records that a look ended at seenAt showed e: the observation
// of e goes on if it was the entry seen last, or starts now. Called with
// l.op held.
func (l *Lock) observe(seenAt time.Time, e entry) {
	key := e.name
	if key == "" {
		key = "?" + e.holder.Entry // a picture of the directory
	}
	// A clock that went back restarts the observation: "seen unchanged
	// for TIMEOUT" must be TIMEOUT of this clock going forward.
	if !l.seen || l.seenName != key || seenAt.Before(l.seenSince) {
		if !e.holder.Unknown {
			var before time.Time // a look that did not show e yet
			if l.seen && l.seenName != key {
				before = l.seenLast
			}
			l.checkSkew(e.holder, before, seenAt)
		}
		l.seen, l.seenName, l.seenSince = true, key, seenAt
		l.seenHeld = entry{}
		if !e.holder.Unknown && !e.free {
			l.seenHeld = e
		}
	}
	// A look that may have been answered from a cache says nothing of
	// when the entry was not there yet (checkSkew's before). (Unknown
	// until the first busy attempt has asked: see checkLocal.)
	l.seenLast = seenAt
	if l.caching.MayCache() {
		l.seenLast = time.Time{}
	}
}

// trustAfter is how old a holder's written refresh time must be before a
// newcomer may trust it: its TIMEOUT plus the clock-skew bound, saturated
// (a record may carry any TIMEOUT up to the largest duration, and the sum
// must not wrap round to a negative age that reclaims a live holder).
func trustAfter(timeout, maxSkew time.Duration) time.Duration {
	if timeout > math.MaxInt64-maxSkew {
		return math.MaxInt64
	}
	return timeout + maxSkew
}

// checkSkew logs, once per holder, a holder whose clock is far off ours as
// far as a waiter can tell: the refresh time it wrote is later than when
// we saw its entry, or earlier than a look of ours (before) that did not
// show the entry yet. Called with l.op held.
//
// Ahead is proof: no entry is seen before its rename was issued. Behind is
// not, once: a rename that took long to land (a server's grace period, a
// holder paused between reading its clock and renaming) shows an entry
// later than its time too. So behind is told only when the holder's
// entries came late skewRepeat times in a row; and never from a look
// that may have come from a cache (staleAt leaves before zero then).
func (l *Lock) checkSkew(h Holder, before, seenAt time.Time) {
	if l.cfg.logger == nil || l.skewTold == h.Token {
		return
	}
	tol := min(time.Second, l.cfg.maxSkew/2)
	dir, off := "ahead of", h.Beat.Sub(seenAt)
	if off <= tol {
		if before.IsZero() {
			return
		}
		dir, off = "behind", before.Sub(h.Beat)
		if l.behindTok != h.Token {
			l.behindTok, l.behindN = h.Token, 0
		}
		if off <= tol {
			l.behindN = 0
			return
		}
		if l.behindN++; l.behindN < skewRepeat {
			return
		}
	}
	l.skewTold = h.Token
	l.logWarn("the holder's clock is far off this host's", "holder", h.String(), "its clock is at least "+off.Round(time.Millisecond).String(), dir+" ours",
		"max clock skew", l.cfg.maxSkew)
}

// skewRepeat is how many of a holder's entries in a row must come later
// than their time says before a waiter tells that its clock is behind.
const skewRepeat = 3

// holderDead is provablyDead for the entry e, asked again for the same
// holder process at most once per poll interval: a woken waiter need not
// read /proc (tens of µs) on every event, nor for every new entry of a
// holder it found alive a moment ago. The answer only decides when a
// reclaim is tried (invariant 3).
func (l *Lock) holderDead(now time.Time, e entry) bool {
	k := aliveKey{e.holder.PID, e.holder.pstart, e.holder.HostID}
	if k.host == lockdir.Self().HostID && proc.KnownDead(k.pid, k.pstart) {
		return true
	}
	for _, a := range l.alive {
		if a.key == k && now.Sub(a.at) < l.cfg.poll && !now.Before(a.at) {
			return false
		}
	}
	if provablyDead(e.holder) {
		return true
	}
	oldest := 0
	for i, a := range l.alive {
		if a.key == k {
			oldest = i
			break
		}
		if a.at.Before(l.alive[oldest].at) {
			oldest = i
		}
	}
	l.alive[oldest] = aliveAt{k, now}
	return false
}
