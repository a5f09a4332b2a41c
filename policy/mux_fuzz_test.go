package policy

import (
	"strings"
	"testing"
)

// fuzzMuxPatterns is a fixed deplo-like table of about 20 patterns for
// FuzzMuxMatch, using every kind of segment and method.
var fuzzMuxPatterns = []string{
	"/",
	"GET /healthz",
	"* /v1/me",
	"GET /v1/workspaces",
	"POST /v1/workspaces",
	"GET /v1/workspaces/{workspace}",
	"DELETE /v1/workspaces/{workspace}",
	"GET /v1/workspaces/{workspace}/projects/new",
	"/v1/workspaces/{workspace}/projects/{project}",
	"POST /v1/workspaces/{workspace}/projects/{project}",
	"GET /v1/workspaces/{workspace}/projects/{project}/deployments/{id}",
	"GET /v1/workspaces/{workspace}/projects/{project}/logs/{rest...}",
	"/v1/workspaces/{workspace}/projects/{project}/files/",
	"HEAD /v1/workspaces/{workspace}/projects/{project}/files/{name}",
	"/v1/admin/",
	"GET /v1/admin/{$}",
	"/static/{file...}",
	"GET /docs/{$}",
	"/e%20s/{x}",
	"BREW /brew/{a}/{b}/{c}",
}

func FuzzMuxMatch(f *testing.F) {
	m := newTestMux(f, fuzzMuxPatterns...)
	for _, s := range []struct{ method, path string }{
		{"GET", "/"},
		{"GET", ""},
		{"", "x"},
		{"HEAD", "/v1/workspaces/w/projects/p/files/a"},
		{"GET", "/v1/workspaces/w/projects/p/logs/a/b/"},
		{"GET", "/v1/workspaces/w/projects/new"},
		{"POST", "/v1/workspaces/w/projects/p"},
		{"GET", "/v1/admin/"},
		{"BREW", "/brew/1/2/3"},
		{"GET", "/static/"},
		{"GET", "/e s/1"},
		{"GET", "//"},
		{"GET", "/v1//workspaces/"},
		{"PUT", "/v1/me"},
	} {
		f.Add(s.method, s.path)
	}
	f.Fuzz(func(t *testing.T, method, path string) {
		var buf [4]string
		v, names, values, ok := m.match(method, path, buf[:0])
		if !ok {
			if v != "" || names != nil || values != nil {
				t.Fatalf("no match but %q %q %q", v, names, values)
			}
			return
		}
		if len(values) != len(names) {
			t.Fatalf("match(%q, %q) = %q: names %q, values %q", method, path, v, names, values)
		}
		for _, val := range values {
			if !strings.Contains(path, val) {
				t.Fatalf("match(%q, %q) = %q: value %q not in path", method, path, v, val)
			}
		}
		// The pattern found alone in a mux matches too, with the same values.
		m1 := newTestMux(t, v)
		if v1, _, values1, ok := m1.match(method, path, nil); !ok || v1 != v || strings.Join(values1, "\x00") != strings.Join(values, "\x00") {
			t.Fatalf("match(%q, %q) = %q %q, but alone %q %q %v", method, path, v, values, v1, values1, ok)
		}
	})
}

func FuzzMuxAdd(f *testing.F) {
	for _, s := range []string{
		"/", "GET /x", "* /a/{b}/{c...}", "/a/{$}", "/{", "/{a...}/b",
		" /x", "POST /v1/workspaces/{workspace}/projects/{project}/", "/%2F",
		"/a/{x}/c", "GET /v1/{kind}/status", "HEAD /v1/admin/{x}", "GET\t/{a}/",
	} {
		f.Add(s)
	}
	parsedFull := make([]*muxPattern, len(fuzzMuxPatterns))
	for i, p := range fuzzMuxPatterns {
		parsedFull[i], _ = parseMuxPattern(p)
	}
	f.Fuzz(func(t *testing.T, pattern string) {
		m := &mux[string]{}
		if err := m.add(pattern, pattern); err != nil {
			if !strings.HasPrefix(err.Error(), "invalid pattern ") {
				t.Fatalf("add(%q): %v", pattern, err)
			}
			return
		}
		if err := m.add(pattern, "again"); err == nil || !strings.Contains(err.Error(), "same requests") {
			t.Fatalf("adding %q twice: %v", pattern, err)
		}
		p := m.pats[0]
		// A path built from the pattern matches it, each wildcard taking
		// its name as value (a {name...} the empty rest).
		var b strings.Builder
		writeMuxSegments(&b, p.segments)
		method := p.method
		if method == "" {
			method = "GET"
		}
		v, names, values, ok := m.match(method, b.String(), nil)
		if !ok || v != pattern || len(values) != len(names) {
			t.Fatalf("match(%q, %q) = %q %q %q %v, want %q", method, b.String(), v, names, values, ok, pattern)
		}
		for i, n := range names {
			want := n
			if last := p.lastSegment(); last.multi && last.s != "" && i == len(names)-1 {
				want = ""
			}
			if values[i] != want {
				t.Fatalf("match(%q, %q): %s = %q, want %q", method, b.String(), n, values[i], want)
			}
		}
		// Against a full table: never panics, and every conflict example is
		// right.
		_ = newTestMux(t, fuzzMuxPatterns...).add(pattern, pattern)
		for _, q := range parsedFull {
			checkExamples(t, p, q)
		}
	})
}
