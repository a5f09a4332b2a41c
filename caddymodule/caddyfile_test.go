package caddymodule

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	tests := []struct {
		name, input, want string
	}{
		{
			name:  "minimal",
			input: "deplo_auth {\n keys file keys.json\n}",
			want:  `{"keys":{"file":"keys.json"}}`,
		},
		{
			// 0 is kept (no clock skew), not dropped as if absent (30s).
			name:  "jwt leeway 0",
			input: "deplo_auth {\n keys file keys.json\n jwt {\n alg HS256\n secret x\n leeway 0s\n }\n}",
			want:  `{"keys":{"file":"keys.json"},"jwt":{"algorithms":["HS256"],"secret":"x","leeway":0}}`,
		},
		{
			name: "everything",
			input: `deplo_auth {
				keys file /etc/deplo/keys.json
				cache {
					ttl 10m
					negative_ttl 1m
					max_entries 5000
				}
				realm acme
				header_prefix X-Acme-
				forward_authorization
				checksum off
				preflight public
				route GET /healthz public
				route GET /v1/me authenticated
				route * /v1/workspaces/{workspace}/tokens/ admin
				route POST /v1/workspaces/{workspace}/projects/{project}/promote deploy delete {
					via api_key
				}
				route GET /v1/workspaces/{workspace}/projects read {
					project_tokens
					via api_key jwt
				}
				default authenticated
			}`,
			want: `{"keys":{"file":"/etc/deplo/keys.json"},"cache":{"ttl":600000000000,"negative_ttl":60000000000,"max_entries":5000},"realm":"acme","header_prefix":"X-Acme-","forward_authorization":true,"disable_checksum":true,"routes":[` +
				`{"method":"GET","path":"/healthz","public":true},` +
				`{"method":"GET","path":"/v1/me","authenticated":true},` +
				`{"path":"/v1/workspaces/{workspace}/tokens/","scopes":["admin"]},` +
				`{"method":"POST","path":"/v1/workspaces/{workspace}/projects/{project}/promote","scopes":["deploy","delete"],"via":["api_key"]},` +
				`{"method":"GET","path":"/v1/workspaces/{workspace}/projects","scopes":["read"],"via":["api_key","jwt"],"project_tokens":true}` +
				`],"default":"authenticated","preflight_public":true}`,
		},
	}
	tests = append(tests, struct{ name, input, want string }{
		name: "jwt",
		input: `deplo_auth {
			keys file keys.json
			jwt {
				issuer https://dashboard.deplo.sh
				audience https://api.deplo.sh
				alg ES256 EdDSA
				alg HS256
				secret {env.DEPLO_JWT_SECRET}
				public_key /etc/deplo/a.pem
				public_key /etc/deplo/b.pem
				jwks https://dashboard.deplo.sh/.well-known/jwks.json
				leeway 10s
				max_lifetime 15m
				typ at+jwt application/at+jwt
				claims {
					subject uid
					workspace ws
					project prj
					scopes scp
				}
			}
		}`,
		want: `{"keys":{"file":"keys.json"},"jwt":{"issuer":"https://dashboard.deplo.sh","audience":"https://api.deplo.sh","algorithms":["ES256","EdDSA","HS256"],"secret":"{env.DEPLO_JWT_SECRET}","public_keys":["/etc/deplo/a.pem","/etc/deplo/b.pem"],"jwks":"https://dashboard.deplo.sh/.well-known/jwks.json","leeway":10000000000,"max_lifetime":900000000000,"types":["at+jwt","application/at+jwt"],"claims":{"subject":"uid","workspace":"ws","project":"prj","scopes":"scp"}}}`,
	}, struct{ name, input, want string }{
		name: "postgres",
		input: `deplo_auth {
			keys postgres {env.DEPLO_AUTH_POSTGRES} {
				lookup_query "SELECT id, name, workspace, project, scopes, created_at, expires_at, revoked_at FROM api_keys WHERE sha = $1"
				listen_dsn {env.DEPLO_AUTH_POSTGRES_DIRECT}
				max_conns 20
				query_timeout 500ms
				poll 250ms
				record_last_used
				migrate
			}
			cache {
				stale_if_error 2m
			}
		}`,
		want: `{"keys":{"postgres":{"dsn":"{env.DEPLO_AUTH_POSTGRES}","lookup_query":"SELECT id, name, workspace, project, scopes, created_at, expires_at, revoked_at FROM api_keys WHERE sha = $1","listen_dsn":"{env.DEPLO_AUTH_POSTGRES_DIRECT}","max_conns":20,"poll":250000000,"query_timeout":500000000,"record_last_used":true,"migrate":true}},"cache":{"stale_if_error":120000000000}}`,
	}, struct{ name, input, want string }{
		name:  "throttle",
		input: "deplo_auth {\n keys file k\n throttle 10 30s\n}",
		want:  `{"keys":{"file":"k"},"throttle":{"failures":10,"window":30000000000}}`,
	}, struct{ name, input, want string }{
		name:  "signed identity",
		input: "deplo_auth {\n keys file k\n signed_identity {\n key k2 {env.DEPLO_IDENTITY_KEY}\n key k1 {env.DEPLO_IDENTITY_KEY_OLD}\n }\n}",
		want:  `{"keys":{"file":"k"},"signed_identity":{"keys":[{"id":"k2","secret":"{env.DEPLO_IDENTITY_KEY}"},{"id":"k1","secret":"{env.DEPLO_IDENTITY_KEY_OLD}"}]}}`,
	}, struct{ name, input, want string }{
		name:  "throttle off",
		input: "deplo_auth {\n keys file k\n throttle off\n}",
		want:  `{"keys":{"file":"k"},"throttle":{"off":true}}`,
	}, struct{ name, input, want string }{
		name:  "jwt typ off",
		input: "deplo_auth {\n keys file k\n jwt {\n alg HS256\n secret {env.S}\n typ off\n }\n}",
		want:  `{"keys":{"file":"k"},"jwt":{"algorithms":["HS256"],"secret":"{env.S}","type_off":true}}`,
	})
	checkUnmarshal(t, tests)
}

