package cli

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deplo-sh/deplo-auth/keystore"
)

// clearModes unsets every variable that names a store or the API, so a test
// sees only its flags.
func clearModes(t *testing.T) {
	for _, v := range []string{keysFileEnv, postgresEnv, "DEPLO_API_URL", "DEPLO_KEY"} {
		t.Setenv(v, "")
	}
	t.Setenv(caddyAdminEnv, "127.0.0.1:1") // no gateway to tell
}

// TestHelpShowsEveryMode: the command's help and each token command's show
// the three modes and their variables, and close with this project's
// documentation, not Caddy's.
func TestHelpShowsEveryMode(t *testing.T) {
	clearModes(t)
	for _, args := range [][]string{
		{"--help"},
		{"token", "create", "--help"},
		{"token", "revoke", "--help"},
		{"token", "list", "--help"},
		{"token", "rotate", "--help"},
	} {
		out, err := runDeploAuth(t, args...)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		for _, want := range []string{"--keys-file <path> | --postgres <dsn> | --api <url>", "$DEPLO_AUTH_KEYS_FILE",
			"$DEPLO_AUTH_POSTGRES", "$DEPLO_API_URL", "$DEPLO_KEY", "Full documentation", docsURL} {
			if !strings.Contains(out, want) {
				t.Errorf("%v: help lacks %q:\n%s", args, want, out)
			}
		}
		if strings.Contains(out, "caddyserver.com") {
			t.Errorf("%v: help points to Caddy's documentation", args)
		}
		if args[0] == "token" {
			usage := out[strings.Index(out, "Usage:"):]
			if !strings.Contains(usage[:strings.Index(usage, "\n\n")], tokenModes) {
				t.Errorf("%v: the Usage: line lacks the modes:\n%s", args, usage)
			}
		}
	}
	for _, args := range [][]string{{"session", "revoke", "--help"}, {"migrate", "--help"}, {"jwt", "mint", "--help"}, {"hash", "--help"}} {
		out, err := runDeploAuth(t, args...)
		if err != nil || !strings.Contains(out, docsURL) {
			t.Errorf("%v: %v; no documentation line:\n%s", args, err, out)
		}
	}
	out, _ := runDeploAuth(t, "session", "revoke", "--help")
	if !strings.Contains(out, storeModes) {
		t.Errorf("session revoke's usage lacks its modes:\n%s", out)
	}
	out, _ = runDeploAuth(t, "jwt", "mint", "--help")
	if !strings.Contains(out, "--issuer and --audience must match the gateway's") {
		t.Errorf("jwt mint's help does not say issuer and audience must match the gateway's:\n%s", out)
	}
}

