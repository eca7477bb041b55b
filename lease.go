package dlock

import "fmt"

// A Lease is one holding of one slot of a Semaphore, got from Take or
// TryTake. Many goroutines can each hold a lease of one Semaphore.
type Lease struct {
	s        *Semaphore
	slot     int
	fence    uint64
	lost     <-chan struct{} // this acquisition's: the slot may pass to another later
	released bool            // guarded by s.mu
}

// Release gives the lease's slot back: ErrNotHeld if it was released
// already, ErrLost if it was lost while held (reclaimed by another holder,
// or removed, or its deadline passed).
func (p *Lease) Release() error {
	s := p.s
	s.mu.Lock()
	done := p.released
	p.released = true
	if !done {
		// Free for this value's other holders now: one that tries the
		// slot before its Unlock below finds it held and skips it, then
		// the release's rename wakes it.
		s.reserved[p.slot] = false
	}
	s.mu.Unlock()
	if done {
		return fmt.Errorf("dlock: releasing slot %d of semaphore %s: %w", p.slot, s.path, ErrNotHeld)
	}
	return s.slots[p.slot].Unlock()
}

// Lost is closed if the lease's slot is lost while held (see Lock.Lost).
func (p *Lease) Lost() <-chan struct{} { return p.lost }

// Fence returns the fence of the lease's acquisition of its slot. Fences
// rise with every acquisition of that slot, not of the semaphore as a
// whole.
func (p *Lease) Fence() uint64 { return p.fence }

// Slot returns the index of the lease's slot.
func (p *Lease) Slot() int { return p.slot }
