//go:build unix

package main

import (
	"fmt"
	iofs "io/fs"
	"os"
	"syscall"
)

// describeOwner says who owns fi and who we are, for permission messages.
func describeOwner(fi iofs.FileInfo) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	return fmt.Sprintf(", owner uid %d, group gid %d (you are uid %d, gid %d)", st.Uid, st.Gid, os.Geteuid(), os.Getegid())
}
