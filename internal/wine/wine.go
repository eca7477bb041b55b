// Package wine tells the tests whether they run under Wine, where some of
// them cannot mean anything (see scripts/wine.sh): Wine runs Windows
// programs on Linux's own filesystem calls, so it proves dlock's Windows
// code paths (process identity and liveness, the directory calls, the
// watcher through ReadDirectoryChangesW, dlock run's job object), never
// NTFS or SMB semantics. Only tests import it.
package wine

// Version returns Wine's version and true when this process is a Windows
// program running under Wine; "", false anywhere else.
func Version() (string, bool) { return version() }

// Skip is the reason a test gives for skipping under Wine, with the
// version, or "" when not under Wine.
func Skip(why string) string {
	v, ok := Version()
	if !ok {
		return ""
	}
	return "under Wine " + v + ": " + why
}
