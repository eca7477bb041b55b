package lockdir

import (
	"strings"
	"testing"
	"time"
)

func TestEntryNameRoundTrip(t *testing.T) {
	since := time.Unix(0, 1_700_000_000_123_456_789)
	id := Identity{PID: 4242, Start: 99, HostID: "1f", Host: strings.Repeat("h", MaxHostLen)}
	name := FormatHeld(1<<64-1, NewToken(), 1<<64-1, since, since.Add(time.Hour), time.Duration(1<<63-1), id)
	if len(name) > 255 {
		t.Fatalf("longest held name is %d bytes", len(name))
	}
	e := Parse(name)
	h := e.Holder
	if h.Unknown || h.PID != 4242 || h.PStart != 99 || !h.Since.Equal(since) || h.Host != id.Host || e.Fence != 1<<64-1 {
		t.Fatalf("parse(format) = %+v", e)
	}
	if s := SanitizeHost("a b/c\\d.é"); s != "a_b_c_d.__" {
		t.Fatalf("sanitizeHost = %q", s)
	}
}

// FuzzParseEntry: any name parses without panic, and whatever parses
// formats back to the very same name (one name per state).
func FuzzParseEntry(f *testing.F) {
	now := time.Unix(0, 1_700_000_000_000_000_000)
	f.Add(FreeName(42))
	f.Add(QueuedFreeName(42))
	f.Add("free.42.q.q")
	f.Add(FormatHeld(43, NewToken(), 2, now, now, time.Second, Identity{PID: 7, Start: 8, HostID: "ab", Host: "web-1.example.com"}))
	f.Add("held.1.2.3")
	f.Add("free.-1")
	f.Add("held." + strings.Repeat(".", 300))
	f.Fuzz(func(t *testing.T, name string) {
		e := Parse(name)
		switch {
		case e.Free:
			again := FreeName(e.Fence)
			if e.Queued {
				again = QueuedFreeName(e.Fence)
			}
			if again != name {
				t.Fatalf("free %q re-formats as %q", name, again)
			}
		case !e.Holder.Unknown:
			h := e.Holder
			again := FormatHeld(h.Fence, h.Token, h.Sequence, h.Since, h.Beat, h.Timeout,
				Identity{PID: h.PID, Start: h.PStart, HostID: h.HostID, Host: h.Host})
			if again != name {
				t.Fatalf("held %q re-formats as %q", name, again)
			}
		default:
			if e.Holder.Entry != name {
				t.Fatalf("unknown holder lost its entry name")
			}
		}
	})
}

// A free entry handed to the queue is free, of its fence, and says so;
// anything after the fence but ".q" is an unknown holder, as before.
func TestQueuedFreeName(t *testing.T) {
	e := Parse(QueuedFreeName(42))
	if !e.Free || !e.Queued || e.Fence != 42 || e.Name != "free.42.q" {
		t.Fatalf("Parse(%q) = %+v", QueuedFreeName(42), e)
	}
	if e := Parse(FreeName(42)); !e.Free || e.Queued {
		t.Fatalf("Parse(free.42) = %+v", e)
	}
	for _, n := range []string{"free.42.", "free.42.qq", "free.q", "free.042.q"} {
		if e := Parse(n); e.Free || !e.Holder.Unknown {
			t.Fatalf("Parse(%q) = %+v, want an unknown holder", n, e)
		}
	}
}
