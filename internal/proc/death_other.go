//go:build !linux

package proc

// DeathWatch is not available here: the first waiter in line checks its
// holder's pid at the poll interval instead.
type DeathWatch struct{}

func watchDeath(int, uint64) *DeathWatch       { return nil }
func (d *DeathWatch) watches(int, uint64) bool { return false }
func (d *DeathWatch) done() <-chan struct{}    { return nil }
func (d *DeathWatch) close()                   {}
func (d *DeathWatch) markDead()                {}
