package identity

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestStandardLibraryOnly keeps the package free of dependencies outside the
// standard library: a standard import path has no dot in its first element.
// Of the rest of this module it imports package grant and the RFC 9110
// token rule alone, which are held to the same rule.
func TestStandardLibraryOnly(t *testing.T) {
	standardOnly(t, ".", "github.com/deplo-sh/deplo-auth/grant", "github.com/deplo-sh/deplo-auth/internal/httptoken")
	standardOnly(t, "../internal/httptoken")
	standardOnly(t, "../grant")
}

// standardOnly checks the non-test Go files of dir: standard imports, and
// the paths of allowed.
func standardOnly(t *testing.T, dir string, allowed ...string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	n := 0
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		n++
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			first, _, _ := strings.Cut(path, "/")
			if (strings.Contains(first, ".") || path == "C") && !slices.Contains(allowed, path) {
				t.Errorf("%s imports %q, which is not in the standard library", name, path)
			}
		}
	}
	if n == 0 {
		t.Fatalf("%s: no source files found", dir)
	}
}
