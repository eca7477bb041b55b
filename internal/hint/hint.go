// Package hint is the wake-up hint of waiters on other hosts: a datagram
// that a releasing process sends to the waiters that announced an address,
// naming the release, so that they look at once instead of at their next
// poll. It is a hint only: a waiter woken by one makes one more attempt,
// and the rename of that attempt still decides; a datagram lost, late,
// forged or repeated costs a look at most (and at most PerSecond of them a
// second), never a wrong answer.
//
// The package owns the network side: the datagram's format (Encode,
// Decode), the address a waiter announces (Resolve, and the announcement's
// name, AnnouncementName, ParseAnnouncement), the process's one listener
// (Listen) with a subscription per wait (Sub, rate limited), and the
// sender (Send), which never waits for the network. Where announcements
// are kept in a lock directory is internal/lockdir's (wake.go); when to
// announce and when to send is the dlock package's.
package hint

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/benbjohnson/clock"
)

// A datagram is Size bytes:
//
//	"DLKH"   4 bytes, the magic
//	1        1 byte, the version
//	TOKEN    8 bytes: the announcement's token (its name's hex digits), so
//	         the lock and the wait it is for
//	FENCE    8 bytes big-endian: the fence E of the release (free.E)
//
// Anything else that arrives is dropped unread.
const (
	magic   = "DLKH"
	version = 1
	// Size is the length of a datagram.
	Size = len(magic) + 1 + 8 + 8
)

// Token names one wait's announcement, and so the lock it waits for.
type Token [8]byte

// ParseToken parses 16 lowercase hex digits.
func ParseToken(s string) (Token, bool) {
	var t Token
	if len(s) != 16 || strings.ToLower(s) != s {
		return t, false
	}
	_, err := hex.Decode(t[:], []byte(s))
	return t, err == nil
}

func (t Token) String() string { return hex.EncodeToString(t[:]) }

// Msg is what a datagram says: the release of fence Fence of the lock the
// wait announced by Token waits for.
type Msg struct {
	Token Token
	Fence uint64
}

// Encode is m's datagram.
func Encode(m Msg) []byte {
	b := make([]byte, 0, Size)
	b = append(b, magic...)
	b = append(b, version)
	b = append(b, m.Token[:]...)
	return binary.BigEndian.AppendUint64(b, m.Fence)
}

// Decode reads a datagram; false for anything that is not one.
func Decode(b []byte) (Msg, bool) {
	var m Msg
	if len(b) != Size || string(b[:4]) != magic || b[4] != version {
		return m, false
	}
	copy(m.Token[:], b[5:13])
	m.Fence = binary.BigEndian.Uint64(b[13:])
	return m, true
}

// An announcement is an empty directory named
//
//	TIME.TOKEN.ADDR
//
// TIME is the waiter's clock when it announced (or last renewed), in Unix
// nanoseconds and 20 digits; TOKEN 16 hex digits; ADDR the address the
// waiter listens on, hex-encoded: 4 or 16 bytes of IP, then 2 of port,
// big-endian.

// AnnouncementName is the name of the announcement of token at addr, made
// at t.
func AnnouncementName(t time.Time, token Token, addr netip.AddrPort) string {
	ip := addr.Addr().Unmap()
	b := ip.AsSlice()
	b = binary.BigEndian.AppendUint16(b, addr.Port())
	return fmt.Sprintf("%020d.%s.%s", max(t.UnixNano(), 0), token, hex.EncodeToString(b))
}

// ParseAnnouncement reads an announcement's name; false for anything
// else (which is left alone).
func ParseAnnouncement(name string) (at time.Time, token Token, addr netip.AddrPort, ok bool) {
	f := strings.Split(name, ".")
	if len(f) != 3 || len(f[0]) != 20 {
		return at, token, addr, false
	}
	ns, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return at, token, addr, false
	}
	if token, ok = ParseToken(f[1]); !ok {
		return at, token, addr, false
	}
	b, err := hex.DecodeString(f[2])
	if err != nil || len(b) != 6 && len(b) != 18 {
		return at, token, addr, false
	}
	ip, _ := netip.AddrFromSlice(b[:len(b)-2])
	port := binary.BigEndian.Uint16(b[len(b)-2:])
	if port == 0 || !ip.IsValid() || ip.IsUnspecified() || ip.IsMulticast() {
		return at, token, addr, false
	}
	return time.Unix(0, ns), token, netip.AddrPortFrom(ip, port), true
}