// TestScopesForms: --scopes read deploy, "read deploy" and read,deploy name
// the same scopes; words without --scopes, or unknown ones, are refused.
func TestScopesForms(t *testing.T) {
	clearModes(t)
	path := filepath.Join(t.TempDir(), "keys.json")
	for i, form := range [][]string{
		{"--scopes", "read,deploy"},
		{"--scopes", "read", "deploy"},
		{"--scopes", "read deploy"},
		{"--scopes", "deploy", "--name", "x", "read"},
		{"--scopes", "read", "--scopes", "deploy,read"},
	} {
		args := append([]string{"token", "create", "--keys-file", path, "--workspace", "ws"}, form...)
		if out, err := runDeploAuth(t, args...); err != nil {
			t.Fatalf("%v: %v\n%s", form, err, out)
		}
		list, err := (&keystore.FileTokenManager{Path: path}).ListTokens(context.Background(), "")
		if err != nil {
			t.Fatal(err)
		}
		if got := list[i].Scopes; !slices.Equal(got, []string{"deploy", "read"}) {
			t.Errorf("%v: scopes %v, want [deploy read]", form, got)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--scopes", "read", "write"}, `--scopes: unknown scope "write"`},
		{[]string{"--scopes", "read,write"}, `--scopes: unknown scope "write"`},
		{[]string{"read"}, `unexpected argument "read"`},
	} {
		args := append([]string{"token", "create", "--keys-file", path, "--workspace", "ws"}, tc.args...)
		if _, err := runDeploAuth(t, args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
	// jwt mint takes the same forms.
	t.Setenv("DEPLO_IT_JWT_SECRET", "a-development-secret-of-32-bytes!")
	out, err := runDeploAuth(t, "jwt", "mint", "--secret-env", "DEPLO_IT_JWT_SECRET", "--alg", "HS256", "--sub", "u",
		"--scopes", "read", "deploy")
	if err != nil {
		t.Fatal(err)
	}
	if claims := jwtClaims(t, strings.TrimSpace(out)); claims["scope"] != "read deploy" {
		t.Errorf("jwt mint --scopes read deploy: scope claim %q", claims["scope"])
	}
}

// jwtClaims decodes the claims of a compact JWT without verifying it.
func jwtClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(b, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

// TestInstantForms: --expires (create, session revoke) and --at (revoke)
// take a duration from now or an RFC 3339 time, and nothing else.
func TestInstantForms(t *testing.T) {
	clearModes(t)
	path := filepath.Join(t.TempDir(), "keys.json")
	admin := &keystore.FileTokenManager{Path: path}
	at := time.Date(2031, 1, 31, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		value string
		want  func(before time.Time) time.Time
	}{
		{"720h", func(b time.Time) time.Time { return b.Add(720 * time.Hour) }},
		{"30d", func(b time.Time) time.Time { return b.Add(30 * 24 * time.Hour) }},
		{at.Format(time.RFC3339), func(time.Time) time.Time { return at }},
	} {
		before := time.Now().UTC().Truncate(time.Second)
		if out, err := runDeploAuth(t, "token", "create", "--keys-file", path, "--workspace", "ws", "--scopes", "read",
			"--name", tc.value, "--expires", tc.value); err != nil {
			t.Fatalf("--expires %s: %v\n%s", tc.value, err, out)
		}
		rec := tokenNamed(t, admin, tc.value)
		if want := tc.want(before); rec.ExpiresAt == nil || rec.ExpiresAt.Sub(want) < 0 || rec.ExpiresAt.Sub(want) > 2*time.Second {
			t.Errorf("--expires %s: expires_at %v, want %v", tc.value, rec.ExpiresAt, want)
		}
		if _, err := runDeploAuth(t, "token", "revoke", "--keys-file", path, "--at", tc.value, rec.ID); err != nil {
			t.Fatalf("--at %s: %v", tc.value, err)
		}
		rec = tokenNamed(t, admin, tc.value)
		if want := tc.want(before); rec.RevokedAt == nil || rec.RevokedAt.Sub(want) < 0 || rec.RevokedAt.Sub(want) > 2*time.Second {
			t.Errorf("--at %s: revoked_at %v, want %v", tc.value, rec.RevokedAt, want)
		}
		if _, err := runDeploAuth(t, "session", "revoke", "--keys-file", path, "--expires", tc.value, "sess_"+tc.value[:2]); err != nil {
			t.Errorf("session revoke --expires %s: %v", tc.value, err)
		}
	}
	for _, bad := range []string{"tomorrow", "2027-01-31", "-1h", "0s"} {
		for _, args := range [][]string{
			{"token", "create", "--keys-file", path, "--workspace", "ws", "--scopes", "read", "--expires", bad},
			{"token", "revoke", "--keys-file", path, "--at", bad, "tok_x"},
			{"session", "revoke", "--keys-file", path, "--expires", bad, "sess_x"},
		} {
			if _, err := runDeploAuth(t, args...); err == nil || !strings.Contains(err.Error(), "RFC 3339") {
				t.Errorf("%v: %v, want a refusal naming the forms", args, err)
			}
		}
	}
	if _, err := runDeploAuth(t, "token", "create", "--keys-file", path, "--workspace", "ws", "--scopes", "read",
		"--expires", "2020-01-01T00:00:00Z"); err == nil || !strings.Contains(err.Error(), "not in the future") {
		t.Errorf("--expires in the past: %v", err)
	}
}

func tokenNamed(t *testing.T, admin keystore.TokenManager, name string) keystore.TokenRecord {
	t.Helper()
	list, err := admin.ListTokens(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range list {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no token named %q", name)
	return keystore.TokenRecord{}
}

// TestAPICreateExpires: in API mode --expires takes the same forms and
// reaches the API as expires_at.
func TestAPICreateExpires(t *testing.T) {
	clearModes(t)
	var got []string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			ExpiresAt string `json:"expires_at"`
		}
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &body)
		got = append(got, body.ExpiresAt)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"id":"tok_x","token":"sk_live_x"}`)
	}))
	defer api.Close()
	t.Setenv("DEPLO_KEY", "sk_live_notsentanywhere0000000000000")
	before := time.Now().UTC()
	for _, v := range []string{"48h", "2031-01-31T00:00:00Z"} {
		if out, err := runDeploAuth(t, "token", "create", "--api", api.URL, "--workspace", "ws", "--name", "n",
			"--scopes", "read", "deploy", "--expires", v); err != nil {
			t.Fatalf("--api --expires %s: %v\n%s", v, err, out)
		}
	}
	if len(got) != 2 || got[1] != "2031-01-31T00:00:00Z" {
		t.Fatalf("expires_at sent: %q", got)
	}
	if sent, err := time.Parse(time.RFC3339, got[0]); err != nil || sent.Sub(before.Add(48*time.Hour)).Abs() > 2*time.Second {
		t.Errorf("--expires 48h sent %q", got[0])
	}
}

// TestStoreRequiredNamesModes: with no store named, a token command's
// error names --api too; session revoke, which has no API mode, does not.
func TestStoreRequiredNamesModes(t *testing.T) {
	clearModes(t)
	for _, args := range [][]string{
		{"token", "create", "--workspace", "ws", "--scopes", "read"},
		{"token", "revoke", "tok_x"},
		{"token", "list"},
	} {
		_, err := runDeploAuth(t, args...)
		if err == nil || !strings.Contains(err.Error(), "is required") || !strings.Contains(err.Error(), "--api") ||
			!strings.Contains(err.Error(), "$DEPLO_KEY") {
			t.Errorf("%v: %v, want an error naming --keys-file, --postgres and --api", args, err)
		}
	}
	_, err := runDeploAuth(t, "session", "revoke", "sess_x")
	if err == nil || !strings.Contains(err.Error(), "--keys-file or --postgres is required") || strings.Contains(err.Error(), "--api") {
		t.Errorf("session revoke: %v", err)
	}
}
