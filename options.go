package dlock

import (
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"github.com/benbjohnson/clock"
)

// Defaults for the options.
const (
	DefaultTimeout      = 10 * time.Second       // TIMEOUT, as in lockbydir
	DefaultPollInterval = 100 * time.Millisecond // a waiter's fallback poll
	DefaultPermissions  = fs.FileMode(0o755)     // of the lock directory
	// DefaultMaxClockSkew bounds how far apart the clocks of two hosts
	// sharing a lock may be (see WithMaxClockSkew).
	DefaultMaxClockSkew = time.Minute
)

type config struct {
	timeout  time.Duration
	margin   time.Duration // the holder declares loss this long before a waiter may reclaim
	maxSkew  time.Duration // how far another host's clock may be off ours
	patience time.Duration // < 0: no limit
	poll     time.Duration
	refresh  time.Duration
	perm     fs.FileMode
	clock    clock.Clock
	logger   *slog.Logger
	noWatch  bool   // poll only
	dir      string // for Named
	readers  int    // for RWLock
	// Wake-up hints (hints.go): on, the address to announce, and the
	// wake-ups a wait takes from datagrams a second.
	hints    bool
	hintAddr string
	hintRate int
}

// An Option configures a Lock.
type Option func(*config)

// WithTimeout sets TIMEOUT: a held lock not refreshed for d is stale and
// may be reclaimed. The default is 10s. The holder's TIMEOUT is recorded
// in the lock, and waiters judge staleness by it, not by their own. Keep
// it well above a network filesystem's attribute-cache lifetime and above
// the longest pause you expect a holder to survive.
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithPatience sets PATIENCE: how long Lock waits before it gives up with
// ErrBusy. 0 means a single attempt; a negative d, the default, means no
// limit (ctx bounds the wait).
func WithPatience(d time.Duration) Option { return func(c *config) { c.patience = d } }

// WithPollInterval sets how often a waiter looks at the lock when no
// filesystem event woke it, jittered to 3/4 to 1 of d. The default, 100ms,
// bounds the hand-off latency on network filesystems, where a watch sees
// nothing. On a local filesystem that is watched, a release wakes the next
// waiter at once and waiters poll only every 30 intervals, as a safety net.
func WithPollInterval(d time.Duration) Option { return func(c *config) { c.poll = d } }

// WithWatch turns the watch of waiters on (the default) or off. Off, a
// waiter polls at the poll interval and no more: use it where watches see
// nothing anyway (a network filesystem written by other hosts). A process
// uses one inotify instance (fsnotify watcher elsewhere) for all its
// waits, made at its first wait and kept; if none can be made (128 per
// user by default on Linux), its waiters poll.
func WithWatch(on bool) Option { return func(c *config) { c.noWatch = !on } }

// WithRefresh sets the heartbeat period while the lock is held. The
// default is TIMEOUT/3; it must be shorter than TIMEOUT.
func WithRefresh(d time.Duration) Option { return func(c *config) { c.refresh = d } }

// WithMargin sets MARGIN: how long before any waiter may reclaim the lock
// its holder gives it up. Each acquisition has a deadline on the holder's
// own clock: when its last successful refresh (or the acquiring rename) was
// issued, plus TIMEOUT, minus MARGIN. At the deadline Lost is closed and
// Do's context cancelled, whatever the filesystem is doing, so the work has
// MARGIN to stop before a successor can start. MARGIN covers the rates of
// two hosts' clocks drifting apart (parts per million) and the holder's
// reaction; give it what your work needs to stop. The default is TIMEOUT/5;
// REFRESH + MARGIN must be shorter than TIMEOUT.
func WithMargin(d time.Duration) Option { return func(c *config) { c.margin = d } }

// WithMaxClockSkew sets how far the wall clocks of the hosts sharing a lock
// may be apart (default DefaultMaxClockSkew, a minute: NTP keeps hosts
// within milliseconds, and an unsynchronised clock drifts seconds a day).
// Clocks never decide whether a live holder may be reclaimed: a waiter
// reclaims a holder it has seen unchanged for the holder's TIMEOUT on its
// own clock. The skew bound lets a waiter that just arrived (a cron job
// with PATIENCE 0) reclaim a long-dead lock at once, trusting the time the
// holder wrote only once it is older than TIMEOUT plus this bound. A host
// whose clock is off by more than the bound can have a live lock reclaimed
// by a newcomer; a waiter that notices a holder's clock far off its own
// logs it.
func WithMaxClockSkew(d time.Duration) Option { return func(c *config) { c.maxSkew = d } }

