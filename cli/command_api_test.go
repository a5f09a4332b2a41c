package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/deplo-sh/deplo-auth/keystore"
)

// In store mode, --workspace confines list and revoke as the API does.
func TestTokenCommandsWorkspaceInStoreMode(t *testing.T) {
	t.Setenv("DEPLO_API_URL", "")
	t.Setenv(keysFileEnv, "")
	t.Setenv(postgresEnv, "")
	path := filepath.Join(t.TempDir(), "keys.json")
	admin := &keystore.FileTokenManager{Path: path}
	for i, ws := range []string{"ws_a", "ws_b"} {
		e := keystore.TokenEntry{ID: "tok_" + ws, Name: ws, Hash: "sha256:" + strings.Repeat(string(rune('a'+i)), 64),
			Workspace: ws, Scopes: []string{"read"}, CreatedAt: time.Now().UTC().Truncate(time.Second)}
		if err := admin.CreateToken(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	out, err := runDeploAuth(t, "token", "list", "--keys-file", path, "--workspace", "ws_a", "--json")
	if err != nil || !strings.Contains(out, "tok_ws_a") || strings.Contains(out, "tok_ws_b") {
		t.Fatalf("list --workspace ws_a: %v\n%s", err, out)
	}
	if out, err := runDeploAuth(t, "token", "list", "--keys-file", path); err != nil || !strings.Contains(out, "tok_ws_b") {
		t.Fatalf("list without --workspace: %v\n%s", err, out)
	}
	if _, err := runDeploAuth(t, "token", "revoke", "--keys-file", path, "--workspace", "ws_a", "tok_ws_b"); err == nil {
		t.Error("revoke --workspace ws_a of a ws_b token succeeded")
	}
	if rec, _ := admin.Token(context.Background(), "tok_ws_b"); rec.RevokedAt != nil {
		t.Fatal("ws_b's token was revoked")
	}
	if _, err := runDeploAuth(t, "token", "revoke", "--keys-file", path, "--workspace", "ws_b", "tok_ws_b"); err != nil {
		t.Fatal(err)
	}
	if rec, _ := admin.Token(context.Background(), "tok_ws_b"); rec.RevokedAt == nil {
		t.Fatal("not revoked")
	}
	// --api and a store flag together are refused; $DEPLO_API_URL yields to a store.
	if _, err := runDeploAuth(t, "token", "list", "--keys-file", path, "--api", "http://127.0.0.1:1", "--workspace", "ws_a"); err == nil ||
		!strings.Contains(err.Error(), "not both") {
		t.Errorf("--api with --keys-file: %v", err)
	}
	t.Setenv("DEPLO_API_URL", "http://127.0.0.1:1")
	if _, err := runDeploAuth(t, "token", "list", "--keys-file", path); err != nil {
		t.Errorf("$DEPLO_API_URL overrode --keys-file: %v", err)
	}
}

// --api refuses plain http except to this machine, before any request.
func TestAPIRefusesPlainHTTP(t *testing.T) {
	t.Setenv(keysFileEnv, "")
	t.Setenv(postgresEnv, "")
	t.Setenv("DEPLO_API_URL", "")
	t.Setenv("DEPLO_KEY", "sk_live_notsentanywhere0000000000000")
	for url, refused := range map[string]bool{
		"http://api.deplo.sh":           true,
		"http://10.0.0.5:8080":          true,
		"http://localhost.evil.example": true,
		"http://127.0.0.1.nip.io":       true,
		"http://0x7f000001":             true,
		"http://[::ffff:10.0.0.1]":      true,
		"http://localhost:1":            false,
		"http://LOCALHOST:1":            false,
		"http://127.0.0.1:1":            false,
		"http://127.3.2.1:1":            false,
		"http://[::1]:1":                false,
		"http://[::ffff:127.0.0.1]:1":   false,
		"https://api.deplo.sh.invalid":  false,
	} {
		_, err := runDeploAuth(t, "token", "list", "--api", url, "--workspace", "ws_acme")
		if err == nil {
			t.Fatalf("%s: no error from an unreachable API", url)
		}
		if got := strings.Contains(err.Error(), "plain http"); got != refused {
			t.Errorf("%s: refused for plain http: %v, want %v (%v)", url, got, refused, err)
		}
	}
}

// A redirect is never followed with $DEPLO_KEY: the server it points to
// (another port) receives nothing, whatever the redirect's status and the
// command.
func TestAPINeverFollowsRedirect(t *testing.T) {
	t.Setenv(keysFileEnv, "")
	t.Setenv(postgresEnv, "")
	t.Setenv("DEPLO_API_URL", "")
	const key = "sk_live_redirectedkey000000000000000"
	t.Setenv("DEPLO_KEY", key)
	var mu sync.Mutex
	var elsewhere []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		elsewhere = append(elsewhere, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"tokens":[],"id":"tok_x","token":"sk_live_x"}`)
	}))
	defer other.Close()
	for _, status := range []int{301, 302, 303, 307, 308} {
		api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, other.URL+r.URL.Path, status)
		}))
		for _, args := range [][]string{
			{"token", "list"},
			{"token", "create", "--name", "x", "--scopes", "read"},
			{"token", "revoke", "tok_abc"},
		} {
			args = append(args, "--api", api.URL, "--workspace", "ws_acme")
			out, err := runDeploAuth(t, args...)
			if err == nil || !strings.Contains(err.Error(), "never sent to a redirect") {
				t.Errorf("%d, %v: %v\n%s", status, args[:2], err, out)
			}
		}
		api.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	if len(elsewhere) != 0 {
		t.Fatalf("the redirect target received %d requests, e.g. %q", len(elsewhere), elsewhere[0])
	}
}

// Nothing a server writes reaches the terminal with a control character:
// error descriptions, token names and ids, in the table and in --json.
func TestAPIOutputHasNoControlCharacters(t *testing.T) {
	t.Setenv(keysFileEnv, "")
	t.Setenv(postgresEnv, "")
	t.Setenv("DEPLO_API_URL", "")
	t.Setenv("DEPLO_KEY", "sk_live_controlchars0000000000000000")
	const nasty = "\x1b]0;pwned\a\x1b[2J\u009b31m\x7f\u202e\x9b\x85"
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.Method {
		case "GET":
			b, _ := json.Marshal(map[string]any{"tokens": []map[string]any{{"id": "tok_" + nasty, "name": "n" + nasty,
				"workspace": "ws_acme" + nasty, "project": "p" + nasty, "scopes": []string{"read" + nasty},
				"created_at": "2026-11-30T00:00:00Z"}}})
			w.Write(b)
		case "POST":
			b, _ := json.Marshal(map[string]string{"id": "tok_" + nasty, "token": "sk_live_" + nasty})
			w.WriteHeader(201)
			w.Write(b)
		default:
			w.WriteHeader(403)
			b, _ := json.Marshal(map[string]string{"error": "e" + nasty, "error_description": "d" + nasty})
			w.Write(b)
		}
	}))
	defer api.Close()
	clean := func(what, s string) {
		t.Helper()
		for _, r := range s {
			if r != '\n' && hidden(r) || r == utf8.RuneError && strings.Contains(s, "\x9b") {
				t.Errorf("%s prints %U: %q", what, r, s)
				return
			}
		}
	}
	for _, args := range [][]string{
		{"token", "list"},
		{"token", "list", "--json"},
		{"token", "create", "--name", "x", "--scopes", "read"},
		{"token", "revoke", "tok_abc"},
	} {
		out, err := runDeploAuth(t, append(args, "--api", api.URL, "--workspace", "ws_acme")...)
		clean(strings.Join(args, " ")+" output", out)
		if err != nil {
			clean(strings.Join(args, " ")+" error", err.Error())
		}
		if !strings.Contains(out, "pwned") && (err == nil || !strings.Contains(err.Error(), "pwned")) {
			t.Errorf("%v: the server's text is not shown at all: %q %v", args, out, err)
		}
	}
}
