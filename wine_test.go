package dlock

// Under Wine (scripts/wine.sh) the tests run as Windows programs: a build
// with -tags wine makes t.TempDir's cleanup work there
// (internal/wine/removeall_wine.go), and tests that cannot mean anything
// there skip with wine.Skip's reason (attempt_test.go, wait_test.go);
// helpers_test.go's tempDir waits there for our own handles to close.
