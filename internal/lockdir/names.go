package lockdir

import (
	"hash/fnv"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lockdir/dlock/internal/proc"
)

// The state of a lock is the name of the single entry in its directory.
// The holder's owner record lives in that name, so it changes atomically
// with every transition and costs no extra syscall:
//
//	free.E
//	free.E.q
//	held.E.TOKEN.SEQ.SINCE.BEAT.TIMEOUT.PID.PSTART.HOSTID.HOST
//
//	free.E.q unlocked, and handed to the waiters' queue: its holder saw
//	         tickets when it released (queue.go); a waiter in line takes
//	         it, a newcomer queues first. Written, like free.E, only by
//	         the holder of fence E, which releases once: to one of the two.
//	E        fence, decimal: rises by one on every acquisition
//	TOKEN    32 lowercase hex digits, random per acquisition
//	SEQ      heartbeat count of this acquisition, decimal
//	SINCE    acquisition time, Unix nanoseconds by the holder's clock
//	BEAT     last refresh time, Unix nanoseconds by the holder's clock
//	TIMEOUT  the holder's TIMEOUT in nanoseconds
//	PID      holder process id
//	PSTART   holder process start time (OS-specific units; 0 unknown)
//	HOSTID   16 hex digits naming boot and pid namespace (0 unknown)
//	HOST     host name, sanitised; last, so it may contain dots
//
// A new format gets a new prefix, never a change to these fields.
const (
	freePrefix = "free."
	heldPrefix = "held."
	// queuedSuffix ends a free entry that hands the lock to the queue.
	queuedSuffix = ".q"

	// MaxHostLen keeps the longest possible held name under 255 bytes.
	MaxHostLen = 48
	// maxEntryLen bounds what the parser looks at.
	maxEntryLen = 255
)

// Entry is a parsed state entry.
type Entry struct {
	Name   string
	Free   bool
	Queued bool   // a free entry handed to the waiters' queue (free.E.q)
	Fence  uint64 // for free and held entries that parsed
	Holder Holder // for held entries (Unknown if it did not parse)
}

// Holder is the owner record a held entry's name carries: the fields of
// dlock's Holder, and the process start time it checks liveness by.
type Holder struct {
	PID      int
	Host     string
	HostID   string
	Since    time.Time
	Beat     time.Time
	Timeout  time.Duration
	Fence    uint64
	Token    string
	Entry    string // the raw state entry name
	Unknown  bool   // the entry could not be parsed: nothing above is known
	Sequence uint64
	PStart   uint64 // process start time (OS-specific units; 0 unknown)
}

// FreeName is the free entry left by the holder of the given fence.
func FreeName(fence uint64) string {
	return freePrefix + strconv.FormatUint(fence, 10)
}

// QueuedFreeName is the free entry left by the holder of the given fence
// when it saw waiters queued: the lock is theirs first (see queue.go).
func QueuedFreeName(fence uint64) string {
	return freePrefix + strconv.FormatUint(fence, 10) + queuedSuffix
}

// HeldName formats the state entry of a held lock for this process.
func HeldName(fence uint64, token string, seq uint64, since, beat time.Time, timeout time.Duration) string {
	return FormatHeld(fence, token, seq, since, beat, timeout, Self())
}

// FormatHeld is HeldName for the process id.
func FormatHeld(fence uint64, token string, seq uint64, since, beat time.Time, timeout time.Duration, id Identity) string {
	b := make([]byte, 0, 200)
	b = append(b, heldPrefix...)
	b = strconv.AppendUint(b, fence, 10)
	b = append(b, '.')
	b = append(b, token...)
	b = append(b, '.')
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, since.UnixNano(), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, beat.UnixNano(), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(timeout), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(id.PID), 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, id.Start, 10)
	b = append(b, '.')
	b = append(b, id.HostID...)
	b = append(b, '.')
	b = append(b, id.Host...)
	return string(b)
}

// IsStateName reports whether name is a state entry (parsable or not).
func IsStateName(name string) bool {
	return strings.HasPrefix(name, freePrefix) || strings.HasPrefix(name, heldPrefix)
}