// checkUnmarshal parses each input and compares the handler's JSON.
func checkUnmarshal(t *testing.T, tests []struct{ name, input, want string }) {
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Handler
			if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input)); err != nil {
				t.Fatal(err)
			}
			got, err := json.Marshal(h)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestUnmarshalCaddyfileErrors(t *testing.T) {
	tests := []struct {
		name, input, want string
	}{
		{"argument on directive", "deplo_auth foo {\n keys file k\n}", "wrong argument count"},
		{"unknown subdirective", "deplo_auth {\n keys file k\n frobnicate\n}", `unrecognized deplo_auth subdirective "frobnicate" (want one of: keys, cache, route, default, jwt,`},
		{"unknown store", "deplo_auth {\n keys redis x\n}", `unknown key store "redis"`},
		{"postgres unknown option", "deplo_auth {\n keys postgres dsn {\n pool 3\n }\n}", `unrecognized keys postgres subdirective "pool"`},
		{"postgres bad timeout", "deplo_auth {\n keys postgres dsn {\n query_timeout 0s\n }\n}", "query_timeout"},
		{"postgres bad poll", "deplo_auth {\n keys postgres dsn {\n poll soon\n }\n}", "keys postgres poll"},
		{"postgres listen_dsn without value", "deplo_auth {\n keys postgres dsn {\n listen_dsn\n }\n}", "wrong argument count"},
		{"keys file with block", "deplo_auth {\n keys file k {\n migrate\n }\n}", "takes no block"},
		{"keys extra argument", "deplo_auth {\n keys file a b\n}", "wrong argument count"},
		{"two stores", "deplo_auth {\n keys file a\n keys file b\n}", "only one key store"},
		{"keys without path", "deplo_auth {\n keys file\n}", "wrong argument count"},
		{"bad ttl", "deplo_auth {\n cache {\n ttl soon\n }\n}", "cache ttl"},
		{"bad max_entries", "deplo_auth {\n cache {\n max_entries 0\n }\n}", "max_entries"},
		{"unknown cache option", "deplo_auth {\n cache {\n size 1\n }\n}", `unrecognized cache subdirective "size"`},
		{"unknown scope", "deplo_auth {\n route GET /a write\n}", `unknown scope "write"`},
		{"route too short", "deplo_auth {\n route GET /a\n}", "route: want"},
		{"public with scope", "deplo_auth {\n route GET /a public read\n}", "Testfile:2: deplo_auth route 1 (GET /a): a public route takes no scopes"},
		{"bad via", "deplo_auth {\n route GET /a read {\n via cookie\n }\n}", `unknown credential kind "cookie"`},
		{"unknown route option", "deplo_auth {\n route GET /a read {\n sometimes\n }\n}", `unrecognized option "sometimes"`},
		{"public with via", "deplo_auth {\n route GET /a public {\n via jwt\n }\n}", "no credential options"},
		{"checksum typo", "deplo_auth {\n checksum of\n}", "want on or off"},
		{"conflict names the line", "deplo_auth {\n route GET /a/{x}/c read\n route GET /a/b/{y} read\n}", "Testfile:3: deplo_auth route 2 (GET /a/b/{y})"},
		{"bad pattern names the line", "deplo_auth {\n route GET /a read\n route GET /b/{ read\n}", "Testfile:3"},
		{"bad method", "deplo_auth {\n route get /a read\n}", "method"},
		{"signed identity key without secret", "deplo_auth {\n signed_identity {\n key k1\n }\n}", "want <id> <secret>"},
		{"throttle zero", "deplo_auth {\n throttle 0 1m\n}", "throttle failures: want a non-zero integer"},
		{"throttle one arg", "deplo_auth {\n throttle 5\n}", "want <failures> <window> or off"},
		{"jwt unknown option", "deplo_auth {\n jwt {\n alg ES256\n jku x\n }\n}", `unrecognized jwt subdirective "jku"`},
		{"jwt bad claim name", "deplo_auth {\n jwt {\n alg HS256\n secret x\n claims {\n role r\n }\n }\n}", "unrecognized jwt claims subdirective"},
		{"jwt bad leeway", "deplo_auth {\n jwt {\n alg HS256\n secret x\n leeway soon\n }\n}", "jwt leeway"},
		{"two jwt blocks", "deplo_auth {\n jwt {\n alg HS256\n secret x\n }\n jwt {\n alg HS256\n secret x\n }\n}", "only one jwt block"},
	}
	checkUnmarshalErrors(t, tests)
}

