package integration

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
)

// rounds is how many create-then-use and revoke-then-use pairs each way of
// changing the store must get right, back to back.
const rounds = 20

// The gateway's admin endpoint in these tests (see globalOptions).
const testAdmin = "localhost:2999"

// readPath is a route every token of these tests may read.
const readPath = "/v1/workspaces/ws_acme/projects"

// createRevokeRounds creates a token and uses it at once, then revokes it
// and uses it at once, rounds times, as a walk-through pasted in one block
// does: no pause between a command's return and the next request.
// create returns the new token and its id; revoke revokes that id.
func createRevokeRounds(t *testing.T, e *env, create func(i int) (raw, id string), revoke func(id string)) {
	t.Helper()
	wrong := 0
	for i := range rounds {
		raw, id := create(i)
		if resp, body := e.do("GET", readPath, "Bearer "+raw); resp.StatusCode != 200 {
			wrong++
			t.Errorf("round %d: a token just created: %d %s", i, resp.StatusCode, body)
		}
		revoke(id)
		if resp, body := e.do("GET", readPath, "Bearer "+raw); resp.StatusCode != 401 {
			wrong++
			t.Errorf("round %d: a token just revoked: %d %s (the request got through)", i, resp.StatusCode, body)
		}
	}
	if wrong > 0 {
		t.Errorf("%d of %d requests wrong", wrong, 2*rounds)
	}
}

// cliToken creates a read token with the CLI and returns it and its id
// (the id from stderr's "created token tok_… in …").
func cliToken(t *testing.T, args ...string) (raw, id string) {
	t.Helper()
	out, errOut, err := runCommandErr(t, "", append([]string{"token", "create", "--name", "paste",
		"--workspace", "ws_acme", "--scopes", "read"}, args...)...)
	if err != nil {
		t.Fatalf("token create: %v\n%s", err, errOut)
	}
	f := strings.Fields(errOut)
	if len(f) < 3 || f[0] != "created" || !strings.HasPrefix(f[2], "tok_") {
		t.Fatalf("token create said %q", errOut)
	}
	return strings.TrimSpace(out), f[2]
}

// TestKeyFileCommandInForceOnReturn: a token created or revoked with the
// CLI in the key file is in force on the running gateway when the command
// returns, told through --admin or through Caddy's default address
// ($CADDY_ADMIN here, as the gateway reads it).
func TestKeyFileCommandInForceOnReturn(t *testing.T) {
	e := start(t)
	for _, mode := range []struct {
		name string
		args []string
		env  string
	}{
		{"--admin", []string{"--admin", testAdmin}, ""},
		{"default address", nil, testAdmin},
	} {
		t.Run(mode.name, func(t *testing.T) {
			if mode.env != "" {
				t.Setenv("CADDY_ADMIN", mode.env)
			}
			createRevokeRounds(t, e, func(int) (string, string) {
				return cliToken(t, append([]string{"--keys-file", e.keysFile}, mode.args...)...)
			}, func(id string) {
				if _, err := runCommand(t, "", append([]string{"token", "revoke", "--keys-file", e.keysFile, id}, mode.args...)...); err != nil {
					t.Fatal(err)
				}
			})
		})
	}
	e.up.take()
}

