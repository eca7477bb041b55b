// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

// libraryPath is the library's module: when dlock is built from another
// module (cmd/dlock in a module of its own), its version is reported too.
const libraryPath = "github.com/lockdir/dlock"

// buildVersion is what "dlock version" reports, from the build info the
// Go toolchain records in the binary.
type buildVersion struct {
	Version  string       `json:"version"`            // module version: a tag, a pseudo-version, or "devel"
	Module   string       `json:"module"`             // the main module's path
	Revision string       `json:"revision,omitempty"` // version control revision (vcs.revision)
	Time     string       `json:"time,omitempty"`     // the revision's commit time, RFC 3339 (vcs.time)
	Modified bool         `json:"modified"`           // the work tree had uncommitted changes (vcs.modified)
	Go       string       `json:"go"`                 // the Go release that built dlock
	OS       string       `json:"os"`
	Arch     string       `json:"arch"`
	Library  *libraryInfo `json:"library,omitempty"` // the library, when it is another module than the main one
}

// libraryInfo is the library module dlock was built with.
type libraryInfo struct {
	Module  string `json:"module"`
	Version string `json:"version"`
	Replace string `json:"replace,omitempty"` // a replace directive's target: a directory or a module@version
}

// version is the module version this binary was built from, or "devel":
// the first word after "dlock" in "dlock version".
func version() string { return readVersion().Version }

// readVersion reads the build info of this binary.
func readVersion() buildVersion {
	v := buildVersion{Version: "devel", Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	return versionOf(bi, v)
}

// versionOf fills v from bi.
func versionOf(bi *debug.BuildInfo, v buildVersion) buildVersion {
	v.Module = bi.Main.Path
	if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v.Version = bi.Main.Version
	}
	if bi.GoVersion != "" {
		v.Go = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		case "GOOS":
			v.OS = s.Value
		case "GOARCH":
			v.Arch = s.Value
		}
	}
	if v.Module != libraryPath {
		for _, d := range bi.Deps {
			if d.Path != libraryPath {
				continue
			}
			lib := &libraryInfo{Module: d.Path, Version: d.Version}
			if r := d.Replace; r != nil {
				lib.Replace = r.Path
				if r.Version != "" {
					lib.Replace += "@" + r.Version
				}
			}
			v.Library = lib
		}
	}
	return v
}

// String is the text "dlock version" prints: "dlock VERSION" first, for
// scripts that want one word, then one detail per line.
func (v buildVersion) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "dlock %s\n", v.Version)
	if v.Module != "" {
		fmt.Fprintf(&b, "  module    %s\n", v.Module)
	}
	switch {
	case v.Revision != "":
		rev := v.Revision
		if v.Modified {
			rev += " (with uncommitted changes)"
		}
		fmt.Fprintf(&b, "  revision  %s\n", rev)
		if v.Time != "" {
			fmt.Fprintf(&b, "  committed %s\n", v.Time)
		}
	case v.Version == "devel":
		fmt.Fprintf(&b, "  revision  unknown (built without version control information: -buildvcs=false, or outside a clone)\n")
	}
	if l := v.Library; l != nil {
		lib := l.Module + " " + l.Version
		if l.Replace != "" {
			lib += " => " + l.Replace
		}
		fmt.Fprintf(&b, "  library   %s\n", lib)
	}
	fmt.Fprintf(&b, "  built by  %s %s/%s\n", v.Go, v.OS, v.Arch)
	return b.String()
}

// versionCmd is "dlock version [-json]" (and "dlock -V").
func versionCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("version", stderr)
	asJSON := fs.Bool("json", false, "print one JSON object, for scripts")
	if code, stop := parseFlags(fs, args); stop {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(fs, "no arguments, got %q", fs.Arg(0))
	}
	v := readVersion()
	if *asJSON {
		if err := json.NewEncoder(stdout).Encode(v); err != nil {
			fmt.Fprintf(stderr, "dlock version: %v\n", err)
			return exitError
		}
		return 0
	}
	fmt.Fprint(stdout, v)
	return 0
}
