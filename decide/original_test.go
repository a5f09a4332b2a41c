package decide

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/deplo-sh/deplo-auth/policy"
)

func TestOriginalOf(t *testing.T) {
	const deploy = "/v1/workspaces/ws_acme/projects/p1/deployments"
	want := Original{Method: "POST", Path: deploy, EscapedPath: deploy}
	encoded := Original{Method: "GET", Path: "/v1/a/b c", RawPath: "/v1/a%2Fb%20c", EscapedPath: "/v1/a%2Fb%20c"}
	tests := []struct {
		name           string
		src            Source
		h              http.Header
		method, target string
		prefix         string
		want           Original
		ok             bool
	}{
		// forwarded: Traefik ForwardAuth, Caddy forward_auth
		{"forwarded", SourceForwarded, http.Header{"X-Forwarded-Method": {"POST"}, "X-Forwarded-Uri": {deploy + "?x=1"}}, "GET", "/verify", "", want, true},
		{"forwarded escaped path", SourceForwarded, http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/v1/a%2Fb%20c"}}, "GET", "/", "", encoded, true},
		{"forwarded without method", SourceForwarded, http.Header{"X-Forwarded-Uri": {deploy}}, "GET", "/", "", Original{}, false},
		{"forwarded without uri", SourceForwarded, http.Header{"X-Forwarded-Method": {"POST"}}, "GET", "/", "", Original{}, false},
		{"forwarded twice", SourceForwarded, http.Header{"X-Forwarded-Method": {"POST"}, "X-Forwarded-Uri": {deploy, "/healthz"}}, "GET", "/", "", Original{}, false},
		{"forwarded empty method", SourceForwarded, http.Header{"X-Forwarded-Method": {""}, "X-Forwarded-Uri": {deploy}}, "GET", "/", "", Original{}, false},
		{"forwarded method not a token", SourceForwarded, http.Header{"X-Forwarded-Method": {"PO ST"}, "X-Forwarded-Uri": {deploy}}, "GET", "/", "", Original{}, false},
		{"forwarded absolute uri", SourceForwarded, http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"http://x" + deploy}}, "GET", "/", "", Original{}, false},
		{"forwarded relative uri", SourceForwarded, http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"v1/x"}}, "GET", "/", "", Original{}, false},
		{"forwarded fragment", SourceForwarded, http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/healthz#x"}}, "GET", "/", "", Original{}, false},
		{"forwarded bad escape", SourceForwarded, http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/v1/%zz"}}, "GET", "/", "", Original{}, false},
		{"forwarded control char", SourceForwarded, http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/v1/\x00"}}, "GET", "/", "", Original{}, false},
		{"forwarded ignores the original headers", SourceForwarded, http.Header{"X-Forwarded-Method": {"POST"}, "X-Forwarded-Uri": {deploy}, "X-Original-Method": {"GET"}, "X-Original-Uri": {"/healthz"}}, "GET", "/", "", want, true},

		// original: nginx auth_request, ingress-nginx auth-url
		{"original uri", SourceOriginal, http.Header{"X-Original-Method": {"POST"}, "X-Original-Uri": {deploy + "?a=b"}}, "GET", "/auth", "", want, true},
		{"original url", SourceOriginal, http.Header{"X-Original-Method": {"POST"}, "X-Original-Url": {"https://api.deplo.sh" + deploy + "?a=b"}}, "GET", "/auth", "", want, true},
		{"original url without path", SourceOriginal, http.Header{"X-Original-Method": {"GET"}, "X-Original-Url": {"https://api.deplo.sh"}}, "GET", "/", "", Original{Method: "GET", Path: "/", EscapedPath: "/"}, true},
		{"original both agree", SourceOriginal, http.Header{"X-Original-Method": {"POST"}, "X-Original-Uri": {deploy + "?a=b"}, "X-Original-Url": {"http://h:8080" + deploy + "?a=b"}}, "GET", "/", "", want, true},
		{"original both differ in path", SourceOriginal, http.Header{"X-Original-Method": {"POST"}, "X-Original-Uri": {deploy}, "X-Original-Url": {"http://h/healthz"}}, "GET", "/", "", Original{}, false},
		{"original both differ in query", SourceOriginal, http.Header{"X-Original-Method": {"POST"}, "X-Original-Uri": {deploy + "?a=b"}, "X-Original-Url": {"http://h" + deploy + "?a=c"}}, "GET", "/", "", Original{}, false},
		{"original both differ in escaping", SourceOriginal, http.Header{"X-Original-Method": {"GET"}, "X-Original-Uri": {"/v1/a%2Fb"}, "X-Original-Url": {"http://h/v1/a/b"}}, "GET", "/", "", Original{}, false},
		{"original without method", SourceOriginal, http.Header{"X-Original-Uri": {deploy}}, "POST", "/", "", Original{}, false},
		{"original without uri or url", SourceOriginal, http.Header{"X-Original-Method": {"POST"}}, "POST", deploy, "", Original{}, false},
		{"original url not absolute", SourceOriginal, http.Header{"X-Original-Method": {"POST"}, "X-Original-Url": {deploy}}, "GET", "/", "", Original{}, false},
		{"original url other scheme", SourceOriginal, http.Header{"X-Original-Method": {"GET"}, "X-Original-Url": {"file:///etc/passwd"}}, "GET", "/", "", Original{}, false},
		{"original url with user", SourceOriginal, http.Header{"X-Original-Method": {"GET"}, "X-Original-Url": {"http://u:p@h/healthz"}}, "GET", "/", "", Original{}, false},
		{"original uri twice", SourceOriginal, http.Header{"X-Original-Method": {"GET"}, "X-Original-Uri": {"/healthz", deploy}}, "GET", "/", "", Original{}, false},
		{"original ignores the forwarded headers", SourceOriginal, http.Header{"X-Original-Method": {"POST"}, "X-Original-Uri": {deploy}, "X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/healthz"}}, "GET", "/", "", want, true},

		// auto
		{"auto forwarded", SourceAuto, http.Header{"X-Forwarded-Method": {"POST"}, "X-Forwarded-Uri": {deploy}}, "GET", "/", "", want, true},
		{"auto original", SourceAuto, http.Header{"X-Original-Method": {"POST"}, "X-Original-Uri": {deploy}}, "GET", "/", "", want, true},
		{"auto half forwarded", SourceAuto, http.Header{"X-Forwarded-Uri": {deploy}, "X-Original-Method": {"POST"}, "X-Original-Uri": {deploy}}, "GET", "/", "", Original{}, false},
		{"auto both agree", SourceAuto, http.Header{"X-Forwarded-Method": {"POST"}, "X-Forwarded-Uri": {deploy}, "X-Original-Method": {"POST"}, "X-Original-Uri": {deploy}}, "GET", "/", "", want, true},
		{"auto client-sent forwarded beside nginx's original", SourceAuto, http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/healthz"}, "X-Original-Method": {"POST"}, "X-Original-Uri": {deploy}}, "GET", "/", "", Original{}, false},
		{"auto client-sent original beside caddy's forwarded", SourceAuto, http.Header{"X-Forwarded-Method": {"POST"}, "X-Forwarded-Uri": {deploy}, "X-Original-Url": {"http://h/healthz"}}, "GET", "/", "", Original{}, false},
		{"auto nothing", SourceAuto, http.Header{}, "POST", deploy, "", Original{}, false},

		// envoy: own method, path less the prefix
		{"envoy", SourceEnvoy, http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/healthz"}}, "POST", "/deplo-verify" + deploy + "?a=b", "/deplo-verify", want, true},
		{"envoy root", SourceEnvoy, nil, "GET", "/deplo-verify/", "/deplo-verify", Original{Method: "GET", Path: "/", EscapedPath: "/"}, true},
		{"envoy escaped", SourceEnvoy, nil, "GET", "/x/v1/a%2Fb%20c", "/x", encoded, true},
		{"envoy without prefix", SourceEnvoy, nil, "POST", deploy, "/deplo-verify", Original{}, false},
		{"envoy prefix alone", SourceEnvoy, nil, "POST", "/deplo-verify", "/deplo-verify", Original{}, false},
		{"envoy prefix look-alike", SourceEnvoy, nil, "POST", "/deplo-verifyx/v1", "/deplo-verify", Original{}, false},
		{"envoy no prefix configured", SourceEnvoy, nil, "POST", deploy, "", Original{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := OriginalOf(tt.src, tt.h, tt.method, tt.target, tt.prefix)
			if (err == nil) != tt.ok {
				t.Fatalf("OriginalOf() = %+v, %v; want ok=%v", got, err, tt.ok)
			}
			if err != nil {
				if !errors.Is(err, ErrNoOriginal) {
					t.Errorf("error %v does not wrap ErrNoOriginal", err)
				}
				return
			}
			if got != tt.want {
				t.Errorf("OriginalOf() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseSource(t *testing.T) {
	for in, want := range map[string]Source{"": SourceAuto, "auto": SourceAuto, "forwarded": SourceForwarded, "original": SourceOriginal, "envoy": SourceEnvoy} {
		if got, ok := ParseSource(in); !ok || got != want {
			t.Errorf("ParseSource(%q) = %v, %v", in, got, ok)
		}
	}
	for _, bad := range []string{"Auto", "traefik", "nginx", " original"} {
		if _, ok := ParseSource(bad); ok {
			t.Errorf("ParseSource(%q) accepted", bad)
		}
	}
}

// FuzzOriginalOf: whatever a caller sends, OriginalOf either refuses with
// ErrNoOriginal or returns a token method and a path that starts with "/"
// and is what its escaped forms unescape to — the form Decide checks and an
// upstream routes by.
func FuzzOriginalOf(f *testing.F) {
	f.Add(uint8(0), "POST", "/v1/a%2Fb?x=y", "GET", "http://h/v1/a%2Fb?x=y", "/p/v1")
	f.Add(uint8(1), "GET", "/healthz", "PUT", "", "/")
	f.Add(uint8(2), "DELETE", "/v1/../x", "GET", "https://h", "")
	f.Add(uint8(3), "GET", "/%zz", "GET", "http://u@h/", "/p/x")
	f.Fuzz(func(t *testing.T, src uint8, m, uri, own, u, target string) {
		h := http.Header{}
		switch src % 4 {
		case 0, 1:
			h["X-Forwarded-Method"], h["X-Forwarded-Uri"] = []string{m}, []string{uri}
		}
		if src%3 != 0 {
			h["X-Original-Method"], h["X-Original-Uri"] = []string{m}, []string{uri}
		}
		if u != "" {
			h["X-Original-Url"] = []string{u}
		}
		o, err := OriginalOf(Source(src%4), h, own, target, "/p")
		if err != nil {
			if !errors.Is(err, ErrNoOriginal) {
				t.Fatalf("error %v does not wrap ErrNoOriginal", err)
			}
			if strings.Contains(err.Error(), uri) && uri != "" && len(uri) > 3 {
				t.Fatalf("error %q quotes the client's URI", err)
			}
			return
		}
		if !validMethod(o.Method) {
			t.Fatalf("method %q is not a token", o.Method)
		}
		unescaped, perr := url.PathUnescape(o.EscapedPath)
		if perr != nil || unescaped != o.Path || !strings.HasPrefix(o.Path, "/") {
			t.Fatalf("%+v: the escaped path unescapes to %q (%v)", o, unescaped, perr)
		}
		if o.RawPath != "" {
			if raw, err := url.PathUnescape(o.RawPath); err != nil || raw != o.Path {
				t.Fatalf("%+v: RawPath unescapes to %q (%v)", o, raw, err)
			}
		}
	})
}

// TestPlainOriginForm: the fast path takes the plain targets proxies send
// and leaves every other one — escapes, dot and empty segments, ';',
// bytes url.URL would escape, control bytes, fragments, non-ASCII — to the
// url.ParseRequestURI path.
func TestPlainOriginForm(t *testing.T) {
	const projects = "/v1/workspaces/ws_acme/projects"
	taken := []struct{ uri, path, query string }{
		{projects, projects, ""},
		{projects + "?x=1", projects, "x=1"},
		{projects + "/", projects + "/", ""},
		{"/", "/", ""},
		{"/?", "/", ""},
		{"/a??", "/a", "?"},
		{"/a?b?c", "/a", "b?c"},
		{"/a?q=%2F..%2F&r=/../", "/a", "q=%2F..%2F&r=/../"},
		{"/a.b/.c/..d/c..", "/a.b/.c/..d/c..", ""},
		{"/v1/a:b@c$d&e+f,g=h~i_j-k", "/v1/a:b@c$d&e+f,g=h~i_j-k", ""},
	}
	for _, tt := range taken {
		path, query, ok := plainOriginForm(tt.uri)
		if !ok || path != tt.path || query != tt.query {
			t.Errorf("plainOriginForm(%q) = %q, %q, %v; want %q, %q, true", tt.uri, path, query, ok, tt.path, tt.query)
		}
	}
	left := []string{
		"", "v1/x", "*", "http://h/v1", "//h/v1", "/v1//x", projects + "//",
		"/.", "/..", "/./v1", "/../v1", "/v1/.", "/v1/..", "/v1/./x", "/v1/../x", "/v1/../x?y",
		"/v1/%2e%2e/x", "/v1/a%2Fb", "/v1/%252F", "/v1/%zz", "/v1/%",
		"/v1;x", "/v1/a;b=c", "/v1\\x", "/v1/(x)", "/v1/a!b", "/v1/a*b", "/v1/a'b", "/v1/[::1]", "/v1/a\"b", "/v1/a<b>", "/v1/a|b",
		"/v1/\u00e9", "/v1/x?\u00e9", "/v1/\xff",
		"/v1/a b", "/v1/a\x00", "/v1/a\x7f", "/v1/a\tb", "/v1?a b", "/v1?a\x00", "/v1?\x7f",
		"/v1#frag", "/v1?x#frag",
	}
	for _, uri := range left {
		if path, query, ok := plainOriginForm(uri); ok {
			t.Errorf("plainOriginForm(%q) took it: %q, %q", uri, path, query)
		}
	}
}

// TestOriginalPathRefusals: a traversal, an encoded slash or another
// non-canonical path named by a proxy is refused — by OriginalOf or by
// Decide's path check — under every way of naming it, even with an admin
// token, while the canonical path itself passes (so that the table would
// fail if any of them got through).
func TestOriginalPathRefusals(t *testing.T) {
	f := newFixture(t, nil)
	const canonical = "/v1/workspaces/ws_acme/projects/web"
	refused := []string{
		"/v1/workspaces/ws_other/../ws_acme/projects/web",
		"/v1/workspaces/ws_acme/projects/web/x/..",
		"/v1/workspaces/ws_acme/projects/./web",
		"/v1/workspaces/ws_acme/projects/web/.",
		"/v1/workspaces//ws_acme/projects/web",
		"//v1/workspaces/ws_acme/projects/web",
		"/v1/workspaces/ws_acme/projects/web%2F..%2F..%2Fws_other",
		"/v1/workspaces/ws_acme/projects/web%2f",
		"/v1/workspaces/ws_acme/projects/%2e%2e/web",
		"/v1/workspaces/ws_acme/projects/web%252F..",
		"/v1/workspaces/ws_acme/projects/web%5C..",
		"/v1/workspaces/ws_acme/projects/web;x=..",
		"/v1/workspaces/ws_acme/projects/web\\..\\x",
		"/v1/workspaces/ws_acme/projects/web%00",
		"/v1/workspaces/ws_acme/projects/web\x00",
		"/v1/workspaces/ws_acme/projects/web#x",
		"v1/workspaces/ws_acme/projects/web",
	}
	named := map[string]func(uri string) (Source, http.Header, string){
		"X-Forwarded-Uri": func(uri string) (Source, http.Header, string) {
			return SourceForwarded, http.Header{HeaderForwardedMethod: {"DELETE"}, HeaderForwardedURI: {uri}}, "/verify"
		},
		"X-Original-Uri": func(uri string) (Source, http.Header, string) {
			return SourceOriginal, http.Header{HeaderOriginalMethod: {"DELETE"}, HeaderOriginalURI: {uri}}, "/auth"
		},
		"X-Original-Url": func(uri string) (Source, http.Header, string) {
			if strings.HasPrefix(uri, "/") { // else as it is: "https://api.deplo.shv1/…" would be another host's path
				uri = "https://api.deplo.sh" + uri
			}
			return SourceOriginal, http.Header{HeaderOriginalMethod: {"DELETE"}, HeaderOriginalURL: {uri}}, "/auth"
		},
		"envoy": func(uri string) (Source, http.Header, string) { return SourceEnvoy, nil, "/p" + uri },
	}
	decide := func(name, uri string) *Refusal {
		src, h, target := named[name](uri)
		o, err := OriginalOf(src, h, "DELETE", target, "/p")
		if err != nil {
			return RefuseBadOriginal
		}
		out := f.engine.Decide(context.Background(), &Request{Method: o.Method, Path: o.Path, RawPath: o.RawPath,
			Authorization: f.bearer("admin"), Client: "198.51.100.7", Now: testNow})
		return out.Refusal
	}
	for name := range named {
		if r := decide(name, canonical); r != nil {
			t.Fatalf("%s: the canonical path is refused: %s", name, describe(r))
		}
		if r := decide(name, canonical+"?x=1"); r != nil {
			t.Fatalf("%s: the canonical path with a query is refused: %s", name, describe(r))
		}
		for _, uri := range refused {
			if r := decide(name, uri); r != RefuseBadPath && r != RefuseBadOriginal {
				t.Errorf("%s %q: %s, want refused for its path", name, uri, describe(r))
			}
		}
	}
}

// FuzzPlainOriginForm: whatever the target, parseOriginal gives what the
// url.ParseRequestURI path (parseURI) gives, refusals and their text
// included; a target the fast path takes is one parseURI accepts with that
// very path and query, no RawPath, and a path Decide's check passes.
func FuzzPlainOriginForm(f *testing.F) {
	for _, uri := range []string{
		"/v1/workspaces/ws_acme/projects?x=1", "/", "/?", "/??", "/a?", "/a??b", "/a?b?", "?", "?x", "",
		"/v1/%2e%2e/x", "/v1/%2E./x", "/v1/a%2Fb", "/v1/a%2fb", "/v1/%252F", "/v1/%", "/v1/%z", "/v1/%zz", "/v1?%zz",
		"//", "//h/x", "///x", "/a//b", "/./", "/../", "/a/.", "/a/..", "/a/./b", "/a/../b", "/.a/..b/...", "/a/.?x", "/a/..?",
		"/a;b", "/a;b=c/d", ";", "/a\\b", "/a+b", "/a:b@c", "/a$b&c,d=e", "/a!b", "/a*b", "/a'b", "/a(b)", "/[::1]",
		"/ä", "/\u00e9t\u00e9?q=\u00e9", "/\xff\xfe", "/\xc0\xaf", "/a?\x80",
		"/a\x00", "/a\x1f", "/a\x7f", "/a b", "/a\tb", "/a?b c", "/a?\r\n", "/a#b", "/a?b#c", "#", "/#",
		"*", "http://h/x", "https://h", "HTTP://h/x", "mailto:x", "/:x", "/a:80",
		"/" + strings.Repeat("a/", 4096) + "?" + strings.Repeat("q=1&", 4096),
		"/" + strings.Repeat("../", 512),
	} {
		f.Add(uri)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		slow, slowQuery, slowErr := parseURI("GET", uri, false)
		got, gotQuery, gotErr := parseOriginal("GET", uri, false)
		if got != slow || gotQuery != slowQuery || (gotErr == nil) != (slowErr == nil) ||
			(gotErr != nil && gotErr.Error() != slowErr.Error()) {
			t.Fatalf("%q: parseOriginal = %+v, %q, %v; parseURI = %+v, %q, %v", uri, got, gotQuery, gotErr, slow, slowQuery, slowErr)
		}
		path, query, ok := plainOriginForm(uri)
		if !ok {
			return
		}
		if slowErr != nil {
			t.Fatalf("%q: the fast path takes what parseURI refuses: %v", uri, slowErr)
		}
		want := Original{Method: "GET", Path: path, EscapedPath: path}
		if slow != want || slowQuery != query {
			t.Fatalf("%q: fast path %+v, %q; parseURI %+v, %q", uri, want, query, slow, slowQuery)
		}
		u, err := url.ParseRequestURI(uri)
		if err != nil || u.Path != path || u.RawPath != "" || u.EscapedPath() != path || u.RawQuery != query || u.Host != "" || u.Scheme != "" {
			t.Fatalf("%q: url.ParseRequestURI = %#v, %v; fast path %q, %q", uri, u, err, path, query)
		}
		if err := policy.ValidatePath(path, path); err != nil {
			t.Fatalf("%q: the fast path takes a path Decide refuses: %v", uri, err)
		}
	})
}

// BenchmarkOriginalOf is reading the original request from nginx
// auth_request's headers: a plain target (the fast path) and one with an
// escape (url.ParseRequestURI).
func BenchmarkOriginalOf(b *testing.B) {
	for _, bc := range []struct{ name, uri string }{
		{"plain", "/v1/workspaces/ws_acme/projects/weekly-report/deployments?page=2"},
		{"escaped", "/v1/workspaces/ws_acme/projects/weekly%20report/deployments?page=2"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := http.Header{HeaderOriginalMethod: {"POST"}, HeaderOriginalURI: {bc.uri}}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := OriginalOf(SourceOriginal, h, "GET", "/auth", ""); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
