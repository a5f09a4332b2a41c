package identity

import (
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"strings"
	"testing"
)

func mustHeaders(t testing.TB, prefix string, signer *Signer) *Headers {
	t.Helper()
	h, err := NewHeaders(prefix, signer)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestHeadersSpellings(t *testing.T) {
	h := mustHeaders(t, "", nil)
	tests := []struct {
		name string
		want bool
	}{
		{"X-Deplo-Subject", true},
		{"x-deplo-subject", true},
		{"X_Deplo_Subject", true},
		{"X.Deplo.Scopes", true},
		{"x_DEPLO-workspace", true},
		{"X-Deplo-", true},
		{"X-Deplo-Anything-New", true},
		{"X-Deplo", false},
		{"X-Deplomat", false},
		{"X-Deplo Subject", false},
		{"Accept", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := h.Matches(tt.name); got != tt.want {
			t.Errorf("Matches(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestStripOverrideHeaders: the method- and URL-override headers frameworks
// act on never reach the upstream, in any spelling; look-alikes stay.
func TestStripOverrideHeaders(t *testing.T) {
	h := mustHeaders(t, "", nil)
	stripped := []string{"X-HTTP-Method-Override", "X-Http-Method", "X-Method-Override", "X-Original-URL",
		"X-Rewrite-URL", "x_http_method_override", "X.ORIGINAL.URL", "x-rewrite_url"}
	kept := []string{"X-HTTP-Method-Overrides", "X-Original-URI", "X-Rewrite", "X-Method", "Accept", "X-Forwarded-Method"}
	r := httptest.NewRequest("POST", "/v1/x", nil)
	for _, n := range append(append([]string{}, stripped...), kept...) {
		r.Header[n] = []string{"DELETE"}
	}
	r.Header["Connection"] = []string{"keep-alive, X-HTTP-Method-Override"}
	h.Strip(r)
	for _, n := range stripped {
		if _, ok := r.Header[n]; ok {
			t.Errorf("%s reached the upstream", n)
		}
	}
	for _, n := range kept {
		if _, ok := r.Header[n]; !ok {
			t.Errorf("%s was removed", n)
		}
	}
	if got := r.Header["Connection"]; len(got) != 1 || got[0] != "keep-alive" {
		t.Errorf("Connection = %q, want keep-alive", got)
	}
}

// TestWriteCanonicalNames: Write assigns its header map directly, so the
// names it uses must already be canonical, whatever the case of the
// configured prefix — else Header.Get, and every Go proxy that copies the
// answer with it, would miss them.
func TestWriteCanonicalNames(t *testing.T) {
	for _, tt := range []struct{ prefix, subject string }{
		{"", "X-Deplo-Subject"},
		{"X-Deplo-", "X-Deplo-Subject"},
		{"x-acme-id-", "X-Acme-Id-Subject"},
		{"X-ACME-", "X-Acme-Subject"},
		{"x_acme_", "X_acme_subject"},
	} {
		h := mustHeaders(t, tt.prefix, mustSigner(t, tt.prefix, testKey1))
		dst := http.Header{}
		if err := h.Write(dst, &idProject, "GET", "/v1", testNow, new(HeaderValues)); err != nil {
			t.Fatalf("prefix %q: %v", tt.prefix, err)
		}
		if len(dst) != numFields+1 {
			t.Errorf("prefix %q: %d headers written: %v", tt.prefix, len(dst), dst)
		}
		for name := range dst {
			if c := textproto.CanonicalMIMEHeaderKey(name); c != name {
				t.Errorf("prefix %q: header %q written, canonical %q", tt.prefix, name, c)
			}
		}
		if got := dst[tt.subject]; len(got) != 1 || got[0] != idProject.Subject {
			t.Errorf("prefix %q: %s = %q in %v", tt.prefix, tt.subject, got, dst)
		}
	}
}

// TestWriteSignsTheValue: Write's signature verifies for the very request
// the upstream receives, and an identity the upstream's parser would refuse
// is not written.
func TestWriteSignsTheValue(t *testing.T) {
	signer := mustSigner(t, "", testKey1)
	h := mustHeaders(t, "", signer)
	v := mustVerifier(t, "", testKey1)
	for _, id := range []Identity{idWorkspace, idProject, idJWT} {
		r := httptest.NewRequest("POST", "/v1/workspaces/ws_1/projects/web%2Fx/deployments?q=1", nil)
		if err := h.Write(r.Header, &id, r.Method, r.URL.EscapedPath(), testNow, new(HeaderValues)); err != nil {
			t.Fatal(err)
		}
		got, err := v.Verify(r, testNow)
		if err != nil {
			t.Fatalf("%+v: %v", id, err)
		}
		if got != id {
			t.Errorf("verified %+v, want %+v", got, id)
		}
		if id.Workspace == "" && r.Header["X-Deplo-Workspace"] != nil {
			t.Error("empty workspace written")
		}
	}
	bad := Identity{Method: MethodJWT, Subject: "user\n42", Scopes: ScopeRead}
	dst := http.Header{}
	if err := h.Write(dst, &bad, "GET", "/", testNow, new(HeaderValues)); err == nil || len(dst) != 0 {
		t.Errorf("a subject with a line break: err %v, headers %v", err, dst)
	}
	if _, err := NewHeaders("X-Other-", signer); err == nil {
		t.Error("a signer of another prefix was accepted")
	}
}

// FuzzStripIdentityHeaders: whatever header names a client sends, none that
// an upstream could read as an identity or override header survives
// stripping, and no other header is removed.
func FuzzStripIdentityHeaders(f *testing.F) {
	for _, s := range []string{"X-Deplo-Auth", "x_deplo_subject", "X.Deplo.Scopes", "X-DEPLO-", "X-Deplo", "X-Deplomat", "Accept", "X-Deplo-\x00", "X_Deplo.Workspace", "x-deplo-ééé", "X-HTTP-Method-Override", "x_original_url"} {
		f.Add(s, "X-Request-Id")
	}
	h := mustHeaders(f, "", nil)
	f.Fuzz(func(t *testing.T, name, other string) {
		r := &http.Request{Header: http.Header{name: {"spoof"}, other: {"keep"}}, Trailer: http.Header{name: nil}}
		h.Strip(r)
		for k := range r.Header {
			if readsAsStripped(k) {
				t.Fatalf("%q survived stripping", k)
			}
		}
		if !readsAsStripped(other) {
			if _, ok := r.Header[other]; !ok {
				t.Fatalf("%q was removed but is not an identity header", other)
			}
		}
		if _, ok := r.Trailer[name]; ok && readsAsStripped(name) {
			t.Fatalf("trailer %q survived", name)
		}
	})
}

// readsAsStripped is the reference rule, written plainly: ASCII lower case,
// "_" and "." as "-", then the prefix or one of the override names.
func readsAsStripped(name string) bool {
	b := []byte(name)
	for i, c := range b {
		switch {
		case c >= 'A' && c <= 'Z':
			b[i] = c + 32
		case c == '_' || c == '.':
			b[i] = '-'
		}
	}
	n := string(b)
	switch n {
	case "x-http-method-override", "x-http-method", "x-method-override", "x-original-url", "x-rewrite-url":
		return true
	}
	return strings.HasPrefix(n, "x-deplo-")
}

// BenchmarkStripIdentityHeaders is the strip every request pays before any
// decision, on the dozen headers of the handler benchmark's request: a walk
// over the header map, so its cost grows with the number of headers.
func BenchmarkStripIdentityHeaders(b *testing.B) {
	h := mustHeaders(b, "", nil)
	base := http.Header{}
	for k, v := range map[string]string{
		"User-Agent": "deplo-cli/1.4.2", "Accept": "application/json", "Accept-Encoding": "gzip",
		"Content-Type": "application/json", "Content-Length": "128", "X-Request-Id": "req_8f2a1c",
		"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https", "Traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"Connection": "keep-alive", "Authorization": "Bearer sk_live_x", "Host": "api.deplo.sh",
	} {
		base.Set(k, v)
	}
	r := &http.Request{Header: base}
	b.ReportAllocs()
	for b.Loop() {
		h.Strip(r) // nothing to remove: the map stays as it is
	}
}
