package policy

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// newTestMux returns a mux whose values are the patterns themselves.
func newTestMux(t testing.TB, patterns ...string) *mux[string] {
	t.Helper()
	m := &mux[string]{}
	for _, p := range patterns {
		if err := m.add(p, p); err != nil {
			t.Fatalf("add(%q): %v", p, err)
		}
	}
	return m
}

func TestMuxMatch(t *testing.T) {
	m := newTestMux(t,
		"/",
		"/v1/workspaces/{workspace}/projects/new",
		"/v1/workspaces/{workspace}/projects/{project}",
		"GET /v1/workspaces/{workspace}/projects/{project}/files/{rest...}",
		"/a/{$}",
		"/a/{x...}",
		"/s/",
		"/s/lit",
		"/t/{x}/",
		"POST /m",
		"GET /m",
		"/m",
		"/m/{id}",
		"PUT /m/{id}",
		"HEAD /h",
		"GET /h",
		"* /star",
		"DELETE /star/{id}",
		"/e/{x}",
		"/e/{x}/{$}",
		"GET /deep/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}/{j}",
		"/esc%20aped/x",
	)
	const (
		ws = "/v1/workspaces/{workspace}/projects/"
	)
	type res struct {
		pattern string
		names   []string
		values  []string
	}
	tests := []struct {
		method, path string
		want         res
	}{
		// Literal beats wildcard.
		{"GET", "/v1/workspaces/w1/projects/new", res{ws + "new", []string{"workspace"}, []string{"w1"}}},
		{"GET", "/v1/workspaces/w1/projects/p1", res{ws + "{project}", []string{"workspace", "project"}, []string{"w1", "p1"}}},
		{"GET", "/v1/workspaces/new/projects/new2", res{ws + "{project}", []string{"workspace", "project"}, []string{"new", "new2"}}},
		// {rest...} values.
		{"GET", "/v1/workspaces/w1/projects/p1/files/a/b/c.txt", res{"GET " + ws + "{project}/files/{rest...}", []string{"workspace", "project", "rest"}, []string{"w1", "p1", "a/b/c.txt"}}},
		{"HEAD", "/v1/workspaces/w1/projects/p1/files/a", res{"GET " + ws + "{project}/files/{rest...}", []string{"workspace", "project", "rest"}, []string{"w1", "p1", "a"}}},
		{"GET", "/v1/workspaces/w1/projects/p1/files/", res{"GET " + ws + "{project}/files/{rest...}", []string{"workspace", "project", "rest"}, []string{"w1", "p1", ""}}},
		{"GET", "/v1/workspaces/w1/projects/p1/files/a/", res{"GET " + ws + "{project}/files/{rest...}", []string{"workspace", "project", "rest"}, []string{"w1", "p1", "a/"}}},
		// The GET pattern does not serve POST; "/" catches it. No redirects.
		{"POST", "/v1/workspaces/w1/projects/p1/files/a", res{"/", nil, nil}},
		{"GET", "/v1/workspaces/w1/projects/p1/files", res{"/", nil, nil}},
		{"GET", "/v1/workspaces/w1/projects/p1/", res{"/", nil, nil}},
		{"GET", "/v1/workspaces/w1/projects", res{"/", nil, nil}},
		// {$} beats {x...}, which beats "/".
		{"GET", "/a/", res{"/a/{$}", nil, nil}},
		{"GET", "/a/b", res{"/a/{x...}", []string{"x"}, []string{"b"}}},
		{"GET", "/a/b/c/", res{"/a/{x...}", []string{"x"}, []string{"b/c/"}}},
		{"GET", "/a", res{"/", nil, nil}},
		// Subtree.
		{"GET", "/s/", res{"/s/", nil, nil}},
		{"GET", "/s/lit", res{"/s/lit", nil, nil}},
		{"GET", "/s/lit/", res{"/s/", nil, nil}},
		{"GET", "/s/x/y", res{"/s/", nil, nil}},
		{"GET", "/s", res{"/", nil, nil}},
		{"GET", "/t/b/", res{"/t/{x}/", []string{"x"}, []string{"b"}}},
		{"GET", "/t/b/c/d", res{"/t/{x}/", []string{"x"}, []string{"b"}}},
		{"GET", "/t/b", res{"/", nil, nil}},
		{"GET", "/t/", res{"/", nil, nil}},
		// Method precedence.
		{"POST", "/m", res{"POST /m", nil, nil}},
		{"GET", "/m", res{"GET /m", nil, nil}},
		{"HEAD", "/m", res{"GET /m", nil, nil}},
		{"PUT", "/m", res{"/m", nil, nil}},
		{"BREW", "/m", res{"/m", nil, nil}},
		{"", "/m", res{"/m", nil, nil}},
		{"get", "/m", res{"/m", nil, nil}},
		{"PUT", "/m/1", res{"PUT /m/{id}", []string{"id"}, []string{"1"}}},
		{"GET", "/m/1", res{"/m/{id}", []string{"id"}, []string{"1"}}},
		{"HEAD", "/h", res{"HEAD /h", nil, nil}},
		{"GET", "/h", res{"GET /h", nil, nil}},
		{"POST", "/h", res{"/", nil, nil}},
		// "*" means any method.
		{"PATCH", "/star", res{"* /star", nil, nil}},
		{"GET", "/star", res{"* /star", nil, nil}},
		{"DELETE", "/star/1", res{"DELETE /star/{id}", []string{"id"}, []string{"1"}}},
		{"GET", "/star/1", res{"/", nil, nil}},
		// {x} does not match a trailing slash; {$} matches only it.
		{"GET", "/e/1", res{"/e/{x}", []string{"x"}, []string{"1"}}},
		{"GET", "/e/1/", res{"/e/{x}/{$}", []string{"x"}, []string{"1"}}},
		{"GET", "/e/1/2", res{"/", nil, nil}},
		{"GET", "/e/", res{"/", nil, nil}},
		// More values than a small buffer.
		{"GET", "/deep/1/2/3/4/5/6/7/8/9/10", res{"GET /deep/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}/{j}",
			[]string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"},
			[]string{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10"}}},
		// Pattern literals are unescaped, request paths are not.
		{"GET", "/esc aped/x", res{"/esc%20aped/x", nil, nil}},
		{"GET", "/esc%20aped/x", res{"/", nil, nil}},
		// Case-sensitive.
		{"GET", "/S/", res{"/", nil, nil}},
		// Root.
		{"GET", "/", res{"/", nil, nil}},
		{"OPTIONS", "/anything/at/all/", res{"/", nil, nil}},
	}
	for _, tt := range tests {
		var buf [4]string
		v, names, values, ok := m.match(tt.method, tt.path, buf[:0])
		if !ok {
			t.Errorf("match(%q, %q): no match, want %q", tt.method, tt.path, tt.want.pattern)
			continue
		}
		if v != tt.want.pattern || !slices.Equal(names, tt.want.names) || !slices.Equal(values, tt.want.values) {
			t.Errorf("match(%q, %q) = %q %q %q, want %q %q %q", tt.method, tt.path,
				v, names, values, tt.want.pattern, tt.want.names, tt.want.values)
		}
	}
}

func TestMuxNoMatch(t *testing.T) {
	m := newTestMux(t, "GET /only", "/x/{y}", "/d/{$}", "PUT /p/")
	for _, tt := range []struct{ method, path string }{
		{"POST", "/only"},
		{"GET", "/only/"},
		{"GET", "/onl"},
		{"GET", "/x"},
		{"GET", "/x/"},   // {y} does not match an empty segment
		{"GET", "/x/a/"}, // nor a trailing slash
		{"GET", "/x/a/b"},
		{"GET", "/d"},
		{"GET", "/d/e"},
		{"GET", "/p/a"},
		{"GET", "/"},
		{"GET", ""},
		{"GET", "only"},
		{"GET", "x/a"},
		{"GET", "//x"},
	} {
		if v, names, values, ok := m.match(tt.method, tt.path, nil); ok || v != "" || names != nil || values != nil {
			t.Errorf("match(%q, %q) = %q %q %q %v, want no match", tt.method, tt.path, v, names, values, ok)
		}
	}
	var empty mux[int]
	if _, _, _, ok := empty.match("GET", "/", nil); ok {
		t.Error("empty mux matched")
	}
}

func TestMuxAddConflicts(t *testing.T) {
	tests := []struct {
		existing []string
		pattern  string
		want     string // "" for no error, else substrings separated by "|"
	}{
		{[]string{"/a/b/{y}"}, "/a/{x}/c",
			`pattern "/a/{x}/c" conflicts with "/a/b/{y}": both match "/a/b/c", and neither is more specific: only the first matches "/a/x/c", only the second "/a/b/y"`},
		{[]string{"GET /v1/y/{b}"}, "GET /v1/{a}/x", `pattern "GET /v1/{a}/x" conflicts with "GET /v1/y/{b}": both match "GET /v1/y/x"`},
		{[]string{"GET /x"}, "GET /x", `pattern "GET /x" conflicts with "GET /x": both match "GET /x" (they match the same requests)`},
		{[]string{"/x"}, "* /x", `pattern "* /x" conflicts with "/x": both match "/x" (they match the same requests)`},
		{[]string{"/{a}"}, "/{b}", `pattern "/{b}" conflicts with "/{a}": both match "/a" (they match the same requests)`},
		{[]string{"/a/"}, "/a/{x...}", `conflicts with "/a/"`},
		{[]string{"/a/{$}", "/a/{x}"}, "/a/{y}/{$}", ""},
		{[]string{"/a/b"}, "GET /a/{x}", `pattern "GET /a/{x}" conflicts with "/a/b": both match "GET /a/b", and the first matches fewer methods but has a more general path`},
		{[]string{"GET /a/{x}"}, "/a/b", `pattern "/a/b" conflicts with "GET /a/{x}": both match "GET /a/b", and the first matches more methods but has a more specific path`},
		{[]string{"/v1/admin/"}, "GET /v1/{kind}/status", `both match "GET /v1/admin/status"`},
		{[]string{"/{a}/{c}/z"}, "/q/{b...}", `both match "/q/c/z"`},
		{[]string{"GET /{a}"}, "/{b}", ""},
		{[]string{"/{b}"}, "GET /{a}", ""},
		{[]string{"GET /x"}, "HEAD /x", ""},
		{[]string{"GET /x"}, "POST /x", ""},
		{[]string{"HEAD /x/{a}"}, "GET /x/b", `both match "HEAD /x/b"`},
		{[]string{"/"}, "/{$}", ""},
		{[]string{"/"}, "/{x...}", `conflicts with "/"`},
		{[]string{"/v1/workspaces/{workspace}/projects/{project}"}, "/v1/workspaces/{workspace}/projects/new", ""},
		{[]string{"/a/{x}"}, "/a/{x}/", ""},
	}
	for _, tt := range tests {
		m := newTestMux(t, tt.existing...)
		err := m.add(tt.pattern, tt.pattern)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%q after %q: %v", tt.pattern, tt.existing, err)
		case tt.want != "" && err == nil:
			t.Errorf("%q after %q: no error, want a conflict", tt.pattern, tt.existing)
		case err != nil:
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%q after %q:\n got %v\nwant %s", tt.pattern, tt.existing, err, tt.want)
			}
			if got := m.patterns(); !slices.Equal(got, tt.existing) {
				t.Errorf("patterns after failed add = %q, want %q", got, tt.existing)
			}
		}
	}
}

func TestMuxAddSyntaxErrors(t *testing.T) {
	for _, p := range []string{
		"",
		"x",
		"x/",
		"GET",
		"GET x",
		"GET ",
		" /x",
		"\t/x",
		"G@T /x",
		"GÉT /x",
		"example.com/x",
		"GET example.com/x",
		"{a}/x",
		"/{",
		"/{a",
		"/{}",
		"/{...}",
		"/{$...}",
		"/a{b}",
		"/{a}b",
		"/{a...}/b",
		"/{a...}/",
		"/{$}/x",
		"/{$}/",
		"/{1a}",
		"/{a-b}",
		"/{a b}",
		"/{a}}",
		"/{a}/{a}",
		"/{a}/{a...}",
		"/a//b",
		"//",
		"/a/./b",
		"/..",
		"/%2e%2E",
		"/a%2Fb",
		"/a b",
	} {
		m := newTestMux(t, "/ok")
		err := m.add(p, p)
		if err == nil {
			t.Errorf("add(%q): no error", p)
			continue
		}
		if !strings.HasPrefix(err.Error(), "invalid pattern ") {
			t.Errorf("add(%q): %v", p, err)
		}
		if got := m.patterns(); !slices.Equal(got, []string{"/ok"}) {
			t.Errorf("patterns after failed add = %q", got)
		}
	}
	// Valid edge cases.
	newTestMux(t, "GET\t/tab", "GET    /spaces", "/_é9/{ü_1}", "/a}", "/%zz", "OPTIONS /o/{x...}", "/{$}")
}

func TestMuxNoAllocs(t *testing.T) {
	m := newTestMux(t, benchPatterns(1000)...)
	paths := benchPaths(m)
	var buf [8]string
	for _, path := range paths[:50] {
		allocs := testing.AllocsPerRun(20, func() {
			if _, _, _, ok := m.match("GET", path, buf[:0]); !ok {
				panic("no match for " + path)
			}
		})
		if allocs != 0 {
			t.Errorf("match(%q): %v allocs, want 0", path, allocs)
		}
	}
}

// servesAlone reports whether a mux holding only pattern matches method and
// path.
func servesAlone(t testing.TB, pattern, method, path string) bool {
	t.Helper()
	m := newTestMux(t, pattern)
	v, _, _, ok := m.match(method, path, nil)
	return ok && v == pattern
}

// checkExamples checks the example requests of a conflict message (and of
// a more specific pattern) for two patterns that are not disjoint: the
// common path matches both, and each difference path matches only the more
// general pattern.
func checkExamples(t testing.TB, p1, p2 *muxPattern) {
	t.Helper()
	if p1.comparePathsAndMethods(p2) == relDisjoint {
		return
	}
	method := commonMuxMethod(p1, p2)
	if method == "" {
		method = "GET"
	}
	common := commonMuxPath(p1, p2)
	if !servesAlone(t, p1.str, method, common) || !servesAlone(t, p2.str, method, common) {
		t.Errorf("common path %q of %q and %q does not match both", common, p1.str, p2.str)
	}
	prel := p1.comparePaths(p2)
	if prel == relMoreGeneral || prel == relOverlaps {
		if d := differenceMuxPath(p1, p2); !servesAlone(t, p1.str, method, d) || servesAlone(t, p2.str, method, d) {
			t.Errorf("difference path %q does not match only %q of %q and %q (%v)", d, p1.str, p1.str, p2.str, prel)
		}
	}
	if prel == relMoreSpecific || prel == relOverlaps {
		if d := differenceMuxPath(p2, p1); !servesAlone(t, p2.str, method, d) || servesAlone(t, p1.str, method, d) {
			t.Errorf("difference path %q does not match only %q of %q and %q (%v)", d, p2.str, p1.str, p2.str, prel)
		}
	}
}

// deploPatterns is a deplo-like route table.
var deploPatterns = []string{
	"/",
	"GET /healthz",
	"GET /v1/me",
	"GET /v1/workspaces",
	"POST /v1/workspaces",
	"GET /v1/workspaces/{workspace}",
	"PATCH /v1/workspaces/{workspace}",
	"DELETE /v1/workspaces/{workspace}",
	"GET /v1/workspaces/{workspace}/projects",
	"POST /v1/workspaces/{workspace}/projects",
	"GET /v1/workspaces/{workspace}/projects/new",
	"GET /v1/workspaces/{workspace}/projects/{project}",
	"DELETE /v1/workspaces/{workspace}/projects/{project}",
	"GET /v1/workspaces/{workspace}/projects/{project}/deployments",
	"POST /v1/workspaces/{workspace}/projects/{project}/deployments",
	"GET /v1/workspaces/{workspace}/projects/{project}/deployments/{id}",
	"GET /v1/workspaces/{workspace}/projects/{project}/logs/{rest...}",
	"/v1/workspaces/{workspace}/projects/{project}/files/",
	"GET /v1/workspaces/{workspace}/members/{$}",
	"/v1/admin/",
	"GET /v1/admin/{$}",
	"/static/{file...}",
	"GET /docs/{$}",
	"HEAD /v1/workspaces/{workspace}/projects/{project}/files/{name}",
}

// serveMuxResult asks a real http.ServeMux holding the same patterns (each
// handler recording its pattern and wildcard values) what it routes method
// and path to. skip reports a redirect, which mux does not do.
func serveMuxResult(sm *http.ServeMux, names map[string][]string, method, path string) (pattern string, values []string, skip bool) {
	req := httptest.NewRequest(method, path, nil)
	rec := httptest.NewRecorder()
	sm.ServeHTTP(rec, req)
	switch rec.Code {
	case http.StatusOK:
		pattern = rec.Header().Get("X-Pattern")
		for _, n := range names[pattern] {
			values = append(values, rec.Header().Get("X-Value-"+n))
		}
		return pattern, values, false
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		return "", nil, false
	}
	return "", nil, true
}

// addBoth adds pattern to m and to sm, and reports whether m accepted it and
// whether sm did (it panics on a conflict).
func addBoth(m *mux[string], sm *http.ServeMux, names map[string][]string, pattern string) (muxOK, serveMuxOK bool) {
	muxOK = m.add(pattern, pattern) == nil
	func() {
		defer func() {
			if recover() != nil {
				serveMuxOK = false
			}
		}()
		sm.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Pattern", r.Pattern)
			for _, n := range names[r.Pattern] {
				w.Header().Set("X-Value-"+n, r.PathValue(n))
			}
		})
		serveMuxOK = true
	}()
	if muxOK {
		p, _ := parseMuxPattern(pattern)
		names[pattern] = p.names
	}
	return muxOK, serveMuxOK
}

