package dlock

// ARCHITECTURE.md's statements about the library's layout and complexity,
// checked against the code: a page that says how the house is built is
// only worth reading while it is true.

import (
	"go/ast"
	"go/build/constraint"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// libraryFiles are the Go files of the library: the root package and
// internal/, with or without their tests.
func libraryFiles(t *testing.T, tests bool) []string {
	t.Helper()
	var files []string
	for _, root := range []string{".", "internal"} {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && path != root && (root == "." || strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
				return filepath.SkipDir // the root package alone; internal/ whole
			}
			if !d.IsDir() && strings.HasSuffix(path, ".go") && (tests || !strings.HasSuffix(path, "_test.go")) {
				files = append(files, path)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return files
}

// architecture is ARCHITECTURE.md's text.
func architecture(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("ARCHITECTURE.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// cyclomatic is a function's cyclomatic complexity as gocyclo counts it:
// 1, plus one for each if, for, range, case and select case other than
// default, && and ||, function literals inside it included.
func cyclomatic(fn *ast.FuncDecl) int {
	c := 1
	ast.Inspect(fn, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.IfStmt, *ast.ForStmt, *ast.RangeStmt:
			c++
		case *ast.CaseClause:
			if n.List != nil {
				c++
			}
		case *ast.CommClause:
			if n.Comm != nil {
				c++
			}
		case *ast.BinaryExpr:
			if n.Op == token.LAND || n.Op == token.LOR {
				c++
			}
		}
		return true
	})
	return c
}

// No function of the library is more complex than ARCHITECTURE.md says.
func TestComplexityAsArchitectureSays(t *testing.T) {
	m := regexp.MustCompile(`cyclomatic\s+complexity\s+above\s+(\d+)`).FindStringSubmatch(architecture(t))
	if m == nil {
		t.Fatal("ARCHITECTURE.md states no figure for the library's complexity (\"complexity above N\")")
	}
	limit, _ := strconv.Atoi(m[1])
	fset := token.NewFileSet()
	worst, where := 0, ""
	for _, path := range libraryFiles(t, false) {
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok {
				continue
			}
			c := cyclomatic(fn)
			name := fn.Name.Name
			if fn.Recv != nil {
				name = types(fn.Recv.List[0].Type) + "." + name
			}
			if c > limit {
				t.Errorf("%s: %s has a cyclomatic complexity of %d; ARCHITECTURE.md says the library stays at %d or less", fset.Position(fn.Pos()), name, c, limit)
			}
			if c > worst {
				worst, where = c, name
			}
		}
	}
	t.Logf("worst complexity in the library: %d (%s); the limit is %d", worst, where, limit)
}

// types is a receiver's type name, as gocyclo prints it.
func types(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.StarExpr:
		return "(*" + types(e.X) + ")"
	case *ast.Ident:
		return e.Name
	case *ast.IndexExpr:
		return types(e.X)
	}
	return "?"
}

// The root package's table in ARCHITECTURE.md names every file of the
// package, and only files that exist.
func TestRootFilesAsArchitectureSays(t *testing.T) {
	text := architecture(t)
	start := strings.Index(text, "## The root package")
	if start < 0 {
		t.Fatal(`ARCHITECTURE.md has no section "## The root package"`)
	}
	section := text[start:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	var named []string
	for _, line := range strings.Split(section, "\n") {
		if first, ok := strings.CutPrefix(line, "| `"); ok {
			cell, _, _ := strings.Cut("`"+first, "|")
			for _, m := range regexp.MustCompile("`([a-z_]+\\.go)`").FindAllStringSubmatch(cell, -1) {
				named = append(named, m[1])
			}
		}
	}
	var files []string
	for _, path := range libraryFiles(t, false) {
		if filepath.Dir(path) == "." {
			files = append(files, path)
		}
	}
	for _, f := range files {
		if !slices.Contains(named, f) {
			t.Errorf("%s is not in ARCHITECTURE.md's table of the root package: say what it holds", f)
		}
	}
	for _, f := range named {
		if !slices.Contains(files, f) {
			t.Errorf("ARCHITECTURE.md's table names %s, which does not exist", f)
		}
	}
}

// In the library, a file whose build constraint negates an OS is a
// fallback, named _other.go (or _other_test.go), as ARCHITECTURE.md says.
func TestNegatedBuildTagsOnlyInFallbacks(t *testing.T) {
	for _, path := range libraryFiles(t, true) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if !constraint.IsGoBuild(line) {
				continue
			}
			expr, err := constraint.Parse(line)
			if err != nil {
				t.Errorf("%s: %v", path, err)
				continue
			}
			base := strings.TrimSuffix(strings.TrimSuffix(filepath.Base(path), ".go"), "_test")
			if negatesOS(expr, false) && !strings.HasSuffix(base, "_other") {
				t.Errorf("%s: %q negates an OS, but only a fallback (_other.go) may", path, line)
			}
		}
	}
}

// negatesOS reports whether e negates a tag other than race.
func negatesOS(e constraint.Expr, negated bool) bool {
	switch e := e.(type) {
	case *constraint.NotExpr:
		return negatesOS(e.X, !negated)
	case *constraint.AndExpr:
		return negatesOS(e.X, negated) || negatesOS(e.Y, negated)
	case *constraint.OrExpr:
		return negatesOS(e.X, negated) || negatesOS(e.Y, negated)
	case *constraint.TagExpr:
		return negated && e.Tag != "race"
	}
	return false
}
