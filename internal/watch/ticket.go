package watch

import (
	"path/filepath"
	"strings"
)

// isTicketPath reports whether path is a ticket in a lock's queue
// (PATH/queue/TIME.TOKEN.PID.HOSTID): its close is an event too, the
// death of the waiter that held it open (see fsys.HoldOpen).
func isTicketPath(path string) bool {
	dir, name := filepath.Split(path)
	f := strings.Split(name, ".")
	return len(f) == 4 && len(f[0]) == 20 && len(f[1]) == 16 && filepath.Base(dir) == "queue"
}