// compareWithServeMux checks that m and sm route method and path alike.
func compareWithServeMux(t *testing.T, m *mux[string], sm *http.ServeMux, names map[string][]string, method, path string) (compared bool) {
	t.Helper()
	want, wantValues, skip := serveMuxResult(sm, names, method, path)
	if skip {
		return false
	}
	var buf [8]string
	got, _, gotValues, ok := m.match(method, path, buf[:0])
	if ok != (want != "") || got != want || !slices.Equal(gotValues, wantValues) {
		t.Errorf("match(%q, %q) = %q %q, ServeMux chooses %q %q", method, path, got, gotValues, want, wantValues)
	}
	return true
}

func TestMuxAgainstServeMuxDeplo(t *testing.T) {
	m := &mux[string]{}
	sm := http.NewServeMux()
	names := map[string][]string{}
	segs := map[string]bool{"w1": true, "p1": true, "x": true, "new2": true, "a.txt": true}
	for _, p := range deploPatterns {
		if muxOK, smOK := addBoth(m, sm, names, p); !muxOK || !smOK {
			t.Fatalf("add(%q): mux %v, ServeMux %v", p, muxOK, smOK)
		}
		_, path, _ := strings.Cut(p, "/")
		for s := range strings.SplitSeq(path, "/") {
			if s != "" && !strings.HasPrefix(s, "{") {
				segs[s] = true
			}
		}
	}
	pool := make([]string, 0, len(segs))
	for s := range segs {
		pool = append(pool, s)
	}
	slices.Sort(pool)
	methods := []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "BREW"}
	rng := rand.New(rand.NewPCG(1, 2))
	compared, matched := 0, 0
	for range 20000 {
		var b strings.Builder
		randomSeg := func() {
			b.WriteByte('/')
			b.WriteString(pool[rng.IntN(len(pool))])
		}
		if rng.IntN(2) == 0 {
			// Random segments.
			if rng.IntN(3) > 0 {
				b.WriteString("/v1/workspaces")
			}
			for range rng.IntN(7) {
				randomSeg()
			}
			if b.Len() == 0 || rng.IntN(4) == 0 {
				b.WriteByte('/')
			}
		} else {
			// A path built from a pattern, sometimes altered.
			p, _ := parseMuxPattern(deploPatterns[rng.IntN(len(deploPatterns))])
			for _, s := range p.segments {
				switch {
				case s.multi:
					b.WriteByte('/')
					for i := range rng.IntN(3) {
						if i > 0 {
							b.WriteByte('/')
						}
						b.WriteString(pool[rng.IntN(len(pool))])
					}
				case s.wild || rng.IntN(10) == 0:
					randomSeg()
				case s.s == "/":
					b.WriteByte('/')
				default:
					b.WriteString("/" + s.s)
				}
			}
			switch rng.IntN(10) {
			case 0:
				randomSeg()
			case 1:
				if !strings.HasSuffix(b.String(), "/") {
					b.WriteByte('/')
				}
			}
		}
		method, path := methods[rng.IntN(len(methods))], b.String()
		if compareWithServeMux(t, m, sm, names, method, path) {
			compared++
			if v, _, _, _ := m.match(method, path, nil); v != "/" {
				matched++
			}
		}
	}
	t.Logf("%d paths compared, %d matching other than /", compared, matched)
	if compared < 15000 || matched < 4000 {
		t.Errorf("only %d paths compared, %d matching other than /", compared, matched)
	}
}