// WithClock sets the clock for every timer and timestamp the Lock uses.
// Tests pass clock.NewMock() and advance time by hand.
func WithClock(c clock.Clock) Option { return func(cf *config) { cf.clock = c } }

// WithLogger logs acquisitions and releases (Info), and reclaims, failed
// refreshes and losses (Warn). The default logs nothing.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithPermissions sets the permission bits of a lock directory that this
// Lock creates (default 0755, not reduced by the umask). Every holder needs
// write permission on it: use 0777 for a lock that any user takes, or 0770
// for one that the members of a group take, in a directory of that group
// with the setgid bit (so that the lock directory gets the group). Do not
// set the sticky bit: the state entry is one directory that changes hands,
// and in a sticky directory only its creator could rename it.
func WithPermissions(perm fs.FileMode) Option {
	return func(c *config) { c.perm = perm & fs.ModePerm }
}

// What an option may configure besides a Lock, for newConfig.
const (
	allowDir     = 1 << iota // WithDir: Named, SingleInstance
	allowReaders             // WithMaxReaders: NewRWLock
)

// newConfig applies opts to the defaults and checks them, for a kind of
// lock at path; allow says which of the options that are not a Lock's
// the kind takes.
func newConfig(kind, path string, opts []Option, allow int) (config, error) {
	cfg := config{
		timeout:  DefaultTimeout,
		patience: -1,
		poll:     DefaultPollInterval,
		perm:     DefaultPermissions,
		clock:    clock.New(),
		margin:   -1,
		maxSkew:  DefaultMaxClockSkew,
	}
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	if cfg.refresh == 0 {
		cfg.refresh = cfg.timeout / 3
	}
	if cfg.margin < 0 {
		cfg.margin = min(cfg.timeout/5, (cfg.timeout-cfg.refresh)/2)
	}
	return cfg, cfg.check(kind, path, allow)
}

// WithDir sets the directory in which Named, and the single-instance
// helpers, keep their locks. It must exist. Point it at a shared mount to
// make named locks span hosts.
func WithDir(dir string) Option { return func(c *config) { c.dir = dir } }

// WithMaxReaders sets how many readers an RWLock lets in at once (default
// 32). A writer takes a lock per reader slot, so larger values make
// writing dearer. Every user of one RWLock must pass the same value.
func WithMaxReaders(n int) Option { return func(c *config) { c.readers = n } }

// check refuses options that make no lock: of the given kind at path,
// which takes the options allow names besides a Lock's.
func (cfg config) check(kind, path string, allow int) error {
	switch {
	case path == "":
		return fmt.Errorf("dlock: empty %s path", kind)
	case cfg.timeout <= 0:
		return fmt.Errorf("dlock: TIMEOUT %v for %s must be positive", cfg.timeout, path)
	case cfg.poll <= 0:
		return fmt.Errorf("dlock: poll interval %v for %s must be positive", cfg.poll, path)
	case cfg.refresh <= 0 || cfg.refresh >= cfg.timeout:
		return fmt.Errorf("dlock: refresh %v for %s must be positive and shorter than TIMEOUT %v", cfg.refresh, path, cfg.timeout)
	case cfg.margin <= 0 || cfg.refresh+cfg.margin >= cfg.timeout:
		return fmt.Errorf("dlock: margin %v for %s must be positive, and with refresh %v shorter than TIMEOUT %v", cfg.margin, path, cfg.refresh, cfg.timeout)
	case cfg.maxSkew < 0:
		return fmt.Errorf("dlock: maximum clock skew %v for %s must not be negative", cfg.maxSkew, path)
	case cfg.hintRate < 0:
		return fmt.Errorf("dlock: wake hint rate %d for %s must not be negative", cfg.hintRate, path)
	case cfg.clock == nil:
		return fmt.Errorf("dlock: nil clock for %s", path)
	case cfg.dir != "" && allow&allowDir == 0:
		return fmt.Errorf("dlock: WithDir(%q) is for dlock.Named and dlock.SingleInstance, not for the %s %s (give the directory in the path)", cfg.dir, kind, path)
	case cfg.readers != 0 && allow&allowReaders == 0:
		return fmt.Errorf("dlock: WithMaxReaders(%d) is for dlock.NewRWLock, not for the %s %s", cfg.readers, kind, path)
	}
	return nil
}
