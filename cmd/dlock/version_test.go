// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionOfABuildFromAClone(t *testing.T) {
	bi := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/lockdir/dlock", Version: "v0.0.0-20261201202820-b94550077c66+dirty"},
		Settings: []debug.BuildSetting{
			{Key: "GOOS", Value: "linux"}, {Key: "GOARCH", Value: "arm64"},
			{Key: "vcs.revision", Value: "b94550077c66832729d044d47a7bff7703d41910"},
			{Key: "vcs.time", Value: "2026-12-01T20:28:20Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	v := versionOf(bi, buildVersion{Version: "devel"})
	if v.Version != bi.Main.Version || v.Revision != "b94550077c66832729d044d47a7bff7703d41910" || v.Time != "2026-12-01T20:28:20Z" || !v.Modified || v.OS != "linux" || v.Arch != "arm64" || v.Go != "go1.26.8" || v.Library != nil {
		t.Errorf("%+v", v)
	}
	s := v.String()
	for _, want := range []string{"dlock v0.0.0-20261201202820-b94550077c66+dirty\n", "b94550077c66832729d044d47a7bff7703d41910 (with uncommitted changes)", "committed 2026-12-01T20:28:20Z", "go1.26.8 linux/arm64"} {
		if !strings.Contains(s, want) {
			t.Errorf("version text lacks %q:\n%s", want, s)
		}
	}
}

// cmd/dlock in a module of its own: the main module is the CLI's, devel
// in a work tree, and the library is a replaced dependency.
func TestVersionOfTheCLIModule(t *testing.T) {
	bi := &debug.BuildInfo{
		Main: debug.Module{Path: "github.com/lockdir/dlock/cmd/dlock", Version: "(devel)"},
		Deps: []*debug.Module{
			{Path: "github.com/fsnotify/fsnotify", Version: "v1.10.1"},
			{Path: "github.com/lockdir/dlock", Version: "v0.0.0", Replace: &debug.Module{Path: "../.."}},
		},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}},
	}
	v := versionOf(bi, buildVersion{Version: "devel"})
	if v.Version != "devel" || v.Module != "github.com/lockdir/dlock/cmd/dlock" || v.Revision != "abc" {
		t.Errorf("%+v", v)
	}
	if v.Library == nil || v.Library.Version != "v0.0.0" || v.Library.Replace != "../.." {
		t.Fatalf("library: %+v", v.Library)
	}
	if s := v.String(); !strings.Contains(s, "library   github.com/lockdir/dlock v0.0.0 => ../..") || !strings.HasPrefix(s, "dlock devel\n") {
		t.Errorf("%s", s)
	}
}

func TestVersionCommand(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"-V"}, {"--version"}} {
		var out, errb strings.Builder
		if code := dispatch(args, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "dlock ") || !strings.Contains(out.String(), "built by  go") {
			t.Errorf("%q: exit %d, %q %q", args, code, out.String(), errb.String())
		}
	}
	var out, errb strings.Builder
	if code := dispatch([]string{"version", "-json"}, &out, &errb); code != 0 {
		t.Fatalf("version -json: exit %d: %s", code, errb.String())
	}
	var v buildVersion
	if err := json.Unmarshal([]byte(out.String()), &v); err != nil || v.Version == "" || v.Go == "" || !strings.HasPrefix(v.Module, "github.com/lockdir/dlock") {
		t.Errorf("version -json: %v %q", err, out.String())
	}
	if code := dispatch([]string{"version", "extra"}, &out, &errb); code != exitUsage {
		t.Errorf("version extra: exit %d", code)
	}
}
