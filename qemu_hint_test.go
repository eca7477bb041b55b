//go:build linux

package dlock

// Wake-up hints between two real NFS clients: the qemu guests of
// scripts/qemu-nfs.sh, each its own Linux NFSv4.1 client of the host's
// nfs-ganesha, hand a lock to each other. Their user-mode network lets no
// datagram in (NAT), so each also gets a second link to the other
// (qemu -netdev dgram over this host's loopback, UDP ports QEMU_HINT_PORT
// and QEMU_HINT_PORT+1, default 21000): 10.99.0.1 and 10.99.0.2.
//
//	eval "$(QEMU_NFS_PORT=20890 scripts/qemu-nfs.sh up)"
//	go test -run TestQemuNFSWakeHints -v -count=1 .
//
// DLOCK_QEMU_HINT_ROUNDS (default 10) sets the hand-offs per case; every
// time is this host's, stamped as the agents' answers arrive.

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestQemuNFSWakeHints(t *testing.T) {
	r := needQemu(t)
	c := listenCtl(t)
	port := envInt("QEMU_HINT_PORT", 21000)
	link := func(local, remote int) string {
		return fmt.Sprintf("dgram,id=n1,local.type=inet,local.host=127.0.0.1,local.port=%d,remote.type=inet,remote.host=127.0.0.1,remote.port=%d", local, remote)
	}
	var g [2]*qemuAgent
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		g[0] = r.bootAgent(t, c, "g1", 2, []string{"default"}, link(port, port+1), "10.99.0.1/24")
	}()
	go func() {
		defer wg.Done()
		g[1] = r.bootAgent(t, c, "g2", 3, []string{"default"}, link(port+1, port), "10.99.0.2/24")
	}()
	wg.Wait()
	if g[0] == nil || g[1] == nil {
		t.FailNow()
	}
	rounds := envInt("DLOCK_QEMU_HINT_ROUNDS", 10)
	for _, k := range []struct {
		name  string
		poll  time.Duration
		hints [2]string // each guest's address, or "" for none
	}{
		{"poll-100ms", 100 * time.Millisecond, [2]string{}},
		{"poll-1s", time.Second, [2]string{}},
		{"poll-1s+hints", time.Second, [2]string{"10.99.0.1", "10.99.0.2"}},
		// Each guest announces its user-mode address, which the other
		// cannot reach: every hand-off is the poll's.
		{"poll-1s+hints-behind-NAT", time.Second, [2]string{"auto", "auto"}},
	} {
		t.Run(k.name, func(t *testing.T) {
			name, _ := r.dir(t)
			path := "/m1/" + name + "/lock"
			lock := func(i int) string {
				args := []any{path, k.poll}
				if k.hints[i] != "" {
					args = append(args, k.hints[i])
				}
				return g[i].send(t, "lock", args...)
			}
			hid := lock(0)
			g[0].wait(t, hid, "acquired", 60*time.Second)
			var hand []time.Duration
			var ops nfsStats
			var opsFor time.Duration
			for i := range rounds {
				h, w := g[i%2], g[(i+1)%2]
				wid := lock((i + 1) % 2)
				waiting := w.wait(t, wid, "waiting", 30*time.Second)
				// The guest's Lock has made its first attempt and waits
				// (guests are slow): then count its RPCs for a second,
				// and release at a random moment of its poll.
				time.Sleep(time.Until(waiting.at.Add(500 * time.Millisecond)))
				s1at, s1 := w.stats(t, "/m1")
				time.Sleep(time.Second)
				s2at, s2 := w.stats(t, "/m1")
				ops, opsFor = ops.add(s2.sub(s1)), opsFor+s2at.at.Sub(s1at.at)
				time.Sleep(rand.N(k.poll))
				released := h.wait(t, h.send(t, "unlock", hid), "released", 60*time.Second)
				acq := w.wait(t, wid, "acquired", 60*time.Second)
				hand = append(hand, acq.at.Sub(released.at))
				t.Logf("round %d: %s to %s: %v after the holder's Unlock returned", i, h.who, w.who, acq.at.Sub(released.at))
				hid = wid
			}
			g[rounds%2].wait(t, g[rounds%2].send(t, "unlock", hid), "released", 60*time.Second)
			slices.Sort(hand)
			figure(t, "qemu NFS %s: hand-off g1<->g2 (each its own NFSv4.1 client), %d rounds: p50 %.2fms p99 %.2fms (from the holder's Unlock returning); the waiter's NFS RPCs per waiting second: %s",
				k.name, len(hand), ms(hand[len(hand)/2]), ms(hand[len(hand)-1]), ops.perSecond(opsFor))
		})
	}
}
