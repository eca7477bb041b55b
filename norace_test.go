//go:build !race

package dlock

const raceEnabled = false
