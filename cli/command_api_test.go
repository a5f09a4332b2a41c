package cli

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deplo-sh/deplo-auth/keystore"
)

// In store mode, --workspace confines list and revoke as the API does.
func TestTokenCommandsWorkspaceInStoreMode(t *testing.T) {
	t.Setenv("DEPLO_API_URL", "")
	t.Setenv(keysFileEnv, "")
	t.Setenv(postgresEnv, "")
	path := filepath.Join(t.TempDir(), "keys.json")
	admin := &keystore.FileAdmin{Path: path}
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
