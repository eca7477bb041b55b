package fsys

import "golang.org/x/sys/unix"

// holdOpen opens our ticket in the queue and keeps it open while we
// wait. When the process dies, the kernel closes it, and the close is an
// event (IN_CLOSE_NOWRITE) to the waiter behind, who watches the ticket:
// a killed waiter is passed over at once, at the cost of an open and a
// close per wait, where a pidfd for each predecessor would cost a dozen
// system calls and a goroutine. Leaving removes the ticket and then
// closes it: the removal's events wait for the last close (the directory
// lives on while open), so the successor wakes once. -1 if it cannot.
func holdOpen(path string) int {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	return fd
}

func closeHeld(fd int) {
	if fd >= 0 {
		unix.Close(fd)
	}
}
