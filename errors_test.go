package dlock

import (
	"errors"
	"fmt"
	"testing"

	"github.com/lockdir/dlock/internal/fsys"
	"github.com/lockdir/dlock/internal/lockdir"
)

// The errors the internal packages make match the public sentinels:
// lockdir's about lock directories, fsys's about filesystems where no lock
// can be safe.
func TestInternalErrorsMatchTheSentinels(t *testing.T) {
	for _, c := range []struct {
		inner, public error
	}{
		{lockdir.ErrNotLock, ErrNotLock},
		{lockdir.ErrCorrupt, ErrCorrupt},
		{fsys.ErrUnsafe, ErrUnsafeFS},
	} {
		if err := fmt.Errorf("dlock: somewhere: %w", c.inner); !errors.Is(err, c.public) {
			t.Errorf("an error wrapping %q does not match %q", c.inner, c.public)
		}
	}
}
