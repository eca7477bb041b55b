package main

import "errors"

// pollOptionAvailable tells whether the library can turn watching off; it
// cannot yet, so the dlock-poll column is reported as n/a.
const pollOptionAvailable = false

func newPollLock(string) (locker, error) {
	return nil, errors.New("dlock has no option to turn watching off")
}
