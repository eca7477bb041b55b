//go:build !linux

package dlock

func newHub() hub { return &fsnotifyHub{} }
