package dlock

import "os"

// mountTable reads this process's mount table (its mount namespace, as
// seen from its root).
func mountTable() ([]mount, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	return parseMountinfo(string(b)), nil
}
