//go:build !linux

package main

import "syscall"

func peerSysProcAttr() *syscall.SysProcAttr { return nil }