// Parse parses a state entry name. It never fails: a name it cannot
// read is a held entry of an unknown holder.
func Parse(name string) Entry {
	e := Entry{Name: name}
	if len(name) <= maxEntryLen {
		if rest, ok := strings.CutPrefix(name, freePrefix); ok {
			num, queued := strings.CutSuffix(rest, queuedSuffix)
			if fence, ok := parseDecimal(num); ok {
				e.Free, e.Queued, e.Fence = true, queued, fence
				return e
			}
		} else if rest, ok := strings.CutPrefix(name, heldPrefix); ok {
			if h, ok := parseHeld(rest); ok {
				h.Entry = name
				e.Fence, e.Holder = h.Fence, h
				return e
			}
		}
	}
	e.Holder = Holder{Unknown: true, Entry: name}
	return e
}

func parseHeld(s string) (h Holder, ok bool) {
	f := strings.SplitN(s, ".", 10)
	if len(f) != 10 {
		return h, false
	}
	var since, beat, timeout, pid int64
	var ok1, ok2, ok3, ok4, ok5, ok6, ok7 bool
	h.Fence, ok1 = parseDecimal(f[0])
	h.Token = f[1]
	h.Sequence, ok2 = parseDecimal(f[2])
	since, ok3 = parseSigned(f[3])
	beat, ok4 = parseSigned(f[4])
	timeout, ok5 = parseSigned(f[5])
	pid, ok6 = parseSigned(f[6])
	h.PStart, ok7 = parseDecimal(f[7])
	h.HostID, h.Host = f[8], f[9]
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7) ||
		!IsHex(h.Token, 32, 32) || !IsHex(h.HostID, 1, 16) || !validHost(h.Host) ||
		timeout <= 0 || pid <= 0 || pid > 1<<31-1 {
		return Holder{}, false
	}
	h.Since, h.Beat = time.Unix(0, since), time.Unix(0, beat)
	h.Timeout, h.PID = time.Duration(timeout), int(pid)
	return h, true
}

// parseDecimal accepts only canonical decimals (no sign, no leading zeros),
// so every value has exactly one name.
func parseDecimal(s string) (uint64, bool) {
	if s == "" || len(s) > 20 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseUint(s, 10, 64)
	return v, err == nil
}

func parseSigned(s string) (int64, bool) {
	neg := strings.HasPrefix(s, "-")
	u, ok := parseDecimal(strings.TrimPrefix(s, "-"))
	if !ok || (neg && u == 0) || u > 1<<63 || (!neg && u == 1<<63) {
		return 0, false
	}
	if neg {
		return -int64(u-1) - 1, true
	}
	return int64(u), true
}

// IsHex reports whether s is min to max lowercase hex digits.
func IsHex(s string, min, max int) bool {
	if len(s) < min || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func validHost(s string) bool {
	if s == "" || len(s) > MaxHostLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !hostChar(s[i]) {
			return false
		}
	}
	return true
}

func hostChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
}

// SanitizeHost makes a host name safe for an entry name on every OS.
func SanitizeHost(h string) string {
	b := []byte(h)
	for i := range b {
		if !hostChar(b[i]) {
			b[i] = '_'
		}
	}
	if len(b) > MaxHostLen {
		b = b[:MaxHostLen]
	}
	if len(b) == 0 {
		return "unknown"
	}
	return string(b)
}

// NewToken is a fresh random acquisition token, 32 lowercase hex digits.
func NewToken() string {
	const hex = "0123456789abcdef"
	var b [32]byte
	a, c := rand.Uint64(), rand.Uint64()
	for i := 0; i < 16; i++ {
		b[i] = hex[a>>(4*i)&15]
		b[16+i] = hex[c>>(4*i)&15]
	}
	return string(b[:])
}

// Identity is who this process is, as written into held entries.
type Identity struct {
	PID    int
	Start  uint64 // process start time, 0 if unknown
	HostID string // "0" if the host cannot be identified exactly
	Host   string
}

// Self is this process's Identity, found once.
var Self = sync.OnceValue(func() Identity {
	id := Identity{PID: os.Getpid(), HostID: "0"}
	id.Start, _, _ = proc.ProcessStart(id.PID)
	name, _ := os.Hostname()
	id.Host = SanitizeHost(name)
	if raw := proc.HostIdentity(); raw != "" {
		h := fnv.New64a()
		h.Write([]byte(name + "\x00" + raw))
		id.HostID = strconv.FormatUint(h.Sum64()|1, 16) // never "0"
	}
	return id
})
