package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/jackc/pgx/v5"

	"github.com/deplo-sh/deplo-auth/internal/tcpproxy"
)

// pgEnv is a PostgreSQL schema of its own for one test, migrated, and the
// DSN that puts it on the search path.
type pgEnv struct {
	dsn, slowDSN, schema, app string
	// password is in every DSN given to Caddy (the machine's trust auth
	// ignores it), so tests can check that it is shown nowhere.
	password string
	// proxyDSN reaches the same database through proxy, which a test can
	// stop and start to take the database away from Caddy.
	proxyDSN string
	proxy    *tcpproxy.Proxy
	admin    *pgx.Conn
}

// newSchema makes a schema of its own (prefix plus a random suffix) on the
// DEPLO_AUTH_TEST_POSTGRES database, dropped at cleanup, and returns an
// admin connection, the schema and the base DSN as a URL whose options put
// the schema on the search path. It skips the test when the variable is
// not set.
func newSchema(t *testing.T, prefix string) (*pgx.Conn, string, *url.URL) {
	t.Helper()
	base := os.Getenv("DEPLO_AUTH_TEST_POSTGRES")
	if base == "" {
		t.Skip("DEPLO_AUTH_TEST_POSTGRES is not set; skipping the PostgreSQL end-to-end tests (.ci/run sets it)")
	}
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connecting to DEPLO_AUTH_TEST_POSTGRES: %v", err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema := prefix + hex.EncodeToString(b)
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		admin.Close(context.Background())
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("options", "-c search_path="+schema)
	u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20")
	return admin, schema, u
}

// newPG is a migrated schema of its own for a test that starts Caddy.
func newPG(t *testing.T) *pgEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("starts Caddy; skipped with -short")
	}
	admin, schema, u := newSchema(t, "deplo_it_")
	suffix := strings.TrimPrefix(schema, "deplo_it_")
	e := &pgEnv{schema: schema, app: "deplo-it-" + suffix, admin: admin}
	user, password := "postgres", ""
	if u.User != nil {
		user = u.User.Username()
		password, _ = u.User.Password()
	}
	if password == "" {
		password = "it-pg-password-" + suffix
	}
	e.password = password
	u.User = url.UserPassword(user, password)
	q := u.Query()
	q.Set("application_name", e.app)
	u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20")
	e.dsn = u.String()
	q.Set("application_name", e.app+"-slow")
	u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20")
	e.slowDSN = u.String()
	var err error
	if e.proxy, err = tcpproxy.New(u.Host); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.proxy.Cut)
	q.Set("application_name", e.app)
	q.Set("connect_timeout", "2")
	u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20")
	u.Host = e.proxy.Addr
	e.proxyDSN = u.String()
	if _, err := runCommand(t, "", "migrate", "--postgres", e.dsn); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return e
}

// count runs a counting query.
func (p *pgEnv) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := p.admin.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func pgCaddyfile(upstream string) string {
	return globalBlock("") + fmt.Sprintf(`
http://localhost:%d {
	handle /slow/* {
		deplo_auth {
			keys postgres {env.DEPLO_AUTH_IT_PG_DSN_SLOW} {
				lookup_query "SELECT id, name, workspace, project, scopes, created_at, expires_at, revoked_at FROM deplo_tokens, pg_sleep(1) WHERE hash = $1"
				query_timeout 200ms
			}
			route GET /slow/{workspace} read
		}
		reverse_proxy %s
	}
	handle /v2/* {
		# A second handler on the same store with a cache of its own (other
		# settings): one pool, one listener, two caches.
		deplo_auth {
			keys postgres {env.DEPLO_AUTH_IT_PG_DSN} {
				record_last_used
				query_timeout 500ms
			}
			cache {
				ttl 10m
			}
			route GET /v2/workspaces/{workspace}/projects read
		}
		reverse_proxy %s
	}
	handle {
		deplo_auth {
			keys postgres {env.DEPLO_AUTH_IT_PG_DSN} {
				record_last_used
				query_timeout 500ms
			}
			route GET /v1/workspaces/{workspace}/projects read
		}
		reverse_proxy %s
	}
}
`, httpPort, upstream, upstream, upstream)
}

