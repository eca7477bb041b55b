package wine

import (
	"sync"
	"unsafe"

	"golang.org/x/sys/windows"
)

// version asks ntdll for wine_get_version, which only Wine's ntdll
// exports (Wine's own documented way to detect it; the registry key
// HKLM\Software\Wine is the other).
var version = sync.OnceValues(func() (string, bool) {
	p := windows.NewLazySystemDLL("ntdll.dll").NewProc("wine_get_version")
	if p.Find() != nil {
		return "", false
	}
	r, _, _ := p.Call()
	if r == 0 {
		return "unknown", true
	}
	return windows.BytePtrToString(*(**byte)(unsafe.Pointer(&r))), true
})
