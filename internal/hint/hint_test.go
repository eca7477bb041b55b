package hint

import (
	"net/netip"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/lockdir/dlock/internal/wine"
)

func TestDatagramRoundTrip(t *testing.T) {
	tok, ok := ParseToken("0123456789abcdef")
	if !ok {
		t.Fatal("token did not parse")
	}
	m := Msg{Token: tok, Fence: 1796134089386965400}
	b := Encode(m)
	if len(b) != Size {
		t.Fatalf("datagram of %d bytes, want %d", len(b), Size)
	}
	got, ok := Decode(b)
	if !ok || got != m {
		t.Fatalf("Decode(Encode(%v)) = %v, %v", m, got, ok)
	}
}

func TestDecodeRefusesWhatIsNotADatagram(t *testing.T) {
	good := Encode(Msg{Fence: 7})
	bad := map[string][]byte{
		"empty":     nil,
		"short":     good[:Size-1],
		"long":      append(append([]byte{}, good...), 0),
		"magic":     append([]byte("DLKX"), good[4:]...),
		"version 2": append(append([]byte("DLKH"), 2), good[5:]...),
	}
	for what, b := range bad {
		if _, ok := Decode(b); ok {
			t.Errorf("%s: decoded", what)
		}
	}
}

func TestParseTokenRefuses(t *testing.T) {
	for _, s := range []string{"", "0123456789abcde", "0123456789abcdef0", "0123456789ABCDEF", "0123456789abcdeg"} {
		if _, ok := ParseToken(s); ok {
			t.Errorf("%q parsed", s)
		}
	}
}

func TestAnnouncementNameRoundTrip(t *testing.T) {
	tok, _ := ParseToken("fedcba9876543210")
	at := time.Unix(1_800_000_000, 123)
	for _, a := range []string{"10.251.2.2:41234", "[fd00::2]:9", "[::ffff:10.0.0.1]:65535"} {
		addr := netip.MustParseAddrPort(a)
		name := AnnouncementName(at, tok, addr)
		gotAt, gotTok, gotAddr, ok := ParseAnnouncement(name)
		want := netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
		if !ok || !gotAt.Equal(at) || gotTok != tok || gotAddr != want {
			t.Errorf("%s: %q parsed as %v %v %v %v", a, name, gotAt, gotTok, gotAddr, ok)
		}
	}
}

func TestParseAnnouncementRefuses(t *testing.T) {
	for _, n := range []string{
		"",
		"queue",
		"00000000000000000001.0123456789abcdef.0afb0202a112.x", // four fields
		"0000000000000000001.0123456789abcdef.0afb0202a112",    // 19 digits
		"00000000000000000001.0123456789abcdeX.0afb0202a112",   // token
		"00000000000000000001.0123456789abcdef.0afb0202a1",     // 5 bytes
		"00000000000000000001.0123456789abcdef.0afb02020000",   // port 0
		"00000000000000000001.0123456789abcdef.00000000a112",   // 0.0.0.0
		"00000000000000000001.0123456789abcdef.e0000001a112",   // multicast
		// a ticket of the queue (TIME.TOKEN.PID.HOSTID) is not one
		"00000000000000000001.0123456789abcdef.12.0123456789abcdef",
	} {
		if _, _, _, ok := ParseAnnouncement(n); ok {
			t.Errorf("%q parsed", n)
		}
	}
}

func TestResolve(t *testing.T) {
	for spec, want := range map[string]string{
		"10.1.2.3:4000": "10.1.2.3:4000",
		"10.1.2.3":      "10.1.2.3:0",
		"[fd00::1]:5":   "[fd00::1]:5",
		"fd00::1":       "[fd00::1]:0",
	} {
		got, err := Resolve(spec)
		if err != nil || got.String() != want {
			t.Errorf("Resolve(%q) = %v, %v; want %s", spec, got, err, want)
		}
	}
	for _, spec := range []string{"0.0.0.0:1", "[::]:1", "example.com:1", "10.1.2.3:x", "10.1.2.3:70000", "224.0.0.1"} {
		if got, err := Resolve(spec); err == nil {
			t.Errorf("Resolve(%q) = %v, want an error", spec, got)
		}
	}
	for _, spec := range []string{"", ":4000"} {
		got, err := Resolve(spec)
		if err != nil || !got.Addr().IsValid() || got.Addr().IsUnspecified() {
			t.Errorf("Resolve(%q) = %v, %v; want this host's address", spec, got, err)
		}
	}
}