// TestMuxAgainstServeMuxRandom compares random pattern sets over a small
// alphabet, where conflicts are frequent, with http.ServeMux: the same
// patterns must be rejected, and the same pattern chosen for every path.
func TestMuxAgainstServeMuxRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	methods := []string{"", "", "GET ", "HEAD ", "POST "}
	lits := []string{"a", "b"}
	endings := []string{"", "", "/", "/{$}", "/{r...}"}
	reqMethods := []string{"GET", "HEAD", "POST", "PUT"}
	accepted, rejected, compared := 0, 0, 0
	for range 400 {
		m := &mux[string]{}
		sm := http.NewServeMux()
		names := map[string][]string{}
		var pats []*muxPattern
		for range 12 {
			var b strings.Builder
			b.WriteString(methods[rng.IntN(len(methods))])
			for i := range rng.IntN(4) {
				if rng.IntN(3) == 0 {
					fmt.Fprintf(&b, "/{w%d}", i)
				} else {
					b.WriteString("/" + lits[rng.IntN(len(lits))])
				}
			}
			b.WriteString(endings[rng.IntN(len(endings))])
			p := b.String()
			if !strings.Contains(p, "/") {
				p += "/"
			}
			muxOK, smOK := addBoth(m, sm, names, p)
			if muxOK != smOK {
				err := m.add(p, p)
				t.Fatalf("add(%q) after %q: mux accepted %v (%v), ServeMux %v", p, m.patterns(), muxOK, err, smOK)
			}
			if parsed, err := parseMuxPattern(p); err != nil {
				t.Fatalf("parse %q: %v", p, err)
			} else {
				for _, q := range pats {
					checkExamples(t, parsed, q)
				}
				if muxOK {
					pats = append(pats, parsed)
				}
			}
			if muxOK {
				accepted++
			} else {
				rejected++
			}
		}
		for range 40 {
			var b strings.Builder
			for range rng.IntN(5) {
				b.WriteString("/" + []string{"a", "b", "c"}[rng.IntN(3)])
			}
			if b.Len() == 0 || rng.IntN(2) == 0 {
				b.WriteByte('/')
			}
			if compareWithServeMux(t, m, sm, names, reqMethods[rng.IntN(len(reqMethods))], b.String()) {
				compared++
			}
		}
	}
	t.Logf("%d patterns accepted, %d rejected, %d paths compared", accepted, rejected, compared)
	if accepted < 1000 || rejected < 1000 || compared < 5000 {
		t.Errorf("too few cases: %d patterns accepted, %d rejected, %d paths compared", accepted, rejected, compared)
	}
}

