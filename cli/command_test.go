package cli

import (
	"bytes"
	"strings"
	"testing"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/deplo-sh/deplo-auth/keystore/pgstore"
)

// runDeploAuth runs "caddy deplo-auth args…" in-process and returns its
// stdout and stderr together.
func runDeploAuth(t *testing.T, args ...string) (string, error) {
	t.Helper()
	c, ok := caddycmd.Commands()["deplo-auth"]
	if !ok {
		t.Fatal("deplo-auth command not registered")
	}
	// As Caddy makes it (caddycmd's caddyCmdToCobra), so --help reads as
	// in the binary.
	cmd := &cobra.Command{Use: c.Name + " " + c.Usage, Short: c.Short, Long: c.Long}
	c.CobraFunc(cmd)
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

// TestCommandHelpShowsNoEnvironmentValue: the store flags fall back to
// $DEPLO_AUTH_POSTGRES and $DEPLO_AUTH_KEYS_FILE, whose values --help must
// never print (a DSN carries a password).
func TestCommandHelpShowsNoEnvironmentValue(t *testing.T) {
	const password = "s3cr3t-pw-in-env"
	t.Setenv(postgresEnv, "postgres://deplo:"+password+"@db.internal:5432/auth?sslmode=require")
	t.Setenv(keysFileEnv, "/srv/"+password+"/keys.json")
	for _, args := range [][]string{
		{"token", "create", "--help"},
		{"token", "revoke", "--help"},
		{"token", "list", "--help"},
		{"session", "revoke", "--help"},
		{"migrate", "--help"},
	} {
		out, err := runDeploAuth(t, args...)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if !strings.Contains(out, "--postgres") {
			t.Fatalf("%v: not the help text: %s", args, out)
		}
		if strings.Contains(out, password) {
			t.Errorf("%v prints a value of the environment:\n%s", args, out)
		}
	}
}

// TestCommandStoreFromEnvironment: with no store flag the environment
// variable still names the store.
func TestCommandStoreFromEnvironment(t *testing.T) {
	path := t.TempDir() + "/keys.json"
	t.Setenv(keysFileEnv, path)
	if _, err := runDeploAuth(t, "token", "create", "--workspace", "ws_acme", "--scopes", "read"); err != nil {
		t.Fatal(err)
	}
	out, err := runDeploAuth(t, "token", "list")
	if err != nil || !strings.Contains(out, "ws_acme") {
		t.Fatalf("token list from $%s: %v\n%s", keysFileEnv, err, out)
	}
	if _, err := runDeploAuth(t, "token", "revoke", "tok_unknown"); err == nil || !strings.Contains(err.Error(), "no token") {
		t.Errorf("revoking an unknown id: %v", err)
	}
}

func TestMigrationSummary(t *testing.T) {
	for _, tt := range []struct {
		res  pgstore.MigrateResult
		want string
	}{
		{pgstore.MigrateResult{Version: 5, Applied: []int{1, 2, 3, 4, 5}}, "schema at version 5 (applied now: 1, 2, 3, 4, 5)"},
		{pgstore.MigrateResult{Version: 5, Applied: []int{5}}, "schema at version 5 (applied now: 5)"},
		{pgstore.MigrateResult{Version: 5}, "schema at version 5 (applied now: none)"},
		{pgstore.MigrateResult{Version: 7}, "schema at version 7 (applied now: none)"},
	} {
		if got := migrationSummary(tt.res); got != tt.want {
			t.Errorf("migrationSummary(%+v) = %q, want %q", tt.res, got, tt.want)
		}
	}
}
