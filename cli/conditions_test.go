package cli

import (
	"bytes"
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/deplo-sh/deplo-auth/apikey"
	"github.com/deplo-sh/deplo-auth/keystore"
)

// runDeploAuthIn is runDeploAuth with stdin.
func runDeploAuthIn(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	c := caddycmd.Commands()["deplo-auth"]
	cmd := &cobra.Command{Use: c.Name}
	c.CobraFunc(cmd)
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

// token create --allowed-ips stores the normalised prefixes; a bad list
// creates nothing.
func TestTokenCreateAllowedIPs(t *testing.T) {
	t.Setenv("DEPLO_API_URL", "")
	t.Setenv(postgresEnv, "")
	path := filepath.Join(t.TempDir(), "keys.json")
	t.Setenv(keysFileEnv, path)
	if _, err := runDeploAuth(t, "token", "create", "--workspace", "ws_acme", "--scopes", "deploy",
		"--allowed-ips", "203.0.113.9/24,2001:db8::/32"); err != nil {
		t.Fatal(err)
	}
	kf, err := keystore.ReadKeyFile(path)
	if err != nil || len(kf.Tokens) != 1 || !slices.Equal(kf.Tokens[0].AllowedIPs, []string{"203.0.113.0/24", "2001:db8::/32"}) {
		t.Fatalf("stored %+v, %v", kf, err)
	}
	for _, bad := range []string{"203.0.113.0/33", "ci.example.com", strings.Repeat("10.0.0.0/8,", 32) + "10.0.0.0/8"} {
		if _, err := runDeploAuth(t, "token", "create", "--workspace", "ws_acme", "--scopes", "read", "--allowed-ips", bad); err == nil ||
			!strings.Contains(err.Error(), "--allowed-ips") {
			t.Errorf("--allowed-ips %.40s: %v", bad, err)
		}
	}
	if kf, _ := keystore.ReadKeyFile(path); len(kf.Tokens) != 1 {
		t.Errorf("a refused create wrote a token: %d tokens", len(kf.Tokens))
	}
}

// token revoke --value - revokes the token read from stdin, reason leaked;
// the token is never taken from the command line, nor sent to the API.
func TestTokenRevokeByValue(t *testing.T) {
	t.Setenv("DEPLO_API_URL", "")
	t.Setenv(postgresEnv, "")
	t.Setenv(keysFileEnv, "")
	path := filepath.Join(t.TempDir(), "keys.json")
	admin := &keystore.FileTokenManager{Path: path}
	raws := map[string]string{}
	for _, id := range []string{"tok_leaked", "tok_kept"} {
		raw, _ := apikey.Generate()
		raws[id] = raw
		if err := admin.CreateToken(context.Background(), keystore.TokenEntry{ID: id, Name: id, Hash: apikey.Sum(raw).String(),
			Workspace: "ws_acme", Scopes: []string{"read"}}); err != nil {
			t.Fatal(err)
		}
	}
	revoked := func(id string) keystore.TokenRecord {
		rec, err := admin.Token(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}
	// Refused: the value as an argument, with an id, through the API, not
	// a token, an unknown token.
	for _, tt := range []struct {
		stdin string
		args  []string
		want  string
	}{
		{"", []string{"--value", raws["tok_leaked"]}, `takes "-"`},
		{raws["tok_leaked"], []string{"--value", "-", "tok_kept"}, "not both"},
		{raws["tok_leaked"], []string{"--value", "-", "--api", "http://127.0.0.1:1", "--workspace", "ws_acme"}, "needs the key store"},
		{"hello\n", []string{"--value", "-"}, "not a deplo API token"},
		{mustGenerate(t) + "\n", []string{"--value", "-"}, "no token"},
	} {
		args := append([]string{"token", "revoke"}, tt.args...)
		if !slices.Contains(tt.args, "--api") {
			args = append(args, "--keys-file", path)
		} else {
			t.Setenv("DEPLO_KEY", "sk_live_x")
		}
		out, err := runDeploAuthIn(t, tt.stdin, args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: %v, want an error containing %q", tt.args, err, tt.want)
		}
		if strings.Contains(out, raws["tok_leaked"]) || err != nil && strings.Contains(err.Error(), raws["tok_leaked"]) {
			t.Errorf("%v: the token is printed", tt.args)
		}
	}
	for id := range raws {
		if revoked(id).RevokedAt != nil {
			t.Fatalf("a refused command revoked %s", id)
		}
	}
	out, err := runDeploAuthIn(t, raws["tok_leaked"]+"\n", "token", "revoke", "--keys-file", path, "--value", "-")
	if err != nil || !strings.Contains(out, "revoked tok_leaked") || strings.Contains(out, raws["tok_leaked"]) {
		t.Fatalf("revoke --value -: %v\n%s", err, out)
	}
	if rec := revoked("tok_leaked"); rec.RevokedAt == nil || rec.RevokedReason != keystore.RevokedLeaked {
		t.Errorf("tok_leaked after revoke --value: %+v", rec)
	}
	if revoked("tok_kept").RevokedAt != nil {
		t.Error("tok_kept was revoked")
	}
	if out, err := runDeploAuth(t, "token", "list", "--keys-file", path); err != nil || !strings.Contains(out, "(leaked)") {
		t.Errorf("list does not show the reason: %v\n%s", err, out)
	}
}

func mustGenerate(t *testing.T) string {
	t.Helper()
	raw, err := apikey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}