func TestMuxPatternsAndValuesOwnership(t *testing.T) {
	m := newTestMux(t, "/a/{x}", "GET /b/{y}/{z...}")
	if got, want := m.patterns(), []string{"/a/{x}", "GET /b/{y}/{z...}"}; !slices.Equal(got, want) {
		t.Errorf("patterns() = %q, want %q", got, want)
	}
	buf := []string{"stale", "stale", "stale"}
	_, names, values, ok := m.match("GET", "/b/1/2/3", buf)
	if !ok || !slices.Equal(names, []string{"y", "z"}) || !slices.Equal(values, []string{"1", "2/3"}) || &values[0] != &buf[0] {
		t.Errorf("match = %q %q %v (values not in dst?)", names, values, ok)
	}
	// A failed branch must not leave its values behind.
	m2 := newTestMux(t, "/{a}/x/z", "/{c}/{d}/y")
	m3 := newTestMux(t, "/p/{e}/z", "/{f}/q/y")
	for _, tt := range []struct {
		m                  *mux[string]
		path, want, values string
	}{
		{m2, "/1/x/z", "/{a}/x/z", "1"},
		{m2, "/1/x/y", "/{c}/{d}/y", "1 x"},
		{m3, "/p/q/z", "/p/{e}/z", "q"},
		{m3, "/p/q/y", "/{f}/q/y", "p"},
	} {
		if v, _, values, _ := tt.m.match("GET", tt.path, buf[:0]); v != tt.want || strings.Join(values, " ") != tt.values {
			t.Errorf("match(%q) = %q %q, want %q %q", tt.path, v, values, tt.want, tt.values)
		}
	}
}

