//go:build unix && !linux

package dlock

// linuxRoles: none here (see roles_linux_test.go).
var linuxRoles = map[string]func() int{}