// Resolve turns what a user asked to listen on into the address to bind
// and announce: "IP:PORT", "IP" (any free port), ":PORT" or "" (this
// host's address, see HostAddr). A host name is not taken: the address
// announced must be one the other hosts reach.
func Resolve(spec string) (netip.AddrPort, error) {
	host, port := spec, "0"
	if h, p, err := net.SplitHostPort(spec); err == nil {
		host, port = h, p
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("wake hints: port %q of %q is not a port number", port, spec)
	}
	var ip netip.Addr
	if host == "" {
		if ip, err = HostAddr(); err != nil {
			return netip.AddrPort{}, err
		}
	} else if ip, err = netip.ParseAddr(host); err != nil {
		return netip.AddrPort{}, fmt.Errorf("wake hints: %q is not an IP address (give the address other hosts reach this one at)", host)
	}
	if ip.IsUnspecified() || ip.IsMulticast() {
		return netip.AddrPort{}, fmt.Errorf("wake hints: %s cannot be announced (give the address other hosts reach this one at)", ip)
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(n)), nil
}

// HostAddr is the address announced when none is given: the first IPv4
// address of an interface that is up and not loopback, else its first
// global IPv6 one, else 127.0.0.1 (then only waiters on this host are
// woken). Behind NAT (qemu's user networking, most containers' bridges)
// nobody outside reaches it: the waiter still polls.
func HostAddr() (netip.Addr, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("wake hints: listing network interfaces: %w", err)
	}
	var v6 netip.Addr
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			p, err := netip.ParsePrefix(a.String())
			if err != nil {
				continue
			}
			ip := p.Addr().Unmap()
			switch {
			case ip.Is4():
				return ip, nil
			case ip.IsGlobalUnicast() && !v6.IsValid():
				v6 = ip
			}
		}
	}
	if v6.IsValid() {
		return v6, nil
	}
	return netip.AddrFrom4([4]byte{127, 0, 0, 1}), nil
}

// Send sends each message to its address, from a socket of its own, and
// waits for no answer. Errors (no route, a port nobody listens on) are
// ignored: it was a hint. A write waits only while the kernel's buffer of
// that socket is full (never, for a few datagrams of 21 bytes), and a
// second at most. Call it from a goroutine of its own: it makes system
// calls. (A deadline of 50ms dropped datagrams on a machine loaded 10
// times over, whose goroutine was not run within it.)
func Send(to []netip.AddrPort, msgs []Msg) {
	if len(to) == 0 {
		return
	}
	c, err := net.ListenUDP("udp", nil)
	if err != nil {
		return
	}
	defer c.Close()
	c.SetWriteDeadline(time.Now().Add(time.Second))
	for i, a := range to {
		c.WriteToUDPAddrPort(Encode(msgs[i]), a)
	}
}

// DefaultPerSecond bounds the wake-ups one wait takes from datagrams.
const DefaultPerSecond = 10

// Listener is the process's socket for one address: every wait that
// announces that address subscribes to it (Subscribe), by its token.
type Listener struct {
	conn *net.UDPConn
	addr netip.AddrPort // as announced (the port the kernel gave)

	mu   sync.Mutex
	subs map[Token]*Sub
}

var (
	listenersMu sync.Mutex
	listeners   = map[netip.AddrPort]*Listener{}
)

// Listen is the process's listener on addr (from Resolve), made at its
// first use and then kept: without subscribers it costs a socket and a
// parked goroutine, as the process's watcher does. Port 0 shares the
// first listener made on that IP.
func Listen(addr netip.AddrPort) (*Listener, error) {
	listenersMu.Lock()
	defer listenersMu.Unlock()
	if l := listeners[addr]; l != nil {
		return l, nil
	}
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, fmt.Errorf("wake hints: listening on %s: %w", addr, err)
	}
	got := c.LocalAddr().(*net.UDPAddr).AddrPort()
	l := &Listener{conn: c, addr: netip.AddrPortFrom(addr.Addr(), got.Port()), subs: map[Token]*Sub{}}
	listeners[addr] = l
	listeners[l.addr] = l
	go l.read()
	return l, nil
}

