package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
)

// pgbouncerBinary finds Debian's pgbouncer (.ci/run installs it).
func pgbouncerBinary() string {
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/pgbouncer"); err == nil {
		return "/usr/sbin/pgbouncer"
	}
	return ""
}

// startPgbouncer runs a pgbouncer of the test's own (config, port and
// directory) in transaction mode in front of the test database, every
// server connection with search_path = schema. pgbouncer refuses to run as
// root: as root it is started with -u postgres. It returns host:port.
func startPgbouncer(t *testing.T, pg *pgEnv) string {
	t.Helper()
	bin := pgbouncerBinary()
	if bin == "" {
		t.Skip("pgbouncer is not installed (Debian package pgbouncer; .ci/run installs it); skipping the pgbouncer test")
	}
	u, err := url.Parse(os.Getenv("DEPLO_AUTH_TEST_POSTGRES"))
	if err != nil {
		t.Fatal(err)
	}
	host, port := u.Hostname(), u.Port()
	if h := u.Query().Get("host"); h != "" {
		host = h
	}
	if port == "" {
		port = "5432"
	}
	dbname := strings.TrimPrefix(u.Path, "/")
	// A directory of its own (t.TempDir's parent is closed to the
	// postgres user pgbouncer runs as).
	dir, err := os.MkdirTemp("", "deplo-pgbouncer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, bport, _ := net.SplitHostPort(addr)
	cfg := fmt.Sprintf(`[databases]
deplo = host=%s port=%s dbname=%s user=postgres connect_query='SET search_path = %s'

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %s
unix_socket_dir =
auth_type = trust
auth_file = %s
pool_mode = transaction
default_pool_size = 4
max_client_conn = 200
ignore_startup_parameters = extra_float_digits
logfile = %s
pidfile = %s
`, host, port, dbname, pg.schema, bport, filepath.Join(dir, "users.txt"), filepath.Join(dir, "pgbouncer.log"), filepath.Join(dir, "pgbouncer.pid"))
	if err := os.WriteFile(filepath.Join(dir, "users.txt"), []byte(`"postgres" ""`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pgbouncer.ini"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{filepath.Join(dir, "pgbouncer.ini")}
	if os.Geteuid() == 0 {
		pu, err := user.Lookup("postgres")
		if err != nil {
			t.Skip("pgbouncer refuses to run as root and there is no postgres user to run it as; skipping")
		}
		uid, _ := strconv.Atoi(pu.Uid)
		gid, _ := strconv.Atoi(pu.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		args = append([]string{"-u", "postgres"}, args...)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting pgbouncer: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(dir, "pgbouncer.log")); err == nil {
				t.Logf("pgbouncer log:\n%s", b)
			}
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("pgbouncer does not accept connections on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func pgbouncerCaddyfile(upstream string) string {
	return globalBlock("") + fmt.Sprintf(`
http://localhost:%d {
	# Gateway A: lookups and writes through pgbouncer (transaction mode),
	# LISTEN on a direct connection.
	handle /a/* {
		deplo_auth {
			keys postgres {env.DEPLO_AUTH_IT_PGB_A} {
				listen_dsn {env.DEPLO_AUTH_IT_PG_DIRECT}
				poll 300ms
			}
			route GET /a/{workspace} read
		}
		reverse_proxy %s
	}
	# Gateway B: everything through pgbouncer, LISTEN included, which
	# pgbouncer accepts in transaction mode and never delivers: deaf.
	handle /b/* {
		deplo_auth {
			keys postgres {env.DEPLO_AUTH_IT_PGB_B} {
				poll 300ms
			}
			route GET /b/{workspace} read
		}
		reverse_proxy %s
	}
}
`, httpPort, upstream, upstream)
}

// TestPgbouncerTransactionMode: two gateways (two stores, two caches) whose
// lookups and writes go through a real pgbouncer in transaction mode refuse
// a revoked token within a second, every time — A by notification on its
// direct listener, B, whose LISTEN goes through pgbouncer and is deaf, by
// the change-log poll — and B reports itself not listening.
func TestPgbouncerTransactionMode(t *testing.T) {
	pg := newPG(t)
	bouncer := startPgbouncer(t, pg)
	up := newRecorder(t)
	bouncerDSN := func(app string) string {
		return fmt.Sprintf("postgres://postgres@%s/deplo?sslmode=disable&application_name=%s-%s", bouncer, pg.app, app)
	}
	t.Setenv("DEPLO_AUTH_IT_PGB_A", bouncerDSN("a"))
	t.Setenv("DEPLO_AUTH_IT_PGB_B", bouncerDSN("b"))
	t.Setenv("DEPLO_AUTH_IT_PG_DIRECT", pg.dsn)
	cliDSN := bouncerDSN("cli")

	tester := caddytest.NewTester(t)
	load(t, tester, pgbouncerCaddyfile(up.addr()))
	e := &env{t: t, tester: tester, up: up}

	for i := range 5 {
		name := fmt.Sprintf("bouncer-%d", i)
		out, err := runCommand(t, "", "token", "create", "--postgres", cliDSN, "--name", name, "--workspace", "ws_acme", "--scopes", "read")
		if err != nil {
			t.Fatalf("create through pgbouncer: %v", err)
		}
		bearer := "Bearer " + strings.TrimSpace(out)
		var id string
		if err := pg.admin.QueryRow(context.Background(), "SELECT id FROM "+pg.schema+".deplo_tokens WHERE name = $1", name).Scan(&id); err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{"/a/ws_acme", "/b/ws_acme"} {
			if resp, body := e.do("GET", path, bearer); resp.StatusCode != 200 {
				t.Fatalf("%s before the revocation: %d %s", path, resp.StatusCode, body)
			}
		}
		if _, err := runCommand(t, "", "token", "revoke", "--postgres", cliDSN, id); err != nil {
			t.Fatalf("revoke through pgbouncer: %v", err)
		}
		ra, rb := untilBothRefuse(t, e, []string{"/a/ws_acme", "/b/ws_acme"}, bearer, fmt.Sprintf("revocation %d", i), time.Now())
		t.Logf("revocation %d refused by A after %v (notification), by B after %v (poll 300ms)", i, ra, rb)
		up.take()
	}

	// A bulk revocation (one UPDATE of 300 tokens: announced as a range,
	// read by A as one row over its listener, by B's poll through
	// pgbouncer as one aggregated row) is refused by both within 1 s too.
	var bearers []string
	for i := range 2 {
		out, err := runCommand(t, "", "token", "create", "--postgres", cliDSN, "--name", fmt.Sprintf("bulk-%d", i), "--workspace", "ws_bulk", "--scopes", "read")
		if err != nil {
			t.Fatalf("create through pgbouncer: %v", err)
		}
		bearers = append(bearers, "Bearer "+strings.TrimSpace(out))
	}
	if _, err := pg.admin.Exec(context.Background(), "INSERT INTO "+pg.schema+`.deplo_tokens (hash, id, workspace, scopes)
SELECT sha256(('bulk-fill-' || i)::bytea), 'tok_bulk_fill_' || i, 'ws_bulk', '{read}' FROM generate_series(1, 298) i`); err != nil {
		t.Fatal(err)
	}
	for _, bearer := range bearers {
		for _, path := range []string{"/a/ws_bulk", "/b/ws_bulk"} {
			if resp, body := e.do("GET", path, bearer); resp.StatusCode != 200 {
				t.Fatalf("%s before the bulk revocation: %d %s", path, resp.StatusCode, body)
			}
		}
	}
	if _, err := pg.admin.Exec(context.Background(), "UPDATE "+pg.schema+".deplo_tokens SET revoked_at = now() WHERE workspace = 'ws_bulk'"); err != nil {
		t.Fatal(err)
	}
	committed := time.Now()
	for i, bearer := range bearers {
		ra, rb := untilBothRefuse(t, e, []string{"/a/ws_bulk", "/b/ws_bulk"}, bearer, fmt.Sprintf("bulk revocation, token %d", i), committed)
		t.Logf("bulk revocation of 300, token %d refused by A after %v, by B after %v", i, ra, rb)
	}
	up.take()

	// B's listener never hears its heartbeat: reported not listening,
	// while both follow the change log. (The heartbeat is 10s.)
	type store struct {
		Listening *bool `json:"listening"`
		Following *bool `json:"following"`
		Ready     *bool `json:"ready"`
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://localhost:2999/deplo-auth/status")
		if err != nil {
			t.Fatal(err)
		}
		var st struct{ Stores []store }
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		deaf, hearing := 0, 0
		for _, s := range st.Stores {
			if s.Listening == nil || s.Following == nil || s.Ready == nil || !*s.Ready || !*s.Following {
				t.Fatalf("status: a PostgreSQL store not ready or not following the change log: %+v", st.Stores)
			}
			if *s.Listening {
				hearing++
			} else {
				deaf++
			}
		}
		if deaf == 1 && hearing == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status after %v: %d stores listening, %d not; want 1 and 1 (B deaf)", 20*time.Second, hearing, deaf)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// untilBothRefuse asks paths (gateway A's, then B's) with bearer until
// both answer 401, failing the test if that takes more than a second from
// revoked, or if either answers anything but 200 or 401 meanwhile. It
// returns how long after revoked each refused.
func untilBothRefuse(t *testing.T, e *env, paths []string, bearer, what string, revoked time.Time) (a, b time.Duration) {
	t.Helper()
	refused := map[string]time.Duration{}
	for len(refused) < len(paths) {
		for _, path := range paths {
			if _, done := refused[path]; done {
				continue
			}
			resp, body := e.do("GET", path, bearer)
			switch resp.StatusCode {
			case 401:
				refused[path] = time.Since(revoked)
			case 200:
			default:
				t.Fatalf("%s: %s: %d %s", what, path, resp.StatusCode, body)
			}
		}
		if d := time.Since(revoked); d > time.Second && len(refused) < len(paths) {
			t.Fatalf("%s: refused only by %v after %v (want both within 1s)", what, refused, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return refused[paths[0]].Round(time.Millisecond), refused[paths[1]].Round(time.Millisecond)
}