// benchPatterns returns n realistic API patterns.
func benchPatterns(n int) []string {
	ps := []string{
		"/",
		"GET /healthz",
		"GET /v1/workspaces/{workspace}/projects/new",
		"GET /v1/workspaces/{workspace}/projects/{project}",
		"/v1/workspaces/{workspace}/projects/{project}/files/",
	}
	for i := 0; len(ps) < n; i++ {
		r := fmt.Sprintf("res%d", i)
		ps = append(ps,
			"GET /v1/workspaces/{workspace}/projects/{project}/"+r,
			"POST /v1/workspaces/{workspace}/projects/{project}/"+r,
			"GET /v1/workspaces/{workspace}/projects/{project}/"+r+"/{id}",
			"DELETE /v1/workspaces/{workspace}/projects/{project}/"+r+"/{id}",
			"GET /v1/workspaces/{workspace}/"+r,
			"/v1/"+r+"/{path...}",
			"GET /v1/static/"+r+"/{$}",
		)
	}
	return ps[:n]
}

// benchPaths returns a path matching each pattern of m.
func benchPaths(m *mux[string]) []string {
	var paths []string
	for _, p := range m.pats {
		var b strings.Builder
		for _, s := range p.segments {
			b.WriteByte('/')
			switch {
			case s.multi && s.s != "":
				b.WriteString("some/file.txt")
			case s.wild && !s.multi:
				b.WriteString(s.s + "-0123456789")
			case !s.wild && s.s != "/":
				b.WriteString(s.s)
			}
		}
		paths = append(paths, b.String())
	}
	return paths
}

func BenchmarkMuxMatch(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			m := newTestMux(b, benchPatterns(n)...)
			paths := benchPaths(m)
			// Interleave the paths so that consecutive matches take
			// different branches.
			rand.New(rand.NewPCG(5, 6)).Shuffle(len(paths), func(i, j int) { paths[i], paths[j] = paths[j], paths[i] })
			var buf [8]string
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, _, _, ok := m.match("GET", paths[i], buf[:0]); !ok {
					b.Fatalf("no match for %q", paths[i])
				}
				if i++; i == len(paths) {
					i = 0
				}
			}
		})
	}
}
