//go:build windows && wine

package wine

import _ "unsafe" // for go:linkname

// Wine 8's NtSetInformationFile does not know FileDispositionInformationEx
// and answers STATUS_NOT_IMPLEMENTED ("Invalid function"), which Go's
// os.RemoveAll (since Go 1.24) does not take as a reason to fall back to
// the older FileDispositionInformation, as it does for the answers real
// Windows versions give. Every t.TempDir's cleanup then fails. Go keeps a
// switch for its own tests that takes the fallback always; scripts/wine.sh
// builds the Windows test binaries with -tags wine and
// -ldflags=-checklinkname=0 to set it, under Wine only. Nothing else is
// changed, and no build without the tag sees this file.

//go:linkname deleteatFallback internal/syscall/windows.TestDeleteatFallback
var deleteatFallback bool

func init() {
	if _, ok := version(); ok {
		deleteatFallback = true
	}
}
