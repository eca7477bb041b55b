package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/lockdir/dlock"
)

// parseSeconds reads a duration: a plain number is seconds (as flock(1)
// spells -w), and Go's units (500ms, 2m) are accepted too.
func parseSeconds(s string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil && !strings.ContainsAny(s, "xXpP") {
		if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > math.MaxInt64/float64(time.Second) {
			return 0, fmt.Errorf("%s: out of range", s)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("want seconds (30, 0.5) or a duration with a unit (500ms, 2m)")
	}
	return d, nil
}

// secondsFlag is a duration flag whose plain numbers are seconds.
type secondsFlag struct {
	d   *time.Duration
	set *bool
}

func (f secondsFlag) String() string {
	if f.d == nil {
		return ""
	}
	return f.d.String()
}

func (f secondsFlag) Set(s string) error {
	d, err := parseSeconds(s)
	if err != nil {
		return err
	}
	*f.d = d
	if f.set != nil {
		*f.set = true
	}
	return nil
}

// patienceFlag is PATIENCE: seconds or a duration, or "forever" (-1).
type patienceFlag struct{ d *time.Duration }

func (p patienceFlag) String() string {
	if p.d == nil || *p.d < 0 {
		return "forever"
	}
	return p.d.String()
}

func (p patienceFlag) Set(s string) error {
	if s == "forever" || s == "inf" {
		*p.d = -1
		return nil
	}
	d, err := parseSeconds(s)
	switch {
	case err != nil:
		return fmt.Errorf(`%v, or "forever"`, err)
	case d < 0:
		return errors.New(`must not be negative: 0 is one attempt, "forever" no limit`)
	}
	*p.d = d
	return nil
}

// modeFlag is the permission bits of a lock directory, in octal.
type modeFlag struct{ m *iofs.FileMode }

func (f modeFlag) String() string {
	if f.m == nil || *f.m == 0 {
		return ""
	}
	return fmt.Sprintf("%04o", uint32(*f.m))
}

func (f modeFlag) Set(s string) error {
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || n > 0o777 || n&0o300 != 0o300 {
		return errors.New("want octal permission bits with owner rwx, such as 0755, 0775 or 0777")
	}
	*f.m = iofs.FileMode(n)
	return nil
}

// lockFlags are the flags of every subcommand that takes a lock (run,
// hold): which kind of lock, how long to wait, how to judge staleness.
type lockFlags struct {
	timeout      time.Duration
	patience     time.Duration // < 0: forever
	noWait       bool
	poll         time.Duration
	conflictExit int
	shared       bool
	exclusive    bool
	slots        int
	mode         iofs.FileMode
	maxSkew      time.Duration
	wakeHints    string // "": DLOCK_WAKE_HINTS, else off
	quiet        bool
	verbose      bool
}

// setDefaults gives the flags their defaults.
func (lf *lockFlags) setDefaults() {
	lf.timeout, lf.patience, lf.poll, lf.conflictExit = dlock.DefaultTimeout, -1, dlock.DefaultPollInterval, exitBusy
	lf.maxSkew = dlock.DefaultMaxClockSkew
}

func (lf *lockFlags) register(fs *flag.FlagSet) {
	lf.setDefaults()
	fs.Var(secondsFlag{d: &lf.timeout}, "stale-after", "`TIMEOUT` in seconds (or 500ms, 2m): a lock not refreshed this long is stale and may be reclaimed by another (default 10)")
	// flock's -w, --timeout and --wait are the wait: dlock's stale time,
	// once called -timeout, is refused under that name, never taken for
	// a wait or the other way round.
	fs.Func("timeout", "refused: flock's --timeout is the wait (-w), dlock's stale time is -stale-after", func(s string) error {
		return fmt.Errorf("-timeout is ambiguous and no longer taken: give -stale-after %s for TIMEOUT (a lock not refreshed this long is stale), or -w %s to wait at most that long, as flock's --timeout", s, s)
	})
	pf := patienceFlag{d: &lf.patience}
	fs.Var(pf, "patience", "`PATIENCE` in seconds: how long to wait for a busy lock; 0 is one attempt, \"forever\" no limit (default forever)")
	fs.Var(pf, "w", "`SECONDS`: PATIENCE, as flock -w spells it")
	fs.Var(pf, "wait", "`SECONDS`: PATIENCE, as flock --wait spells it")
	fs.BoolVar(&lf.noWait, "n", false, "one attempt: PATIENCE 0, as flock -n")
	fs.Var(secondsFlag{d: &lf.poll}, "poll", "`seconds` between looks at a busy lock (bounds the hand-off delay on network filesystems; default 0.1)")
	fs.IntVar(&lf.conflictExit, "conflict-exit", exitBusy, "exit `status` when the lock stayed busy for all of PATIENCE (default 75)")
	fs.IntVar(&lf.conflictExit, "E", exitBusy, "`status`: -conflict-exit, as flock -E spells it")
	fs.BoolVar(&lf.shared, "s", false, "shared: a reader of a reader/writer lock (every user of PATH passes -s or -x)")
	fs.BoolVar(&lf.exclusive, "x", false, "exclusive: the writer of a reader/writer lock (every user of PATH passes -s or -x)")
	fs.Func("slots", "`N`: a semaphore: at most N holders at once, 1 to 4096 (every user of PATH passes the same N)", func(s string) error {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 4096 {
			return errors.New("want a number of slots from 1 to 4096")
		}
		lf.slots = n
		return nil
	})
	fs.Var(modeFlag{m: &lf.mode}, "mode", "permission `bits` of a lock directory dlock creates (default 0755; 0777 or 0775 for a lock shared between users)")
	fs.Var(secondsFlag{d: &lf.maxSkew}, "max-clock-skew", "`seconds` the clocks of the hosts sharing PATH may be apart (default 60): a new waiter trusts a holder's written time only once it is older than TIMEOUT plus this")
	fs.StringVar(&lf.wakeHints, "wake-hints", "", "`ADDR`: hear of a release from another host by a datagram at once, not at the next poll (then -poll can be long): \"auto\" (this host's first non-loopback address), IP, IP:PORT or \"off\"; every host sharing PATH passes it (default $DLOCK_WAKE_HINTS, else off)")
	fs.BoolVar(&lf.quiet, "q", false, "quiet: say nothing when the lock is busy")
	fs.BoolVar(&lf.verbose, "v", false, "verbose: log waiting, acquiring, releasing, signals and the job's processes to stderr")
}

// check validates the flags; it returns a usage message or "".
func (lf *lockFlags) check() string {
	if lf.noWait {
		lf.patience = 0
	}
	switch {
	case lf.timeout <= 0:
		return fmt.Sprintf("-stale-after %v: must be positive", lf.timeout)
	case lf.poll <= 0:
		return fmt.Sprintf("-poll %v: must be positive", lf.poll)
	case lf.maxSkew < 0:
		return fmt.Sprintf("-max-clock-skew %v: must not be negative", lf.maxSkew)
	case lf.conflictExit < 0 || lf.conflictExit > 255:
		return fmt.Sprintf("-conflict-exit %d: must be 0 to 255", lf.conflictExit)
	case lf.shared && lf.exclusive:
		return "-s and -x: give one (shared or exclusive)"
	case lf.slots < 0 || lf.slots > 4096:
		return fmt.Sprintf("-slots %d: must be 1 to 4096", lf.slots)
	case lf.slots > 0 && (lf.shared || lf.exclusive):
		return "-slots with -s or -x: a semaphore has no readers and writers; give one of them"
	}
	return ""
}

// hintsOption is -wake-hints (or DLOCK_WAKE_HINTS) as an option, nil
// when off.
func (lf *lockFlags) hintsOption() dlock.Option {
	a := lf.wakeHints
	if a == "" {
		a = os.Getenv("DLOCK_WAKE_HINTS")
	}
	switch a {
	case "", "off":
		return nil
	case "auto":
		a = ""
	}
	return dlock.WithWakeHints(a)
}

// hintsSent waits a second at most for l's wake-up hints (-wake-hints)
// to be sent: they are sent in the background, and a process that exits
// takes them along.
func hintsSent(l any) {
	if h, ok := l.(interface{ WaitHints(context.Context) error }); ok {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		h.WaitHints(ctx)
	}
}

// kind names the lock for messages.
func (lf *lockFlags) kind() string {
	switch {
	case lf.shared:
		return "read lock"
	case lf.exclusive:
		return "write lock"
	case lf.slots > 0:
		return fmt.Sprintf("semaphore (%d slots)", lf.slots)
	}
	return "lock"
}

// open makes the Locker the flags ask for at path.
func (lf *lockFlags) open(path string, extra ...dlock.Option) (dlock.Locker, string, error) {
	if backendScheme(path) != "" { // a URL: a server's lock, kept by a helper (backend.go)
		return lf.openBackend(path, 0)
	}
	opts := []dlock.Option{dlock.WithTimeout(lf.timeout), dlock.WithPatience(lf.patience), dlock.WithPollInterval(lf.poll), dlock.WithMaxClockSkew(lf.maxSkew)}
	if lf.mode != 0 {
		opts = append(opts, dlock.WithPermissions(lf.mode))
	} else if fi, err := os.Stat(path); err == nil && fi.IsDir() && fi.Mode().Perm()&0o700 == 0o700 {
		// A directory that is there (made by hand with mkdir -m 0777,
		// or by dlock with -mode): what dlock makes inside it, a
		// semaphore's slots, an RW lock's parts, gets its mode too.
		opts = append(opts, dlock.WithPermissions(fi.Mode().Perm()))
	}
	if o := lf.hintsOption(); o != nil {
		opts = append(opts, o)
	}
	opts = append(opts, extra...)
	switch {
	case lf.shared || lf.exclusive:
		rw, err := dlock.NewRWLock(path, opts...)
		if err != nil {
			return nil, "", err
		}
		if lf.shared {
			return rw.RLocker(), rw.Path(), nil
		}
		return rw, rw.Path(), nil
	case lf.slots > 0:
		s, err := dlock.NewSemaphore(path, lf.slots, opts...)
		if err != nil {
			return nil, "", err
		}
		return s, s.Path(), nil
	}
	l, err := dlock.New(path, opts...)
	if err != nil {
		return nil, "", err
	}
	return l, l.Path(), nil
}

// parseInterspersed parses args, accepting flags after the first operand
// (PATH) too, up to "--" or the next operand: "dlock run PATH -q -- cmd"
// works as "dlock run -q PATH -- cmd" does. It returns the operands.
func parseInterspersed(fs *flag.FlagSet, args []string) (rest []string, code int, stop bool) {
	if code, stop := parseFlags(fs, args); stop {
		return nil, code, true
	}
	rest = fs.Args()
	if len(rest) == 0 {
		return rest, 0, false
	}
	// What follows PATH: more flags, then "--" or the command.
	consumedDashes := false
	after := rest[1:]
	if len(after) > 0 && after[0] != "--" && strings.HasPrefix(after[0], "-") && after[0] != "-" {
		if code, stop := parseFlags(fs, after); stop {
			return nil, code, true
		}
		n := len(after) - len(fs.Args())
		consumedDashes = n > 0 && after[n-1] == "--"
		after = fs.Args()
	}
	if !consumedDashes && len(after) > 0 && after[0] == "--" {
		after = after[1:]
	}
	return append([]string{rest[0]}, after...), 0, false
}

// say writes one line for people; msg already names the lock.
func say(w io.Writer, format string, args ...any) {
	fmt.Fprintf(w, "dlock: "+format+"\n", args...)
}
