package doccheck

import (
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// md is ".md", kept out of the literals below so that this file cites no
// document itself (TestRepositoryCitations reads it too).
const md = ".md"

func TestCitations(t *testing.T) {
	for _, tc := range []struct {
		name     string
		text     string
		markdown bool
		want     []Citation
	}{
		{"link", "see [the reference](reference" + md + "#routes).", true,
			[]Citation{{Path: "reference" + md, Anchor: "routes", Link: true, Line: 1}}},
		{"link up", "x\n[r](../README" + md + ")", true,
			[]Citation{{Path: "../README" + md, Link: true, Line: 2}}},
		{"bare in backticks", "the file `docs/design" + md + "` says", false,
			[]Citation{{Path: "docs/design" + md, Line: 1}}},
		{"bare in a comment", "// TestDecide is the table of docs/reference" + md + " (\"Refusals\")", false,
			[]Citation{{Path: "docs/reference" + md, Line: 1}}},
		{"URL is not a citation", "https://github.com/caddyserver/caddy/blob/master/README" + md, true, nil},
		{"URL link is not a citation", "[caddy](https://github.com/caddyserver/caddy/blob/master/README" + md + ")", true, nil},
		{"in-page link", "[tests](#tests)", true, nil},
		{"a longer name", "foo-bar" + md + "x and x_y" + md, false,
			[]Citation{{Path: "foo-bar" + md, Line: 1}, {Path: "x_y" + md, Line: 1}}},
		{"link and bare on one line counted once", "[a](a" + md + ") and `b" + md + "`", true,
			[]Citation{{Path: "a" + md, Link: true, Line: 1}, {Path: "b" + md, Line: 1}}},
		{"glob is not a citation", "every `*" + md + "` file", false, nil},
		{"shell variable is not a citation", `echo "$OUT/flood` + md + `"`, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Citations(tc.text, tc.markdown); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Citations(%q) = %+v, want %+v", tc.text, got, tc.want)
			}
		})
	}
}

func TestAnchors(t *testing.T) {
	doc := "# deplo_auth reference\n## The `deplo_auth` directive\n### Dashboard sessions (JWT)\n" +
		"```sh\n# not a heading\n```\n## Walk-through\n### What the upstream saw\n## Walk-through\n#hashtag\n"
	got := Anchors(doc)
	want := map[string]bool{
		"deplo_auth-reference": true, "the-deplo_auth-directive": true, "dashboard-sessions-jwt": true,
		"walk-through": true, "what-the-upstream-saw": true, "walk-through-1": true,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Anchors = %v, want %v", got, want)
	}
}

// TestRepositoryCitations: no tracked Go, markdown or shell file cites a
// markdown document the repository does not hold (or, for a generated
// output, does not ignore), and every link to a heading of a document
// (doc#anchor, or #anchor within one) names a heading that exists.
func TestRepositoryCitations(t *testing.T) {
	root, files := trackedFiles(t)
	tracked := map[string]bool{}
	for _, f := range files {
		tracked[f] = true
	}
	anchors := map[string]map[string]bool{}
	anchorsOf := func(doc string) map[string]bool {
		if a, ok := anchors[doc]; ok {
			return a
		}
		b, err := os.ReadFile(filepath.Join(root, doc))
		if err != nil {
			t.Fatal(err)
		}
		anchors[doc] = Anchors(string(b))
		return anchors[doc]
	}
	ignored := func(p string) bool {
		return exec.Command("git", "-C", root, "check-ignore", "-q", "--no-index", p).Run() == nil
	}
	for _, f := range files {
		ext := path.Ext(f)
		if ext != ".go" && ext != md && ext != ".sh" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			if os.IsNotExist(err) {
				continue // deleted in the work tree
			}
			t.Fatal(err)
		}
		isMD := ext == md
		for _, c := range Citations(string(b), isMD) {
			candidates := []string{path.Join(path.Dir(f), c.Path)}
			if !c.Link {
				candidates = append(candidates, path.Clean(c.Path))
			}
			found := ""
			for _, p := range candidates {
				if tracked[p] {
					found = p
					break
				}
			}
			if found == "" {
				generated := false
				for _, p := range candidates {
					if !strings.HasPrefix(p, "../") && ignored(p) {
						generated = true
					}
				}
				if !generated {
					t.Errorf("%s:%d cites %s, which the repository does not hold (tried %s)", f, c.Line, c.Path, strings.Join(candidates, ", "))
				}
				continue
			}
			if c.Anchor != "" && !anchorsOf(found)[c.Anchor] {
				t.Errorf("%s:%d links to %s#%s, but %s has no such heading", f, c.Line, c.Path, c.Anchor, found)
			}
		}
		if isMD {
			for _, c := range InPageAnchors(string(b)) {
				if !anchorsOf(f)[c.Anchor] {
					t.Errorf("%s:%d links to #%s, but %s has no such heading", f, c.Line, c.Anchor, f)
				}
			}
		}
	}
}

// trackedFiles returns the repository's root and its tracked files
// (slash-separated, relative to the root).
func trackedFiles(t *testing.T) (string, []string) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed: cannot list the repository's tracked files")
	}
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skip("not in a git work tree: cannot list the repository's tracked files")
	}
	root := strings.TrimSpace(string(out))
	out, err = exec.Command("git", "-C", root, "ls-files", "-z").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	var files []string
	for _, f := range strings.Split(string(out), "\x00") {
		if f != "" {
			files = append(files, f)
		}
	}
	return root, files
}
