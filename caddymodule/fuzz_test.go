package caddymodule

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// FuzzUnmarshalCaddyfile: the parser only parses, Provision validates, and
// the two agree. Any Caddyfile text either fails to parse or gives a config
// that survives its JSON form unchanged (what `caddy adapt` writes is what
// was parsed) and that checkConfig, Provision's validation, either accepts
// or refuses with an error naming the config field at fault. Never a panic.
func FuzzUnmarshalCaddyfile(f *testing.F) {
	for _, s := range []string{
		"deplo_auth {\n keys file k\n route GET /a read\n}",
		"deplo_auth {\n keys postgres dsn {\n query_timeout 1s\n max_conns -1\n }\n cache {\n ttl 1m\n negative_ttl -1s\n }\n}",
		"deplo_auth {\n keys file k\n jwt {\n alg ES256\n public_key k.pem\n claims {\n subject uid\n }\n }\n}",
		"deplo_auth {\n keys file k\n jwt {\n alg none HS999\n leeway -1s\n }\n}",
		"deplo_auth {\n route * /v1/{workspace}/{rest...} admin {\n via jwt\n project_tokens\n }\n default authenticated\n}",
		"deplo_auth {\n keys file k\n route M-SEARCH /a public read\n route GET /a/{x}/c read\n route GET /a/b/{y} read\n}",
		"deplo_auth {\n keys file k\n throttle 5 10ms\n signed_identity {\n }\n default allow\n realm \"x\n}",
		"deplo_auth {\n}", "deplo_auth", "deplo_auth {\n route\n}",
		"deplo_auth {\n verify {\n from envoy\n }\n}",
	} {
		f.Add(s)
	}
	fields := handlerFields()
	f.Fuzz(func(t *testing.T, input string) {
		tokens, err := caddyfile.Tokenize([]byte(input), "Fuzzfile")
		if err != nil {
			return
		}
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens)); err != nil {
			return
		}
		adapted, err := json.Marshal(&h)
		if err != nil {
			t.Fatalf("the parsed config does not marshal: %v", err)
		}
		var back Handler
		if err := json.Unmarshal(adapted, &back); err != nil {
			t.Fatalf("the adapted JSON does not unmarshal: %v\n%s", err, adapted)
		}
		if again, _ := json.Marshal(&back); string(again) != string(adapted) {
			t.Fatalf("the config changes through JSON:\n%s\n%s", adapted, again)
		}
		err = back.checkConfig()
		if err == nil {
			return
		}
		msg := err.Error()
		for _, name := range fields {
			if rest, ok := strings.CutPrefix(msg, name); ok && (strings.HasPrefix(rest, ":") || strings.HasPrefix(rest, "[")) {
				return
			}
		}
		t.Fatalf("checkConfig: %q names no config field (%v)", msg, fields)
	})
}

// handlerFields returns the JSON names of Handler's fields.
func handlerFields() []string {
	var names []string
	rt := reflect.TypeFor[Handler]()
	for i := range rt.NumField() {
		if name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ","); name != "" && name != "-" {
			names = append(names, name)
		}
	}
	return names
}
