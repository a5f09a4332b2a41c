package pgstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap/zaptest"

	"github.com/deplo-sh/deplo-auth/keystore"
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
		if _, err := Migrate(ctx, e.admin); err != nil {
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
func (e *pgEnv) open(t *testing.T, opts Options) *Store {
	t.Helper()
	if opts.DSN == "" {
		opts.DSN = e.nextDSN(t)
	}
	if opts.Logger == nil {
		opts.Logger = zaptest.NewLogger(t)
	}
	s, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
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
func newToken(id string) (keystore.TokenEntry, keystore.Hash) {
	var h keystore.Hash
	if _, err := rand.Read(h[:]); err != nil {
		panic(err)
	}
	return keystore.TokenEntry{
		ID: id, Name: "name of " + id, Hash: keystore.FormatHash(h), Workspace: "ws_acme",
		Scopes: []string{"deploy", "read"}, CreatedAt: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC),
	}, h
}

// insertToken inserts a token row directly.
func (e *pgEnv) insertToken(t *testing.T, id string) keystore.Hash {
	t.Helper()
	_, h := newToken(id)
	e.exec(t, `INSERT INTO deplo_tokens (hash, id, workspace, scopes) VALUES ($1, $2, 'ws_acme', '{read}')`, h[:], id)
	return h
}

// event is one Watch callback.
type event struct {
	h   keystore.Hash
	all bool
	at  time.Time
}

// watch subscribes to s; events arrive on the returned channel.
func watch(t *testing.T, s *Store) <-chan event {
	ch := make(chan event, 1000)
	stop := s.Watch(func(h keystore.Hash, all bool) {
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

func forHash(h keystore.Hash) func(event) bool {
	return func(ev event) bool { return !ev.all && ev.h == h }
}
func isAll(ev event) bool { return ev.all }

func (e *pgEnv) terminateListener(t *testing.T, s *Store) int {
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
