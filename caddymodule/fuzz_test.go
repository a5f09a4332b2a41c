package caddymodule

import (
	"net/http"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// FuzzStripIdentityHeaders: whatever header names a client sends, none that
// an upstream could read as an identity header survives stripping, and no
// other header is removed.
func FuzzStripIdentityHeaders(f *testing.F) {
	for _, s := range []string{"X-Deplo-Auth", "x_deplo_subject", "X.Deplo.Scopes", "X-DEPLO-", "X-Deplo", "X-Deplomat", "Accept", "X-Deplo-\x00", "X_Deplo.Workspace", "x-deplo-ééé"} {
		f.Add(s, "X-Request-Id")
	}
	ih, err := newIdentityHeaders(defaultHeaderPrefix)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, name, other string) {
		r := &http.Request{Header: http.Header{name: {"spoof"}, other: {"keep"}}, Trailer: http.Header{name: nil}}
		ih.strip(r)
		for k := range r.Header {
			if readsAsIdentity(k) {
				t.Fatalf("%q survived stripping", k)
			}
		}
		if !readsAsIdentity(other) {
			if _, ok := r.Header[other]; !ok {
				t.Fatalf("%q was removed but is not an identity header", other)
			}
		}
		if _, ok := r.Trailer[name]; ok && readsAsIdentity(name) {
			t.Fatalf("trailer %q survived", name)
		}
	})
}

// readsAsIdentity is the reference rule, written plainly: lower case, "_"
// and "." as "-", then the prefix.
func readsAsIdentity(name string) bool {
	n := strings.NewReplacer("_", "-", ".", "-").Replace(strings.ToLower(name))
	// strings.ToLower maps non-ASCII too; the folding the handler does is
	// ASCII-only, which is what HTTP header names are.
	if len(n) != len(name) {
		n = asciiFold(name)
	}
	return strings.HasPrefix(n, "x-deplo-")
}

func asciiFold(s string) string {
	b := []byte(s)
	for i, c := range b {
		b[i] = foldHeaderByte(c)
	}
	return string(b)
}

// FuzzUnmarshalCaddyfile: any Caddyfile text either parses or returns an
// error; it never panics, and what parses marshals to JSON.
func FuzzUnmarshalCaddyfile(f *testing.F) {
	for _, s := range []string{
		"deplo_auth {\n keys file k\n route GET /a read\n}",
		"deplo_auth {\n keys postgres dsn {\n query_timeout 1s\n }\n cache {\n ttl 1m\n }\n}",
		"deplo_auth {\n jwt {\n alg ES256\n public_key k.pem\n claims {\n subject uid\n }\n }\n}",
		"deplo_auth {\n route * /v1/{workspace}/{rest...} admin {\n via jwt\n project_tokens\n }\n default authenticated\n}",
		"deplo_auth {\n route GET /a/{x}/c read\n route GET /a/b/{y} read\n}",
		"deplo_auth {\n}", "deplo_auth", "deplo_auth {\n route\n}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, input string) {
		tokens, err := caddyfile.Tokenize([]byte(input), "Fuzzfile")
		if err != nil {
			return
		}
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens)); err != nil {
			return
		}
		if _, _, err := h.policySpec(); err != nil {
			return
		}
	})
}