// TestCheckConfigErrors: what the parser accepts and Provision refuses,
// with the error naming the field (checkConfig is Provision's validation).
func TestCheckConfigErrors(t *testing.T) {
	for _, tt := range []struct{ name, input, want string }{
		{"negative ttl", "deplo_auth {\n keys file k\n cache {\n negative_ttl -1s\n }\n}", `cache: negative_ttl: must not be negative`},
		{"bad default", "deplo_auth {\n keys file k\n default allow\n}", `default: "allow" is not deny or authenticated`},
		{"signed identity without keys", "deplo_auth {\n keys file k\n signed_identity {\n }\n}", `signed_identity: at least one key`},
		{"throttle short window", "deplo_auth {\n keys file k\n throttle 5 10ms\n}", `throttle: window 10ms out of range [1s`},
		{"jwt without alg", "deplo_auth {\n keys file k\n jwt {\n secret x\n }\n}", `jwt: alg: an explicit algorithm allowlist is required`},
		{"jwt alg none", "deplo_auth {\n keys file k\n jwt {\n alg none\n secret x\n }\n}", `jwt: alg: "none" is never accepted`},
		{"jwt without key", "deplo_auth {\n keys file k\n jwt {\n alg ES256\n }\n}", `jwt: no key configured`},
		{"negative poll", "deplo_auth {\n keys postgres dsn {\n poll -1s\n }\n}", "keys: postgres: poll: must not be negative"},
		{"negative max_conns", "deplo_auth {\n keys postgres dsn {\n max_conns -2\n }\n}", "keys: postgres: max_conns: must not be negative"},
		{"jwt negative leeway", "deplo_auth {\n keys file k\n jwt {\n alg HS256\n secret x\n leeway -1s\n }\n}", "jwt: leeway must not be negative"},
		{"jwt leeway too long", "deplo_auth {\n keys file k\n jwt {\n alg HS256\n secret x\n leeway 1h\n }\n}", "jwt: leeway 1h0m0s is over the maximum"},
		{"no store", "deplo_auth {\n route GET /a read\n}", "keys: a key store is required"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var h Handler
			if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input)); err != nil {
				t.Fatalf("the parser refused it: %v", err)
			}
			if err := h.checkConfig(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("checkConfig: %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestOptionListsComplete: every option an unknown option's error lists is
// one the parser knows (its own error, if any, is not "unrecognized").
func TestOptionListsComplete(t *testing.T) {
	for _, tc := range []struct {
		list     []string
		template string // %s: the option
	}{
		{handlerOptions, "deplo_auth {\n %s x\n}"},
		{postgresOptions, "deplo_auth {\n keys postgres dsn {\n %s x\n }\n}"},
		{cacheOptions, "deplo_auth {\n cache {\n %s x\n }\n}"},
		{jwtOptions, "deplo_auth {\n jwt {\n %s x\n }\n}"},
		{signedIdentityOptions, "deplo_auth {\n signed_identity {\n %s x\n }\n}"},
	} {
		for _, opt := range tc.list {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(fmt.Sprintf(tc.template, opt)))
			if err != nil && strings.Contains(err.Error(), "unrecognized") {
				t.Errorf("%q is listed but not parsed: %v", opt, err)
			}
		}
	}
	for _, opt := range sidecarOptions {
		_, err := adaptGlobal(t, "{\n deplo_auth_sidecar {\n "+opt+" x\n }\n}")
		if err != nil && strings.Contains(err.Error(), "unrecognized") {
			t.Errorf("sidecar option %q is listed but not parsed: %v", opt, err)
		}
	}
	var h Handler
	err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("deplo_auth {\n cache {\n size 1\n }\n}"))
	if err == nil || !strings.Contains(err.Error(), "(want one of: ttl, negative_ttl, max_entries, stale_if_error)") {
		t.Errorf("unknown cache option: %v", err)
	}
	_, err = adaptGlobal(t, "{\n deplo_auth_sidecar {\n listen :1\n allow all\n }\n}")
	if err == nil || !strings.Contains(err.Error(), "(want one of: listen, from, trusted, trusted_proxies, path_prefix, keys,") {
		t.Errorf("unknown sidecar option: %v", err)
	}
}

// checkUnmarshalErrors parses each input and wants an error containing want.
func checkUnmarshalErrors(t *testing.T, tests []struct{ name, input, want string }) {
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Handler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

var update = flag.Bool("update", false, "rewrite the adapt golden files")

// TestAdaptGolden adapts each testdata/*.caddyfile and compares the JSON with
// the .json beside it (go test -run TestAdaptGolden -update rewrites them).
// Caddyfile.example is among them, so the shipped example always adapts.
func TestAdaptGolden(t *testing.T) {
	inputs, _ := filepath.Glob("testdata/*.caddyfile")
	inputs = append(inputs, "../Caddyfile.example")
	for _, in := range inputs {
		t.Run(filepath.Base(in), func(t *testing.T) {
			src, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			adapter := caddyconfig.GetAdapter("caddyfile")
			out, warnings, err := adapter.Adapt(src, map[string]any{"filename": in})
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range warnings {
				t.Errorf("warning: %s:%d: %s", w.File, w.Line, w.Message)
			}
			var pretty map[string]any
			if err := json.Unmarshal(out, &pretty); err != nil {
				t.Fatal(err)
			}
			got, _ := json.MarshalIndent(pretty, "", "\t")
			golden := filepath.Join("testdata", strings.TrimSuffix(filepath.Base(in), ".caddyfile")+".json")
			if filepath.Base(in) == "Caddyfile.example" {
				golden = filepath.Join("testdata", "Caddyfile.example.json")
			}
			if *update {
				if err := os.WriteFile(golden, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestAdaptGolden -update)", err)
			}
			if strings.TrimSpace(string(want)) != strings.TrimSpace(string(got)) {
				t.Errorf("adapted %s differs from %s:\n%s", in, golden, got)
			}
		})
	}
}

// Secrets given as {env.…} placeholders are replaced at provision, never at
// adapt time: `caddy adapt` (and the admin API's /config) show the
// placeholder, not the secret.
func TestAdaptKeepsSecretsOut(t *testing.T) {
	const secret = "adapt-test-secret-never-in-json-0123456789"
	t.Setenv("DEPLO_ADAPT_TEST_SECRET", secret)
	src := []byte(`:8080 {
	deplo_auth {
		keys postgres {env.DEPLO_ADAPT_TEST_SECRET}
		jwt {
			alg HS256
			secret {env.DEPLO_ADAPT_TEST_SECRET}
		}
		signed_identity {
			key k1 {env.DEPLO_ADAPT_TEST_SECRET}
		}
	}
}
`)
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt(src, nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), secret) {
		t.Fatalf("adapted JSON contains the secret: %s", out)
	}
	if !strings.Contains(string(out), "{env.DEPLO_ADAPT_TEST_SECRET}") {
		t.Fatalf("adapted JSON lost the placeholder: %s", out)
	}
}
