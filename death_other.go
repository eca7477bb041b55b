//go:build !linux

package dlock

// deathWatch is not available here: the first waiter in line checks its
// holder's pid at the poll interval instead.
type deathWatch struct{}

func watchDeath(Holder) *deathWatch         { return nil }
func (d *deathWatch) watches(Holder) bool   { return false }
func (d *deathWatch) done() <-chan struct{} { return nil }
func (d *deathWatch) close()                {}
func (d *deathWatch) markDead()             {}