// TestKeyFileHandEditInForce edits the key file by hand, as a script or an
// editor would: a change is in force after POST /deplo-auth/reload returns
// (a script that cannot wait), and without it once the file's watch has
// brought it in, a matter of milliseconds (BenchmarkKeyFilePropagation).
func TestKeyFileHandEditInForce(t *testing.T) {
	e := start(t)
	reload := func() {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+testAdmin+"/deplo-auth/reload",
			strings.NewReader(`{"path":"`+e.keysFile+`"}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("reload: %d", resp.StatusCode)
		}
	}
	var live []token
	edit := func(i int) (string, string) {
		tk := newToken(t, "tok_hand_"+string(rune('a'+i)), "ws_acme", "", "read")
		live = append(live, tk)
		writeKeys(t, e.keysFile, live...)
		return tk.Raw, tk.ID
	}
	revokeByEdit := func(id string) {
		now := time.Now().UTC().Add(-time.Second).Truncate(time.Second)
		for i := range live {
			if live[i].ID == id {
				live[i].RevokedAt = &now
			}
		}
		writeKeys(t, e.keysFile, live...)
	}
	t.Run("with reload", func(t *testing.T) {
		createRevokeRounds(t, e, func(i int) (string, string) {
			raw, id := edit(i)
			reload()
			return raw, id
		}, func(id string) {
			revokeByEdit(id)
			reload()
		})
	})
	t.Run("by the watch", func(t *testing.T) {
		live = nil
		for i := range rounds {
			raw, id := edit(i)
			waitStatus(t, e, "GET", readPath, "Bearer "+raw, 200)
			revokeByEdit(id)
			waitStatus(t, e, "GET", readPath, "Bearer "+raw, 401)
		}
	})
	t.Run("reload refuses a file this gateway does not read", func(t *testing.T) {
		other := filepath.Join(t.TempDir(), "other.json")
		writeKeys(t, other)
		resp, err := http.Post("http://"+testAdmin+"/deplo-auth/reload", "application/json",
			bytes.NewReader([]byte(`{"path":"`+other+`"}`)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Fatalf("reload of a file no store reads: %d, want 404", resp.StatusCode)
		}
	})
	e.up.take()
}

// TestCommandAdminErrors: with --admin, a gateway that cannot be told is
// an error that says the store is changed; at the default address, no
// gateway running is no error.
func TestCommandAdminErrors(t *testing.T) {
	e := start(t)
	t.Setenv("CADDY_ADMIN", "localhost:2998") // nothing listens there
	if _, err := runCommand(t, "", "token", "create", "--keys-file", e.keysFile, "--workspace", "ws_acme", "--scopes", "read"); err != nil {
		t.Errorf("no gateway at the default address: %v", err)
	}
	out, err := runCommand(t, "", "token", "create", "--keys-file", e.keysFile, "--workspace", "ws_acme", "--scopes", "read",
		"--admin", "localhost:2998")
	if err == nil || !strings.Contains(err.Error(), "localhost:2998") || !strings.Contains(err.Error(), "the store is changed") {
		t.Errorf("--admin with no gateway: %v", err)
	}
	if !strings.HasPrefix(out, "sk_live_") {
		t.Errorf("the token created is not printed when the gateway cannot be told: %q", out)
	}
	other := filepath.Join(t.TempDir(), "other.json")
	if _, err := runCommand(t, "", "token", "create", "--keys-file", other, "--workspace", "ws_acme", "--scopes", "read",
		"--admin", testAdmin); err == nil || !strings.Contains(err.Error(), "no key store of this Caddy reads the key file") {
		t.Errorf("--admin of a gateway that reads another file: %v", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("the token was not created: %v", err)
	}
}

// TestPostgresCommandInForceOnReturn: the same with the PostgreSQL store;
// the gateway is told after the commit and drops the token from every
// cache, so no request waits for the notification.
func TestPostgresCommandInForceOnReturn(t *testing.T) {
	pg := newPG(t)
	up := newRecorder(t)
	t.Setenv("DEPLO_AUTH_IT_PG_DSN", pg.dsn)
	t.Setenv("DEPLO_AUTH_IT_PG_DSN_SLOW", pg.slowDSN)
	tester := caddytest.NewTester(t)
	load(t, tester, pgCaddyfile(up.addr()))
	e := &env{t: t, tester: tester, up: up}
	createRevokeRounds(t, e, func(int) (string, string) {
		return cliToken(t, "--postgres", pg.dsn, "--admin", testAdmin)
	}, func(id string) {
		if _, err := runCommand(t, "", "token", "revoke", "--postgres", pg.dsn, "--admin", testAdmin, id); err != nil {
			t.Fatal(err)
		}
	})
	up.take()
}