// listener is a listener on loopback for the tests. Where no UDP socket
// can be made (Wine 8: Go's Windows socket set-up asks WSAIoctl for what
// Wine does not do, error 10045) the test is skipped: there dlock waits
// without hints, and says so in its log.
func listener(t *testing.T) *Listener {
	t.Helper()
	l, err := Listen(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		if _, ok := wine.Version(); ok {
			t.Skipf("no UDP socket under Wine: %v", err)
		}
		t.Fatal(err)
	}
	if l.Addr().Port() == 0 {
		t.Fatal("the listener announces port 0")
	}
	return l
}

// signalled reports whether s's channel is signalled, taking the signal.
func signalled(s *Sub) bool {
	select {
	case <-s.C():
		return true
	default:
		return false
	}
}

func TestRateLimitDefersAndCoalesces(t *testing.T) {
	l := listener(t)
	mc := clock.NewMock()
	tok, _ := ParseToken("00000000000000a1")
	s := l.Subscribe(tok, mc, 4) // a wake-up every 250ms at most
	defer s.Close()
	m := Msg{Token: tok, Fence: 5}

	l.Deliver(m)
	if !signalled(s) {
		t.Fatal("the first datagram did not wake the wait")
	}
	// A flood within the gap: no wake-up now, one at its end.
	for range 1000 {
		l.Deliver(m)
	}
	if signalled(s) {
		t.Fatal("a datagram within the gap woke the wait at once")
	}
	mc.Add(249 * time.Millisecond)
	if signalled(s) {
		t.Fatal("woken before the gap's end")
	}
	mc.Add(time.Millisecond)
	if !signalled(s) {
		t.Fatal("the datagrams within the gap gave no wake-up at its end")
	}
	mc.Add(time.Second)
	if signalled(s) {
		t.Fatal("a flood gave more than one deferred wake-up")
	}
	// Over ten seconds of datagrams every 5ms: at most 4 a second.
	w0, _ := s.Counts()
	for range 2000 {
		l.Deliver(m)
		mc.Add(5 * time.Millisecond)
	}
	if w, _ := s.Counts(); w-w0 > 41 || w-w0 < 39 {
		t.Fatalf("%d wake-ups in 10s of a flood, want 40", w-w0)
	}
}

func TestLateAndForeignDatagramsAreIgnored(t *testing.T) {
	l := listener(t)
	mc := clock.NewMock()
	tok, _ := ParseToken("00000000000000a2")
	other, _ := ParseToken("00000000000000a3")
	s := l.Subscribe(tok, mc, 0)
	defer s.Close()
	s.Expect(9) // the holder seen has fence 9
	l.Deliver(Msg{Token: tok, Fence: 8})
	l.Deliver(Msg{Token: other, Fence: 9})
	if signalled(s) {
		t.Fatal("a late release, or another wait's, woke the wait")
	}
	if _, late := s.Counts(); late != 1 {
		t.Fatalf("%d late datagrams counted, want 1", late)
	}
	l.Deliver(Msg{Token: tok, Fence: 9})
	if !signalled(s) {
		t.Fatal("the release of the holder seen did not wake the wait")
	}
	s.Close()
	mc.Add(time.Second)
	l.Deliver(Msg{Token: tok, Fence: 10})
	if signalled(s) {
		t.Fatal("a closed subscription was woken")
	}
	var nilSub *Sub
	nilSub.Expect(1)
	nilSub.Close()
	if nilSub.C() != nil {
		t.Fatal("a nil Sub has a channel")
	}
}

// TestSendReachesTheListener sends real datagrams over loopback: one
// reaches its subscription, garbage and another token's do not.
func TestSendReachesTheListener(t *testing.T) {
	l := listener(t)
	tok, _ := ParseToken("00000000000000a4")
	s := l.Subscribe(tok, clock.New(), 0)
	defer s.Close()
	if again, err := Listen(netip.MustParseAddrPort("127.0.0.1:0")); err != nil || again != l {
		t.Fatalf("a second Listen on 127.0.0.1:0 made another listener (%v)", err)
	}
	other, _ := ParseToken("00000000000000a5")
	Send([]netip.AddrPort{l.Addr(), l.Addr()}, []Msg{{Token: other, Fence: 1}, {Token: tok, Fence: 1}})
	select {
	case <-s.C():
	case <-time.After(10 * time.Second):
		t.Fatal("no datagram arrived over loopback in 10s")
	}
	if w, _ := s.Counts(); w != 1 {
		t.Fatalf("%d wake-ups, want 1", w)
	}
	Send(nil, nil) // nothing to send: no socket
}