func TestPostgresEndToEnd(t *testing.T) {
	pg := newPG(t)
	up := newRecorder(t)
	t.Setenv("DEPLO_AUTH_IT_PG_DSN", pg.proxyDSN)
	t.Setenv("DEPLO_AUTH_IT_PG_DSN_SLOW", pg.slowDSN)

	out, err := runCommand(t, "", "token", "create", "--postgres", pg.dsn, "--name", "CI", "--workspace", "ws_acme", "--scopes", "read")
	if err != nil {
		t.Fatal(err)
	}
	raw := strings.TrimSpace(out)
	newPGToken := func(name string) (raw, id string) {
		t.Helper()
		out, err := runCommand(t, "", "token", "create", "--postgres", pg.dsn, "--name", name, "--workspace", "ws_acme", "--scopes", "read")
		if err != nil {
			t.Fatal(err)
		}
		raw = strings.TrimSpace(out)
		if err := pg.admin.QueryRow(context.Background(), "SELECT id FROM "+pg.schema+".deplo_tokens WHERE name = $1", name).Scan(&id); err != nil {
			t.Fatal(err)
		}
		return raw, id
	}
	purgeRaw, purgeID := newPGToken("purge")
	stampedeRaw, _ := newPGToken("stampede")
	outageCached, _ := newPGToken("outage-cached")
	outageUncached, _ := newPGToken("outage-uncached")
	afterOutageRaw, afterOutageID := newPGToken("after-outage")

	tester := caddytest.NewTester(t)
	load(t, tester, pgCaddyfile(up.addr()))
	e := &env{t: t, tester: tester, up: up}
	bearer := "Bearer " + raw

	listeners := func() int {
		return pg.count(t, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", pg.app+"-listener")
	}

	t.Run("token from PostgreSQL works in both handlers", func(t *testing.T) {
		for _, path := range []string{"/v1/workspaces/ws_acme/projects", "/v2/workspaces/ws_acme/projects"} {
			if resp, body := e.do("GET", path, bearer); resp.StatusCode != 200 {
				t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
			}
		}
		if resp, _ := e.do("GET", "/v1/workspaces/ws_other/projects", bearer); resp.StatusCode != 403 {
			t.Fatalf("other workspace: %d", resp.StatusCode)
		}
		up.take()
	})

	t.Run("one listener for every handler of the store", func(t *testing.T) {
		if n := listeners(); n != 1 {
			t.Fatalf("%d LISTEN connections, want 1", n)
		}
	})

	t.Run("config reload does not leak connections", func(t *testing.T) {
		before := pg.count(t, "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE $1", pg.app+"%")
		t.Logf("%d connections of this test's stores before the reloads", before)
		for i := 0; i < 3; i++ {
			load(t, tester, pgCaddyfile(up.addr())+fmt.Sprintf("\n# reload %d\n", i))
		}
		time.Sleep(300 * time.Millisecond)
		if n := listeners(); n != 1 {
			t.Fatalf("%d LISTEN connections after 3 reloads, want 1", n)
		}
		after := pg.count(t, "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE $1", pg.app+"%")
		if after > before+1 {
			t.Fatalf("connections grew from %d to %d over 3 reloads", before, after)
		}
		if resp, _ := e.do("GET", "/v1/workspaces/ws_acme/projects", bearer); resp.StatusCode != 200 {
			t.Fatalf("after reloads: %d", resp.StatusCode)
		}
		up.take()
	})

	t.Run("last used written behind the request", func(t *testing.T) {
		deadline := time.Now().Add(10 * time.Second)
		for pg.count(t, "SELECT count(*) FROM "+pg.schema+".deplo_tokens WHERE last_used_at IS NOT NULL") == 0 {
			if time.Now().After(deadline) {
				t.Fatal("last_used_at not written within 10s")
			}
			time.Sleep(200 * time.Millisecond)
		}
	})

	t.Run("listener reconnect, then instant revocation while cached", func(t *testing.T) {
		pg.count(t, "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1) x", pg.app+"-listener")
		deadline := time.Now().Add(5 * time.Second)
		for listeners() != 1 {
			if time.Now().After(deadline) {
				t.Fatal("listener did not reconnect within 5s")
			}
			time.Sleep(50 * time.Millisecond)
		}
		if m := scrape(t); metricLine(m, `deplo_auth_store_reconnects_total{store="postgres"}`) == "" {
			t.Error("no reconnect metric")
		}
		// Cached in both handlers again after the reconnect dropped everything.
		for i := 0; i < 3; i++ {
			e.do("GET", "/v1/workspaces/ws_acme/projects", bearer)
			e.do("GET", "/v2/workspaces/ws_acme/projects", bearer)
			time.Sleep(20 * time.Millisecond)
		}
		up.take()
		var id string
		if err := pg.admin.QueryRow(context.Background(), "SELECT id FROM "+pg.schema+".deplo_tokens WHERE name = 'CI'").Scan(&id); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if _, err := runCommand(t, "", "token", "revoke", "--postgres", pg.dsn, id); err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{"/v1/workspaces/ws_acme/projects", "/v2/workspaces/ws_acme/projects"} {
			for {
				resp, _ := e.do("GET", path, bearer)
				if resp.StatusCode == 401 {
					break
				}
				if time.Since(start) > time.Second {
					t.Fatalf("%s: revoked token still accepted 1s after the revocation (cache TTL 5m)", path)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		t.Logf("revocation reached both handlers after %v", time.Since(start).Round(time.Millisecond))
		if got := up.take(); len(got) > 2 {
			t.Logf("%d requests passed before the revocation arrived", len(got))
		}
		if m := scrape(t); metricLine(m, `deplo_auth_revocations_total{source="postgres"}`) == "" {
			t.Error("no revocation metric")
		}
	})

	t.Run("stampede of first requests makes one query", func(t *testing.T) {
		before := metricValue(scrape(t), `deplo_auth_store_requests_total{result="found",store="postgres"}`)
		const n = 200
		var wg sync.WaitGroup
		statuses := make(chan int, n)
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				req, _ := http.NewRequest("GET", base+"/v1/workspaces/ws_acme/projects", nil)
				req.Header.Set("Authorization", "Bearer "+stampedeRaw)
				resp, err := e.tester.Client.Do(req)
				if err != nil {
					statuses <- -1
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				statuses <- resp.StatusCode
			}()
		}
		close(start)
		wg.Wait()
		close(statuses)
		for st := range statuses {
			if st != 200 {
				t.Fatalf("a concurrent first request got %d", st)
			}
		}
		after := metricValue(scrape(t), `deplo_auth_store_requests_total{result="found",store="postgres"}`)
		t.Logf("%d concurrent first requests for one key: %v store queries", n, after-before)
		if after-before != 1 {
			t.Errorf("%v store queries, want exactly 1", after-before)
		}
		up.take()
	})

	t.Run("admin purge drops a since-revoked token at once", func(t *testing.T) {
		for i := 0; i < 3; i++ {
			if resp, _ := e.do("GET", "/v1/workspaces/ws_acme/projects", "Bearer "+purgeRaw); resp.StatusCode != 200 {
				t.Fatalf("warm-up %d", resp.StatusCode)
			}
		}
		// Revoke behind the listener's back (triggers off for this session),
		// as a store without notifications would: the cache still has it.
		ctx := context.Background()
		if _, err := pg.admin.Exec(ctx, "SET session_replication_role = replica"); err != nil {
			t.Fatal(err)
		}
		if _, err := pg.admin.Exec(ctx, "UPDATE "+pg.schema+".deplo_tokens SET revoked_at = now() - interval '1 second' WHERE id = $1", purgeID); err != nil {
			t.Fatal(err)
		}
		if _, err := pg.admin.Exec(ctx, "SET session_replication_role = origin"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		if resp, _ := e.do("GET", "/v1/workspaces/ws_acme/projects", "Bearer "+purgeRaw); resp.StatusCode != 200 {
			t.Fatalf("the test needs the revoked token still cached; got %d", resp.StatusCode)
		}
		resp, err := http.Post("http://localhost:2999/deplo-auth/purge", "application/json", strings.NewReader(`{"id":"`+purgeID+`"}`))
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("purge: %v %v", err, resp)
		}
		resp.Body.Close()
		if resp, _ := e.do("GET", "/v1/workspaces/ws_acme/projects", "Bearer "+purgeRaw); resp.StatusCode != 401 {
			t.Fatalf("after purge: %d, want 401", resp.StatusCode)
		}
		up.take()
	})

	t.Run("database outage: 503 for uncached, cached keep working, resumes without restart", func(t *testing.T) {
		for i := 0; i < 3; i++ {
			if resp, _ := e.do("GET", "/v1/workspaces/ws_acme/projects", "Bearer "+outageCached); resp.StatusCode != 200 {
				t.Fatalf("warm-up %d", resp.StatusCode)
			}
		}
		pg.proxy.Cut()
		resp, body := e.do("GET", "/v1/workspaces/ws_acme/projects", "Bearer "+outageUncached)
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("uncached key with the database down: %d %s", resp.StatusCode, body)
		}
		if resp, _ := e.do("GET", "/v1/workspaces/ws_acme/projects", "Bearer "+outageCached); resp.StatusCode != 200 {
			t.Fatalf("cached key with the database down: %d, want 200 within its TTL", resp.StatusCode)
		}
		if err := pg.proxy.Restore(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(15 * time.Second)
		for {
			resp, _ := e.do("GET", "/v1/workspaces/ws_acme/projects", "Bearer "+outageUncached)
			if resp.StatusCode == 200 {
				break
			}
			if resp.StatusCode != 503 || time.Now().After(deadline) {
				t.Fatalf("after the database came back: %d", resp.StatusCode)
			}
			time.Sleep(100 * time.Millisecond)
		}
		up.take()
	})

	// Issue 15 item 10: after an outage long enough for the listener's
	// backoff to grow, a revocation made as soon as the database is back
	// takes effect within a second (a lookup reconnects the listener; old
	// cached answers are re-checked meanwhile).
	t.Run("revocation right after an outage within a second", func(t *testing.T) {
		path := "/v1/workspaces/ws_acme/projects"
		if resp, _ := e.do("GET", path, "Bearer "+afterOutageRaw); resp.StatusCode != 200 {
			t.Fatalf("warm-up %d", resp.StatusCode)
		}
		pg.proxy.Cut()
		time.Sleep(5 * time.Second) // listener retries at ~0.1, 0.3, 0.7, 1.5, 3 s…
		if err := pg.proxy.Restore(); err != nil {
			t.Fatal(err)
		}
		if _, err := pg.admin.Exec(context.Background(), "UPDATE "+pg.schema+".deplo_tokens SET revoked_at = now() WHERE id = $1", afterOutageID); err != nil {
			t.Fatal(err)
		}
		revoked := time.Now()
		for {
			resp, _ := e.do("GET", path, "Bearer "+afterOutageRaw)
			if resp.StatusCode == 401 {
				break
			}
			if time.Since(revoked) > time.Second {
				t.Fatalf("the token revoked after the outage still answers %d after %v", resp.StatusCode, time.Since(revoked))
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Logf("revocation in force %v after it was made", time.Since(revoked).Round(time.Millisecond))
		up.take()
	})

	t.Run("slow store answers 503, never 401, never allowed, never cached", func(t *testing.T) {
		for i := 0; i < 2; i++ {
			start := time.Now()
			resp, body := e.do("GET", "/slow/ws_acme", bearer)
			if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || resp.Header.Get("WWW-Authenticate") != "" {
				t.Fatalf("status %d %v: %s", resp.StatusCode, resp.Header, body)
			}
			if d := time.Since(start); d > 900*time.Millisecond {
				t.Errorf("503 took %v; query_timeout is 200ms", d)
			}
		}
		if got := up.take(); len(got) != 0 {
			t.Fatal("a request reached the upstream while the store failed")
		}
	})

	// The DSN carries a password: the admin API (deplo-auth status, Caddy's
	// own /config/) and /metrics name the database without it.
	t.Run("admin output and metrics never show the DSN password", func(t *testing.T) {
		for _, path := range []string{"/deplo-auth/status", "/config/", "/metrics"} {
			resp, err := http.Get("http://localhost:2999" + path)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("%s: %d", path, resp.StatusCode)
			}
			if strings.Contains(string(b), pg.password) {
				t.Errorf("%s shows the DSN password", path)
			}
			if path == "/deplo-auth/status" && !strings.Contains(string(b), `"store":"postgres:127.0.0.1:`) {
				t.Errorf("status does not name the database: %s", b)
			}
		}
	})
}

func scrape(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://localhost:2999/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// metricValue returns the value of the sample line starting with prefix, or 0.
func metricValue(body, prefix string) float64 {
	line := metricLine(body, prefix)
	if line == "" {
		return 0
	}
	var v float64
	fmt.Sscanf(line[strings.LastIndex(line, " ")+1:], "%g", &v)
	return v
}
