package dlock

import "golang.org/x/sys/windows"

// refusals are Windows' own answers for an entry or a directory that
// another program has open, as the OS gives them: the fault injected at
// fsys's contract is exactly what the system call would return.
var refusals = []error{windows.ERROR_SHARING_VIOLATION, windows.ERROR_ACCESS_DENIED, windows.ERROR_DELETE_PENDING}
