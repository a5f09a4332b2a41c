package cli

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// adminDouble is an HTTP server in the place of a gateway's admin endpoint:
// it records what the commands ask of it and answers with status.
type adminDouble struct {
	mu     sync.Mutex
	calls  []string // "path body"
	status int
	srv    *httptest.Server
}

func newAdminDouble(t *testing.T, status int) *adminDouble {
	a := &adminDouble{status: status}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		a.mu.Lock()
		a.calls = append(a.calls, r.Method+" "+r.URL.Path+" "+string(b))
		a.mu.Unlock()
		if r.Header.Get("Origin") != "http://"+r.Host {
			w.WriteHeader(http.StatusForbidden) // Caddy checks the origin of admin requests
			return
		}
		w.WriteHeader(a.status)
		if a.status != 200 {
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "no key store of this Caddy reads the key file"})
		}
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *adminDouble) addr() string { return strings.TrimPrefix(a.srv.URL, "http://") }

func (a *adminDouble) taken() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := a.calls
	a.calls = nil
	return out
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestCommandTellsGateway: each store-mode change is told to the admin
// endpoint named by --admin, or by $CADDY_ADMIN by default: a key file
// re-read, its path absolute.
func TestCommandTellsGateway(t *testing.T) {
	gw := newAdminDouble(t, 200)
	path := filepath.Join(t.TempDir(), "keys.json")
	abs, _ := filepath.Abs(path)
	wantReload := "POST /deplo-auth/reload " + `{"path":` + string(mustJSON(abs)) + `}`

	if _, err := runDeploAuth(t, "token", "create", "--keys-file", path, "--workspace", "ws", "--scopes", "read", "--admin", gw.addr()); err != nil {
		t.Fatal(err)
	}
	if c := gw.taken(); len(c) != 1 || c[0] != wantReload {
		t.Fatalf("create told %q, want %q", c, wantReload)
	}
	t.Setenv(caddyAdminEnv, gw.addr())
	out, err := runDeploAuth(t, "token", "list", "--keys-file", path, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var list []struct{ ID string }
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 {
		t.Fatalf("list: %v %s", err, out)
	}
	if c := gw.taken(); len(c) != 0 {
		t.Errorf("list told the gateway %q: it changes nothing", c)
	}
	// Revoked through $CADDY_ADMIN, Caddy's default admin address.
	if _, err := runDeploAuth(t, "token", "revoke", "--keys-file", path, list[0].ID); err != nil {
		t.Fatal(err)
	}
	if c := gw.taken(); len(c) != 1 || c[0] != wantReload {
		t.Fatalf("revoke told %q, want %q", c, wantReload)
	}
	if _, err := runDeploAuth(t, "session", "revoke", "--keys-file", path, "sess_1"); err != nil {
		t.Fatal(err)
	}
	if c := gw.taken(); len(c) != 1 || c[0] != wantReload {
		t.Fatalf("session revoke told %q, want %q", c, wantReload)
	}
	if _, err := runDeploAuth(t, "token", "create", "--keys-file", path, "--workspace", "ws", "--scopes", "read", "--admin", "off"); err != nil {
		t.Fatal(err)
	}
	if c := gw.taken(); len(c) != 0 {
		t.Errorf("--admin off told %q", c)
	}
}

// TestCommandGatewayUnreachable: at the default address, a gateway not
// running or one that reads another store is no error (the watch carries
// the change); named with --admin, each is an error that says the store is
// changed, and the created token is still printed.
func TestCommandGatewayUnreachable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	dead := deadAddr(t)
	other := newAdminDouble(t, 404)
	create := func(admin ...string) (string, error) {
		return runDeploAuth(t, append([]string{"token", "create", "--keys-file", path, "--workspace", "ws", "--scopes", "read"}, admin...)...)
	}
	for _, addr := range []string{dead, other.addr()} {
		t.Setenv(caddyAdminEnv, addr)
		if out, err := create(); err != nil || !strings.Contains(out, "sk_live_") {
			t.Errorf("default address %s: %v\n%s", addr, err, out)
		}
	}
	for _, tc := range []struct{ addr, want string }{
		{dead, "did not answer"},
		{other.addr(), "did not apply it: no key store of this Caddy reads the key file"},
	} {
		out, err := create("--admin", tc.addr)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "the store is changed") ||
			!strings.Contains(err.Error(), tc.addr) {
			t.Errorf("--admin %s: %v, want an error saying %q", tc.addr, err, tc.want)
		}
		if !strings.Contains(out, "sk_live_") {
			t.Errorf("--admin %s: the created token is not printed: %s", tc.addr, out)
		}
	}
	if _, err := create("--admin", ""); err == nil || !strings.Contains(err.Error(), `"off"`) {
		t.Errorf("--admin \"\": %v", err)
	}
	if _, err := create("--admin", "not an address"); err == nil || !strings.Contains(err.Error(), "not a Caddy admin address") {
		t.Errorf("--admin with a bad address: %v", err)
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
