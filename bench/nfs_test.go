package main

import (
	"path/filepath"
	"testing"
)

// An answer's stamps are put on this host's clock: an acquisition's is
// its arrival here, a loss's and a log's the guest's moved by the offset.
func TestGuestPeerTranslate(t *testing.T) {
	gp := &guestPeer{g: &guestConn{offset: 1000}}
	for _, c := range []struct{ verb, line, want string }{
		{"lock", "ok 5 fence=7", "ok 42 fence=7"},
		{"try", "busy", "busy"},
		{"try", "ok 5", "ok 42"},
		{"lost", "ok told 5 lost lock reason=x", "ok told 1005 lost lock reason=x"},
		{"lost", "ok no", "ok no"},
		{"log", "ok 5 reclaimed | 6 lost lock", "ok 1005 reclaimed | 1006 lost lock"},
		{"unlock", "ok", "ok"},
		{"bench", "ok 123", "ok 123"},
	} {
		gp.verbs = append(gp.verbs, c.verb)
		if got := gp.translate(c.line, 42); got != c.want {
			t.Errorf("%s: %q became %q, want %q", c.verb, c.line, got, c.want)
		}
	}
	if len(gp.verbs) != 0 {
		t.Errorf("verbs left: %q", gp.verbs)
	}
}

func TestGuestPathAndHostView(t *testing.T) {
	g1, g2 := &guestConn{name: "g1"}, &guestConn{name: "g2"}
	activeNFS = &nfsRig{export: "/srv/export", guests: [2]*guestConn{g1, g2}}
	defer func() { activeNFS = nil }()
	p := filepath.Join("nfs:g2:/m2/dlockbench-alt-1", "late-3-dlock")
	g, gp, ok := guestPath(p)
	if !ok || g != g2 || gp != "/m2/dlockbench-alt-1/late-3-dlock" {
		t.Errorf("guestPath(%q) = %v %q %v", p, g, gp, ok)
	}
	if got := hostView(p); got != "/srv/export/dlockbench-alt-1/late-3-dlock" {
		t.Errorf("hostView(%q) = %q", p, got)
	}
	for _, local := range []string{"/dev/shm/x", "nfs:g3:/m1/x", "nfs:/m1/x"} {
		if _, _, ok := guestPath(local); ok {
			t.Errorf("guestPath(%q) says it is a guest's", local)
		}
		if got := hostView(local); got != local {
			t.Errorf("hostView(%q) = %q", local, got)
		}
	}
}

func TestRPCCounts(t *testing.T) {
	a := parseRPCs("vers=4.0 total=10 GETATTR=6 RENAME=4")
	b := parseRPCs("vers=4.0 total=17 GETATTR=9 RENAME=6 ACCESS=2")
	d := b.sub(a)
	if d.total != 7 || d.ops["GETATTR"] != 3 || d.ops["RENAME"] != 2 || d.ops["ACCESS"] != 2 || d.vers != "4.0" {
		t.Errorf("sub: %+v", d)
	}
	if got := d.opsString(); got != "GETATTR 3, ACCESS 2, RENAME 2" {
		t.Errorf("opsString: %q", got)
	}
}