// Addr is the address to announce.
func (l *Listener) Addr() netip.AddrPort { return l.addr }

func (l *Listener) read() {
	buf := make([]byte, Size+1)
	for {
		n, _, err := l.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // (an ICMP error of an earlier send, a short read)
		}
		m, ok := Decode(buf[:n])
		if !ok {
			continue
		}
		l.mu.Lock()
		s := l.subs[m.Token]
		l.mu.Unlock()
		if s != nil {
			s.deliver(m)
		}
	}
}

// Subscribe is a wait's subscription to datagrams naming token: at most
// perSecond wake-ups a second (DefaultPerSecond if 0), timed by c.
func (l *Listener) Subscribe(token Token, c clock.Clock, perSecond int) *Sub {
	if perSecond <= 0 {
		perSecond = DefaultPerSecond
	}
	s := &Sub{l: l, token: token, clock: c, gap: time.Second / time.Duration(perSecond), c: make(chan struct{}, 1)}
	l.mu.Lock()
	l.subs[token] = s
	l.mu.Unlock()
	return s
}

// Sub is one wait's subscription. Its methods may be called on nil: a wait
// without hints.
type Sub struct {
	l     *Listener
	token Token
	clock clock.Clock
	gap   time.Duration // between two wake-ups
	c     chan struct{}

	mu       sync.Mutex
	min      uint64    // datagrams of releases before this fence are late
	last     time.Time // the last wake-up
	deferred bool      // a wake-up is due at last+gap
	closed   bool
	woken    int // wake-ups, for tests
	dropped  int // datagrams ignored as late, for tests
}

// Token is the subscription's token.
func (s *Sub) Token() Token { return s.token }

// C is signalled when a datagram asks for a look; nil (never ready) for a
// nil Sub.
func (s *Sub) C() <-chan struct{} {
	if s == nil {
		return nil
	}
	return s.c
}

// Expect says which release the wait expects: that of fence at least
// fence (the holder it last saw). Datagrams naming an earlier one are
// late, and ignored.
func (s *Sub) Expect(fence uint64) {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.min = fence
	s.mu.Unlock()
}

// Poke wakes the wait once, whatever the rate: for its own reasons (its
// announcement was just made), not a datagram's.
func (s *Sub) Poke() {
	select {
	case s.c <- struct{}{}:
	default:
	}
}

// Counts reports the wake-ups given and the datagrams ignored as late.
func (s *Sub) Counts() (woken, late int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.woken, s.dropped
}

// deliver is a datagram for s: a wake-up now, or at the end of the gap
// since the last one (one, however many come meanwhile).
func (s *Sub) deliver(m Msg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return
	case m.Fence < s.min:
		s.dropped++
		return
	case s.deferred:
		return // one wake-up is due already
	}
	now := s.clock.Now()
	if s.last.IsZero() || now.Sub(s.last) >= s.gap {
		s.wake(now)
		return
	}
	s.deferred = true
	s.clock.AfterFunc(s.last.Add(s.gap).Sub(now), func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.deferred = false
		if !s.closed {
			s.wake(s.clock.Now())
		}
	})
}

// wake signals the wait. Called with s.mu held.
func (s *Sub) wake(now time.Time) {
	s.last = now
	s.woken++
	select {
	case s.c <- struct{}{}:
	default: // signalled already
	}
}

// Close ends the subscription.
func (s *Sub) Close() {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.l.mu.Lock()
	if s.l.subs[s.token] == s {
		delete(s.l.subs, s.token)
	}
	s.l.mu.Unlock()
}

// Deliver hands a datagram to the subscription of its token, as the
// socket does: for tests.
func (l *Listener) Deliver(m Msg) {
	l.mu.Lock()
	s := l.subs[m.Token]
	l.mu.Unlock()
	if s != nil {
		s.deliver(m)
	}
}
