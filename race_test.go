//go:build race

package dlock

const raceEnabled = true
