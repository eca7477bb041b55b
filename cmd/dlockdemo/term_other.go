//go:build !(linux || darwin || freebsd || openbsd || netbsd || dragonfly)

package main

import "os"

// termWidth is the terminal's width in columns: unknown here, so 80.
func termWidth(f *os.File) int { return 80 }
