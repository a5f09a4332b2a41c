package keystore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap/zaptest"
)

// testPostgresEnv names the environment variable holding the DSN of the
// PostgreSQL the tests use, e.g.
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable.
const testPostgresEnv = "DEPLO_AUTH_TEST_POSTGRES"

// pgEnv is one test's private schema on the test database.
type pgEnv struct {
	base   string // the DSN from the environment
	schema string
	app    string // application_name of this test's connections
	dsn    string // base with search_path = schema and application_name = app
	admin  *pgxpool.Pool
	stores int // stores opened, numbering their application_name
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// withParams adds connection parameters to a DSN of either form.
func withParams(t testing.TB, dsn string, params map[string]string) string {
	t.Helper()
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatalf("%s: not a URL", testPostgresEnv)
		}
		q := u.Query()
		for k, v := range params {
			q.Set(k, v)
		}
		// pgx reads '+' literally: spaces must be %20.
		u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20")
		return u.String()
	}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		dsn += fmt.Sprintf(" %s='%s'", k, strings.ReplaceAll(params[k], `'`, `\'`))
	}
	return dsn
}

// newPGEnv skips the test when no PostgreSQL is configured, else creates a
// schema of its own (dropped at cleanup) and, with migrate, applies the
// shipped schema to it.
func newPGEnv(t *testing.T, migrate bool) *pgEnv {
	t.Helper()
	base := os.Getenv(testPostgresEnv)
	if base == "" {
		t.Skipf("%s is not set; skipping the PostgreSQL tests (set it to a DSN such as postgres://postgres@127.0.0.1:5432/test?sslmode=disable)", testPostgresEnv)
	}
	id := randomHex(6)
	e := &pgEnv{base: base, schema: "deplo_test_" + id, app: "deplo_test_" + id}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connecting to %s: %v", testPostgresEnv, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+e.schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), base)
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(context.Background(), "DROP SCHEMA "+e.schema+" CASCADE"); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	e.dsn = withParams(t, base, map[string]string{
		"options":          "-c search_path=" + e.schema,
		"application_name": e.app,
	})
	e.admin, err = pgxpool.New(ctx, withParams(t, e.dsn, map[string]string{"application_name": e.app + "_admin"}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.admin.Close)
	if migrate {
		if err := Migrate(ctx, e.admin); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// nextDSN returns the DSN for one more store: each has its own
// application_name, so that its listener can be told apart.
func (e *pgEnv) nextDSN(t *testing.T) string {
	e.stores++
	return withParams(t, e.dsn, map[string]string{"application_name": fmt.Sprintf("%s_%d", e.app, e.stores)})
}

// open opens a store on the test schema; the store is closed at cleanup.
func (e *pgEnv) open(t *testing.T, opts PostgresOptions) *PostgresStore {
	t.Helper()
	if opts.DSN == "" {
		opts.DSN = e.nextDSN(t)
	}
	if opts.Logger == nil {
		opts.Logger = zaptest.NewLogger(t)
	}
	s, err := OpenPostgres(context.Background(), opts)
	if err != nil {
		t.Fatalf("OpenPostgres: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func (e *pgEnv) exec(t *testing.T, sql string, args ...any) int64 {
	t.Helper()
	tag, err := e.admin.Exec(context.Background(), sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return tag.RowsAffected()
}

// newToken returns a token entry with a random hash.
func newToken(id string) (TokenEntry, Hash) {
	var h Hash
	if _, err := rand.Read(h[:]); err != nil {
		panic(err)
	}
	return TokenEntry{
		ID: id, Name: "name of " + id, Hash: FormatHash(h), Workspace: "ws_acme",
		Scopes: []string{"deploy", "read"}, CreatedAt: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC),
	}, h
}

// insertToken inserts a token row directly.
func (e *pgEnv) insertToken(t *testing.T, id string) Hash {
	t.Helper()
	_, h := newToken(id)
	e.exec(t, `INSERT INTO deplo_tokens (hash, id, workspace, scopes) VALUES ($1, $2, 'ws_acme', '{read}')`, h[:], id)
	return h
}

// event is one Watch callback.
type event struct {
	h   Hash
	all bool
	at  time.Time
}

// watch subscribes to s; events arrive on the returned channel.
func watch(t *testing.T, s *PostgresStore) <-chan event {
	ch := make(chan event, 1000)
	stop := s.Watch(func(h Hash, all bool) {
		select {
		case ch <- event{h, all, time.Now()}:
		default:
			t.Error("watch channel full")
		}
	})
	t.Cleanup(stop)
	return ch
}

// waitEvent waits for an event matching match, ignoring others (other
// tests' notifications share the database's channel). It returns the event.
func waitEvent(t *testing.T, ch <-chan event, timeout time.Duration, what string, match func(event) bool) event {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev := <-ch:
			if match(ev) {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %s within %v", what, timeout)
		}
	}
}

func forHash(h Hash) func(event) bool { return func(ev event) bool { return !ev.all && ev.h == h } }
func isAll(ev event) bool             { return ev.all }

func TestPostgresMigrate(t *testing.T) {
	e := newPGEnv(t, false)
	ctx := context.Background()
	for i := range 2 {
		if err := Migrate(ctx, e.admin); err != nil {
			t.Fatalf("Migrate #%d: %v", i+1, err)
		}
	}
	ms, err := migrations()
	if err != nil || len(ms) == 0 {
		t.Fatalf("embedded migrations: %v, %d", err, len(ms))
	}
	var n int
	if err := e.admin.QueryRow(ctx, `SELECT count(*) FROM deplo_schema_migrations`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(ms) {
		t.Errorf("deplo_schema_migrations has %d rows, want %d", n, len(ms))
	}

	// The table's constraints hold.
	_, h := newToken("tok_x")
	for _, bad := range []struct {
		what string
		sql  string
		args []any
	}{
		{"short hash", `INSERT INTO deplo_tokens (hash, id, workspace, scopes) VALUES ('\x00ff', 'tok_s', 'ws', '{}')`, nil},
		{"empty project", `INSERT INTO deplo_tokens (hash, id, workspace, project, scopes) VALUES ($1, 'tok_p', 'ws', '', '{}')`, []any{h[:]}},
		{"null scope", `INSERT INTO deplo_tokens (hash, id, workspace, scopes) VALUES ($1, 'tok_n', 'ws', ARRAY[NULL]::text[])`, []any{h[:]}},
		{"empty session id", `INSERT INTO deplo_revoked_sessions (session_id) VALUES ('')`, nil},
	} {
		if _, err := e.admin.Exec(ctx, bad.sql, bad.args...); err == nil {
			t.Errorf("%s accepted", bad.what)
		}
	}
}

func TestPostgresMigrateConcurrent(t *testing.T) {
	e := newPGEnv(t, false)
	var wg sync.WaitGroup
	errs := make([]error, 5)
	for i := range errs {
		wg.Go(func() { errs[i] = Migrate(context.Background(), e.admin) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("migrator %d: %v", i, err)
		}
	}
	var versions []int32
	rows, err := e.admin.Query(context.Background(), `SELECT version FROM deplo_schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	if versions, err = pgx.CollectRows(rows, pgx.RowTo[int32]); err != nil {
		t.Fatal(err)
	}
	if len(versions) != 1 || versions[0] != 1 {
		t.Errorf("versions applied: %v, want [1]", versions)
	}
	e.insertToken(t, "tok_after_migrate")
}

func TestPostgresLookup(t *testing.T) {
	e := newPGEnv(t, true)
	s := e.open(t, PostgresOptions{})
	ctx := context.Background()

	entry, h := newToken("tok_full")
	p := "weekly-report"
	entry.Project = &p
	exp := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	rev := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	entry.ExpiresAt, entry.RevokedAt = &exp, &rev
	if err := s.CreateToken(ctx, entry); err != nil {
		t.Fatal(err)
	}
	tok, err := s.Lookup(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	if tok.ID != "tok_full" || tok.Name != "name of tok_full" || tok.Workspace != "ws_acme" ||
		tok.Project != "weekly-report" || tok.Hash != h || !slices.Equal(tok.Scopes, []string{"deploy", "read"}) ||
		!tok.CreatedAt.Equal(entry.CreatedAt) || !tok.ExpiresAt.Equal(exp) || !tok.RevokedAt.Equal(rev) {
		t.Errorf("Lookup = %+v", tok)
	}
	if !tok.Active(rev.Add(-time.Second)) || tok.Active(rev) {
		t.Error("revoked_at not in effect at its instant")
	}

	// Workspace-scoped, no expiry or revocation.
	h2 := e.insertToken(t, "tok_ws")
	tok, err = s.Lookup(ctx, h2)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Project != "" || !tok.ExpiresAt.IsZero() || !tok.RevokedAt.IsZero() || tok.CreatedAt.IsZero() ||
		!tok.Active(time.Now()) || tok.Name != "" {
		t.Errorf("workspace token = %+v", tok)
	}

	// Infinite times: +infinity is never, -infinity is always.
	e.exec(t, `UPDATE deplo_tokens SET expires_at = 'infinity', revoked_at = '-infinity' WHERE id = 'tok_ws'`)
	tok, err = s.Lookup(ctx, h2)
	if err != nil {
		t.Fatal(err)
	}
	if !tok.ExpiresAt.IsZero() || tok.RevokedAt.IsZero() || tok.Active(time.Now()) {
		t.Errorf("infinite times: %+v", tok)
	}

	var unknown Hash
	unknown[0] = 1
	if _, err := s.Lookup(ctx, unknown); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown hash: %v, want ErrNotFound", err)
	}
}

func TestPostgresCustomLookupQuery(t *testing.T) {
	e := newPGEnv(t, false) // no shipped schema: no sessions table either
	e.exec(t, `CREATE TABLE api_keys (
		key_sha256 bytea PRIMARY KEY, key_id uuid NOT NULL, label varchar(50), org text NOT NULL,
		app text, perms text NOT NULL, made timestamp NOT NULL, valid_until timestamptz, disabled boolean NOT NULL DEFAULT false)`)
	_, h := newToken("x")
	e.exec(t, `INSERT INTO api_keys VALUES ($1, '6f1b2e9a-5a0c-4d3e-9f8b-1c2d3e4f5a6b', NULL, 'ws_org', 'proj', 'read deploy', '2026-01-02 03:04:05', NULL, true)`, h[:])
	s := e.open(t, PostgresOptions{LookupQuery: `SELECT key_id::text, label, org, app, string_to_array(perms, ' '),
		made AT TIME ZONE 'UTC', valid_until, CASE WHEN disabled THEN made AT TIME ZONE 'UTC' END
		FROM api_keys WHERE key_sha256 = $1`})
	tok, err := s.Lookup(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if tok.ID != "6f1b2e9a-5a0c-4d3e-9f8b-1c2d3e4f5a6b" || tok.Name != "" || tok.Workspace != "ws_org" || tok.Project != "proj" ||
		!slices.Equal(tok.Scopes, []string{"read", "deploy"}) || !tok.CreatedAt.Equal(created) || !tok.RevokedAt.Equal(created) {
		t.Errorf("Lookup = %+v", tok)
	}
	var other Hash
	if _, err := s.Lookup(context.Background(), other); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown: %v", err)
	}
	if s.SessionRevoked("any") {
		t.Error("session revoked without a sessions table")
	}
}

func TestPostgresLookupQueryWrongShape(t *testing.T) {
	e := newPGEnv(t, true)
	for _, tt := range []struct{ query, want string }{
		{`SELECT id, name FROM deplo_tokens WHERE hash = $1`, "returns 2 columns; want 8: id, name, workspace"},
		{`SELECT id, name, workspace, project, scopes, created_at, expires_at, revoked_at FROM deplo_tokens`, "takes 0 parameters"},
		{`SELECT id FROM no_such_table WHERE hash = $1`, "no_such_table"},
	} {
		_, err := OpenPostgres(context.Background(), PostgresOptions{DSN: e.dsn, LookupQuery: tt.query})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("query %q: err = %v, want it to contain %q", tt.query, err, tt.want)
		}
	}

	// Eight columns of the wrong types: found at lookup, and an error, not
	// "not found".
	h := e.insertToken(t, "tok_types")
	s := e.open(t, PostgresOptions{LookupQuery: `SELECT id, name, workspace, project, 42, created_at, expires_at, revoked_at
		FROM deplo_tokens WHERE hash = $1`})
	_, err := s.Lookup(context.Background(), h)
	if err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "reading the row") {
		t.Errorf("wrong types: %v", err)
	}
	if strings.Contains(err.Error(), hex.EncodeToString(h[:])) {
		t.Error("error shows the hash")
	}

	// An empty project is an error, never workspace-wide.
	s2 := e.open(t, PostgresOptions{LookupQuery: `SELECT id, name, workspace, '', scopes, created_at, expires_at, revoked_at
		FROM deplo_tokens WHERE hash = $1`})
	if _, err := s2.Lookup(context.Background(), h); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("empty project: %v", err)
	}
	// Two rows for one hash.
	s3 := e.open(t, PostgresOptions{LookupQuery: `SELECT id, name, workspace, project, scopes, created_at, expires_at, revoked_at
		FROM deplo_tokens, generate_series(1, 2) WHERE hash = $1`})
	if _, err := s3.Lookup(context.Background(), h); err == nil || !strings.Contains(err.Error(), "more than one row") {
		t.Errorf("two rows: %v", err)
	}
}

func TestPostgresDefaultQueryNeedsSchema(t *testing.T) {
	e := newPGEnv(t, false)
	_, err := OpenPostgres(context.Background(), PostgresOptions{DSN: e.dsn})
	if err == nil || !strings.Contains(err.Error(), "Migrate") {
		t.Errorf("unmigrated database: %v", err)
	}
	s := e.open(t, PostgresOptions{Migrate: true})
	if _, err := s.Lookup(context.Background(), Hash{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("after the migrate option: %v", err)
	}
}

func TestPostgresNotifications(t *testing.T) {
	e := newPGEnv(t, true)
	s := e.open(t, PostgresOptions{})
	events := watch(t, s)
	gen := s.Generation()

	// INSERT notifies.
	h := e.insertToken(t, "tok_n")
	waitEvent(t, events, time.Second, "notification of the INSERT", forHash(h))

	// UPDATE of revoked_at notifies, within a second.
	start := time.Now()
	e.exec(t, `UPDATE deplo_tokens SET revoked_at = now() WHERE hash = $1`, h[:])
	ev := waitEvent(t, events, time.Second, "notification of the revocation", forHash(h))
	t.Logf("revocation notified after %v", ev.at.Sub(start))

	// An UPDATE of last_used_at alone does not notify, nor one that changes
	// nothing; a later real change does, and since notifications arrive in
	// commit order, exactly one arrives for h.
	e.exec(t, `UPDATE deplo_tokens SET last_used_at = now() WHERE hash = $1`, h[:])
	e.exec(t, `UPDATE deplo_tokens SET last_used_at = now() - interval '1 hour' WHERE hash = $1`, h[:])
	e.exec(t, `UPDATE deplo_tokens SET name = name WHERE hash = $1`, h[:])
	e.exec(t, `UPDATE deplo_tokens SET name = 'renamed' WHERE hash = $1`, h[:])
	waitEvent(t, events, time.Second, "notification of the rename", forHash(h))
	select {
	case ev := <-events:
		if !ev.all && ev.h == h {
			t.Fatal("an update of last_used_at alone, or of nothing, was notified")
		}
	case <-time.After(300 * time.Millisecond):
	}

	// Changing the hash notifies both.
	_, h2 := newToken("")
	e.exec(t, `UPDATE deplo_tokens SET hash = $2 WHERE hash = $1`, h[:], h2[:])
	waitEvent(t, events, time.Second, "notification of the old hash", forHash(h))
	waitEvent(t, events, time.Second, "notification of the new hash", forHash(h2))

	// DELETE notifies.
	e.exec(t, `DELETE FROM deplo_tokens WHERE hash = $1`, h2[:])
	waitEvent(t, events, time.Second, "notification of the DELETE", forHash(h2))

	if s.Generation() != gen {
		t.Errorf("generation moved from %d to %d on per-token changes", gen, s.Generation())
	}

	// TRUNCATE: everything.
	e.exec(t, `TRUNCATE deplo_tokens`)
	waitEvent(t, events, time.Second, "all=true after TRUNCATE", isAll)
	if s.Generation() == gen {
		t.Error("generation not bumped after TRUNCATE")
	}

	// A malformed payload: everything, on the safe side.
	gen = s.Generation()
	e.exec(t, `SELECT pg_notify('deplo_auth', 'not json')`)
	waitEvent(t, events, time.Second, "all=true after a malformed payload", isAll)
	if s.Generation() == gen {
		t.Error("generation not bumped after a malformed payload")
	}
	e.exec(t, `SELECT pg_notify('deplo_auth', '{"table":"tokens","hash":"abc"}')`)
	waitEvent(t, events, time.Second, "all=true after a bad hash", isAll)

	// Unsubscribed: no more calls.
	var calls atomic.Int32
	stop := s.Watch(func(Hash, bool) { calls.Add(1) })
	stop()
	stop()
	h3 := e.insertToken(t, "tok_after_stop")
	waitEvent(t, events, time.Second, "notification of the last INSERT", forHash(h3))
	if calls.Load() != 0 {
		t.Error("stopped watcher called")
	}
}

// terminateListener kills the store's listener connection from the server
// side and returns how many backends were terminated.
func (e *pgEnv) terminateListener(t *testing.T, s *PostgresStore) int {
	t.Helper()
	if !strings.HasPrefix(s.listenName, e.app+"_") || !strings.HasSuffix(s.listenName, "-listener") {
		t.Fatalf("listener application_name %q", s.listenName)
	}
	var n int
	err := e.admin.QueryRow(context.Background(), `SELECT count(*) FROM (
		SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1) k`, s.listenName).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPostgresReconnect(t *testing.T) {
	e := newPGEnv(t, true)
	var reconnects atomic.Int32
	s := e.open(t, PostgresOptions{OnReconnect: func() { reconnects.Add(1) }})
	events := watch(t, s)
	gen := s.Generation()

	start := time.Now()
	if n := e.terminateListener(t, s); n != 1 {
		t.Fatalf("terminated %d listener backends, want 1", n)
	}
	ev := waitEvent(t, events, 5*time.Second, "all=true after the listener was killed", isAll)
	t.Logf("listener back after %v", ev.at.Sub(start))
	if s.Generation() <= gen {
		t.Errorf("generation %d, want above %d", s.Generation(), gen)
	}
	waitFor(t, time.Second, "OnReconnect called", func() bool { return reconnects.Load() == 1 })

	// Notifications flow again.
	h := e.insertToken(t, "tok_after_reconnect")
	waitEvent(t, events, time.Second, "notification after the reconnect", forHash(h))

	// Twice in a row.
	gen = s.Generation()
	if n := e.terminateListener(t, s); n != 1 {
		t.Fatalf("terminated %d listener backends, want 1", n)
	}
	waitEvent(t, events, 5*time.Second, "all=true after the second kill", isAll)
	waitFor(t, time.Second, "OnReconnect called again", func() bool { return reconnects.Load() == 2 })
	if s.Generation() <= gen {
		t.Error("generation not bumped by the second reconnect")
	}
	e.exec(t, `UPDATE deplo_tokens SET revoked_at = now() WHERE hash = $1`, h[:])
	waitEvent(t, events, time.Second, "notification after the second reconnect", forHash(h))
}

func TestPostgresListenerIdlePing(t *testing.T) {
	e := newPGEnv(t, true)
	var reconnects atomic.Int32
	s := e.open(t, PostgresOptions{listenHealth: 30 * time.Millisecond, OnReconnect: func() { reconnects.Add(1) }})
	events := watch(t, s)
	gen := s.Generation()
	time.Sleep(300 * time.Millisecond) // several idle waits, each followed by a ping
	h := e.insertToken(t, "tok_idle")
	waitEvent(t, events, time.Second, "notification after idle pings", forHash(h))
	if reconnects.Load() != 0 || s.Generation() != gen {
		t.Errorf("idle pings reconnected (%d) or moved the generation (%d → %d)", reconnects.Load(), gen, s.Generation())
	}
}

func TestPostgresFaults(t *testing.T) {
	e := newPGEnv(t, true)
	const pw = "s3cr3t-Passw0rd"
	for _, dsn := range []string{
		"postgres://deplo:" + pw + "@127.0.0.1:1/test?sslmode=disable&connect_timeout=2",
		"host=127.0.0.1 port=1 user=deplo password=" + pw + " dbname=test sslmode=disable connect_timeout=2",
		"host=127.0.0.1 port=1 user=deplo password='" + pw + "' dbname=test sslmode=disable connect_timeout=2",
		"postgres://deplo:" + pw + "@127.0.0.1:notaport/test", // does not parse
		"postgres://deplo:" + pw + "@127.0.0.1:1/test?sslmode=bogus",
		"host=127.0.0.1 password=" + pw + " sslmode=bogus",
		"host=127.0.0.1 password = " + pw + " port=abc", // pgx's own redaction misses this one
		"postgres://deplo@127.0.0.1:1/test?password=" + pw + "&sslmode=disable&connect_timeout=2",
	} {
		start := time.Now()
		_, err := OpenPostgres(context.Background(), PostgresOptions{DSN: dsn})
		if err == nil {
			t.Errorf("OpenPostgres(%q) succeeded", strings.ReplaceAll(dsn, pw, "…"))
			continue
		}
		if strings.Contains(err.Error(), pw) || strings.Contains(fmt.Sprintf("%+v", err), pw) {
			t.Errorf("error shows the password: %v", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("OpenPostgres took %v", d)
		}
		t.Logf("%v", err)
	}

	h := e.insertToken(t, "tok_fault")
	ctx := context.Background()

	// A timeout too short to do anything.
	s := e.open(t, PostgresOptions{QueryTimeout: time.Nanosecond})
	if _, err := s.Lookup(ctx, h); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("1ns timeout: %v", err)
	}

	// A cancelled caller.
	s = e.open(t, PostgresOptions{})
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Lookup(cctx, h); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("cancelled context: %v", err)
	}
	if _, err := s.Lookup(ctx, h); err != nil {
		t.Fatalf("lookup: %v", err)
	}

	// After the pool is closed.
	s.Pool().Close()
	if _, err := s.Lookup(ctx, h); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("closed pool: %v", err)
	}

	// A slow query is cut off at QueryTimeout.
	slow := e.open(t, PostgresOptions{QueryTimeout: 200 * time.Millisecond,
		LookupQuery: `SELECT id, name, workspace, project, scopes, created_at, expires_at, revoked_at
			FROM deplo_tokens, (SELECT pg_sleep(5)) z WHERE hash = $1`})
	start := time.Now()
	_, err := slow.Lookup(ctx, h)
	d := time.Since(start)
	if err == nil || errors.Is(err, ErrNotFound) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("slow query: %v", err)
	}
	if d > time.Second {
		t.Errorf("slow query returned after %v", d)
	}
	t.Logf("slow query cut off after %v: %v", d, err)
	if err := slow.Pool().Ping(ctx); err != nil {
		t.Errorf("pool unusable after a timed-out query: %v", err)
	}
}

func TestPostgresTouch(t *testing.T) {
	e := newPGEnv(t, true)
	s := e.open(t, PostgresOptions{RecordLastUsed: true, TouchInterval: 50 * time.Millisecond})
	events := watch(t, s)
	h := e.insertToken(t, "tok_touch")
	waitEvent(t, events, time.Second, "notification of the INSERT", forHash(h))
	ctx := context.Background()
	state := func() (lastUsed *time.Time, xmin string) {
		t.Helper()
		if err := e.admin.QueryRow(ctx, `SELECT last_used_at, xmin::text FROM deplo_tokens WHERE hash = $1`, h[:]).
			Scan(&lastUsed, &xmin); err != nil {
			t.Fatal(err)
		}
		return
	}
	_, xmin0 := state()

	for range 1000 {
		s.Touch(h)
	}
	waitFor(t, 2*time.Second, "last_used_at set", func() bool { lu, _ := state(); return lu != nil })
	time.Sleep(200 * time.Millisecond) // a few more flush intervals
	lu1, xmin1 := state()
	if xmin1 == xmin0 {
		t.Fatal("row not updated")
	}
	if rows, writes := s.lastUsed.rows.Load(), s.lastUsed.writes.Load(); rows != 1 || writes != 1 {
		t.Errorf("1000 touches: %d rows updated by %d statements, want 1 and 1", rows, writes)
	}

	// Touched again within the minute: no write, from this store (it
	// remembers) nor from another one (the UPDATE's condition).
	for range 1000 {
		s.Touch(h)
	}
	s2 := e.open(t, PostgresOptions{RecordLastUsed: true, TouchInterval: 50 * time.Millisecond})
	s2.Touch(h)
	time.Sleep(300 * time.Millisecond)
	if s2.lastUsed.writes.Load() != 1 || s2.lastUsed.rows.Load() != 0 {
		t.Errorf("second store: %d statements, %d rows; want 1 and 0", s2.lastUsed.writes.Load(), s2.lastUsed.rows.Load())
	}
	lu2, xmin2 := state()
	if xmin2 != xmin1 || !lu2.Equal(*lu1) {
		t.Errorf("row rewritten within the minute (xmin %s → %s)", xmin1, xmin2)
	}
	if s.DroppedTouches() != 0 {
		t.Errorf("dropped %d touches", s.DroppedTouches())
	}

	// A minute later (simulated), the next touch writes again.
	e.exec(t, `UPDATE deplo_tokens SET last_used_at = now() - interval '2 minutes' WHERE hash = $1`, h[:])
	s3 := e.open(t, PostgresOptions{RecordLastUsed: true, TouchInterval: 50 * time.Millisecond})
	s3.Touch(h)
	waitFor(t, 2*time.Second, "second write", func() bool { return s3.lastUsed.rows.Load() == 1 })

	// None of it was notified.
	select {
	case ev := <-events:
		if !ev.all && ev.h == h {
			t.Error("last_used_at writes were notified")
		}
	case <-time.After(100 * time.Millisecond):
	}
}

func TestPostgresTouchQueueFull(t *testing.T) {
	e := newPGEnv(t, true)
	s, err := OpenPostgres(context.Background(), PostgresOptions{DSN: e.nextDSN(t), RecordLastUsed: true,
		TouchQueueSize: 2, TouchInterval: time.Hour, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a, b, c := e.insertToken(t, "tok_a"), e.insertToken(t, "tok_b"), e.insertToken(t, "tok_c")
	s.Touch(a)
	s.Touch(b)
	s.Touch(a) // already waiting: not dropped
	s.Touch(c) // full: dropped
	s.Touch(c)
	if got := s.DroppedTouches(); got != 2 {
		t.Errorf("DroppedTouches = %d, want 2", got)
	}
	// Close flushes what is waiting.
	s.Close()
	var ids []string
	rows, err := e.admin.Query(context.Background(), `SELECT id FROM deplo_tokens WHERE last_used_at IS NOT NULL ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	if ids, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids, []string{"tok_a", "tok_b"}) {
		t.Errorf("written at Close: %v, want [tok_a tok_b]", ids)
	}

	// Without RecordLastUsed, Touch does nothing.
	s3 := e.open(t, PostgresOptions{})
	s3.Touch(c)
	if s3.DroppedTouches() != 0 || len(s3.lastUsed.pending) != 0 {
		t.Error("Touch recorded without RecordLastUsed")
	}
}

func TestPostgresSessions(t *testing.T) {
	e := newPGEnv(t, true)
	e.exec(t, `INSERT INTO deplo_revoked_sessions (session_id, expires_at) VALUES
		('sess_before', NULL), ('sess_expired', now() - interval '1 minute')`)
	s := e.open(t, PostgresOptions{})
	admin := e.open(t, PostgresOptions{})
	if !s.SessionRevoked("sess_before") {
		t.Error("session revoked before open not loaded")
	}
	if s.SessionRevoked("sess_expired") || s.SessionRevoked("sess_other") {
		t.Error("expired or unknown session reported revoked")
	}

	// Revoked through another store: this one learns it by notification.
	start := time.Now()
	if err := admin.RevokeSession(context.Background(), "sess_1", time.Now().Add(15*time.Minute)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "session revoked", func() bool { return s.SessionRevoked("sess_1") })
	t.Logf("session revocation seen after %v", time.Since(start))

	// Revoking again keeps it revoked.
	if err := admin.RevokeSession(context.Background(), "sess_1", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := admin.RevokeSession(context.Background(), "", time.Time{}); err == nil {
		t.Error("empty session id accepted")
	}

	// A future revoked_at schedules it.
	e.exec(t, `INSERT INTO deplo_revoked_sessions (session_id, revoked_at) VALUES ('sess_later', now() + interval '400 milliseconds')`)
	e.exec(t, `INSERT INTO deplo_revoked_sessions (session_id) VALUES ('sess_marker')`)
	waitFor(t, time.Second, "marker session loaded", func() bool { return s.SessionRevoked("sess_marker") })
	if s.SessionRevoked("sess_later") {
		t.Error("session revoked before its revoked_at")
	}
	waitFor(t, 2*time.Second, "scheduled revocation", func() bool { return s.SessionRevoked("sess_later") })

	// Deleted: no longer revoked.
	e.exec(t, `DELETE FROM deplo_revoked_sessions WHERE session_id = 'sess_1'`)
	waitFor(t, time.Second, "deleted session dropped", func() bool { return !s.SessionRevoked("sess_1") })

}

// TestPostgresOutage holds the listener down while tokens and sessions
// change: nothing is announced, so the reconnect must make up for it.
func TestPostgresOutage(t *testing.T) {
	e := newPGEnv(t, true)
	h := e.insertToken(t, "tok_outage")
	down := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	s := e.open(t, PostgresOptions{beforeReconnect: func() {
		once.Do(func() {
			close(down)
			<-release
		})
	}})
	events := watch(t, s)
	gen := s.Generation()
	if n := e.terminateListener(t, s); n != 1 {
		t.Fatalf("terminated %d", n)
	}
	<-down
	e.exec(t, `UPDATE deplo_tokens SET revoked_at = now() WHERE hash = $1`, h[:])
	e.exec(t, `INSERT INTO deplo_revoked_sessions (session_id) VALUES ('sess_during_outage')`)
	time.Sleep(100 * time.Millisecond)
	if s.SessionRevoked("sess_during_outage") {
		t.Fatal("listener not down")
	}
	select {
	case ev := <-events:
		t.Fatalf("event while the listener was down: %+v", ev)
	default:
	}
	close(release)
	waitEvent(t, events, 5*time.Second, "all=true after the outage", isAll)
	if s.Generation() == gen {
		t.Error("generation not bumped")
	}
	waitFor(t, time.Second, "session revoked during the outage", func() bool { return s.SessionRevoked("sess_during_outage") })
}

func TestPostgresAdmin(t *testing.T) {
	e := newPGEnv(t, true)
	s := e.open(t, PostgresOptions{})
	ctx := context.Background()
	a, ha := newToken("tok_a")
	p := "proj"
	a.Project = &p
	b, _ := newToken("tok_b")
	b.CreatedAt = time.Time{} // now
	b.Scopes = nil
	for _, en := range []TokenEntry{a, b} {
		if err := s.CreateToken(ctx, en); err != nil {
			t.Fatal(err)
		}
	}
	dupID, _ := newToken("tok_a")
	if err := s.CreateToken(ctx, dupID); err == nil || !strings.Contains(err.Error(), `id "tok_a" already exists`) {
		t.Errorf("duplicate id: %v", err)
	}
	dupHash := a
	dupHash.ID = "tok_c"
	err := s.CreateToken(ctx, dupHash)
	if err == nil || !strings.Contains(err.Error(), "same hash") || strings.Contains(err.Error(), hex.EncodeToString(ha[:])) {
		t.Errorf("duplicate hash: %v", err)
	}
	for _, bad := range []func(*TokenEntry){
		func(e *TokenEntry) { e.Hash = "sha256:xyz" },
		func(e *TokenEntry) { e.ID = "" },
		func(e *TokenEntry) { e.ID = "sk_live_abc" },
		func(e *TokenEntry) { e.Workspace = "" },
		func(e *TokenEntry) { empty := ""; e.Project = &empty },
		func(e *TokenEntry) { e.Scopes = []string{""} },
	} {
		en, _ := newToken("tok_bad")
		bad(&en)
		if err := s.CreateToken(ctx, en); err == nil {
			t.Errorf("bad entry accepted: %+v", en)
		}
	}

	at := time.Date(2027, 5, 1, 0, 0, 0, 0, time.UTC)
	if err := s.RevokeToken(ctx, "tok_a", at); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeToken(ctx, "tok_nope", at); err == nil || !strings.Contains(err.Error(), "no token") {
		t.Errorf("revoking an unknown id: %v", err)
	}
	list, err := s.ListTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != "tok_a" || list[1].ID != "tok_b" {
		t.Fatalf("ListTokens = %+v", list)
	}
	la := list[0]
	if la.Hash != a.Hash || la.Project == nil || *la.Project != "proj" || la.RevokedAt == nil || !la.RevokedAt.Equal(at) ||
		la.ExpiresAt != nil || !la.CreatedAt.Equal(a.CreatedAt) || !slices.Equal(la.Scopes, a.Scopes) {
		t.Errorf("listed %+v", la)
	}
	if lb := list[1]; lb.Project != nil || lb.RevokedAt != nil || lb.CreatedAt.IsZero() || len(lb.Scopes) != 0 {
		t.Errorf("listed %+v", lb)
	}
	// The listed entries form a valid key file.
	data, err := marshalKeyFile(&KeyFile{Tokens: list})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := parseKeyFile("listed", data); err != nil {
		t.Errorf("listed tokens do not form a valid key file: %v", err)
	}
}

func TestPostgresClose(t *testing.T) {
	e := newPGEnv(t, true)
	h := e.insertToken(t, "tok_close")
	base := runtime.NumGoroutine()
	s, err := OpenPostgres(context.Background(), PostgresOptions{DSN: e.nextDSN(t), RecordLastUsed: true,
		TouchInterval: 20 * time.Millisecond, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan event, 100)
	s.Watch(func(h Hash, all bool) { events <- event{h: h, all: all} })
	for range 10 {
		if _, err := s.Lookup(context.Background(), h); err != nil {
			t.Fatal(err)
		}
	}
	s.Touch(h)
	e.exec(t, `UPDATE deplo_tokens SET name = 'x' WHERE hash = $1`, h[:])
	waitEvent(t, events, time.Second, "notification", forHash(h))
	e.terminateListener(t, s)
	waitEvent(t, events, 5*time.Second, "reconnect", isAll)

	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() { s.Close() })
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after Close, %d before:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := s.Lookup(context.Background(), h); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("lookup after Close: %v", err)
	}
	s.Touch(h) // harmless after Close
}

// BenchmarkPostgresLookup measures one lookup against the test database.
func BenchmarkPostgresLookup(b *testing.B) {
	base := os.Getenv(testPostgresEnv)
	if base == "" {
		b.Skipf("%s is not set", testPostgresEnv)
	}
	ctx := context.Background()
	schema := "deplo_bench_" + randomHex(6)
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		b.Fatal(err)
	}
	defer conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE")
	dsn := withParams(b, base, map[string]string{"options": "-c search_path=" + schema})
	s, err := OpenPostgres(ctx, PostgresOptions{DSN: dsn, Migrate: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	en, h := newToken("tok_bench")
	if err := s.CreateToken(ctx, en); err != nil {
		b.Fatal(err)
	}
	b.Run("found", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Lookup(ctx, h); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("not_found", func(b *testing.B) {
		var other Hash
		for b.Loop() {
			if _, err := s.Lookup(ctx, other); !errors.Is(err, ErrNotFound) {
				b.Fatal(err)
			}
		}
	})
	b.Run("found_parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.Lookup(ctx, h); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
