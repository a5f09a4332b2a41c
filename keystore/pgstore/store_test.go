package pgstore

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap/zaptest"

	"github.com/deplo-sh/deplo-auth/keystore"
)

func TestPostgresLookup(t *testing.T) {
	e := newPGEnv(t, true)
	s := e.open(t, Options{})
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
	if tok.Status(rev.Add(-time.Second)) != keystore.TokenActive || tok.Status(rev) == keystore.TokenActive {
		t.Error("revoked_at not in effect at its instant")
	}

	// Workspace-scoped, no expiry or revocation.
	h2 := e.insertToken(t, "tok_ws")
	tok, err = s.Lookup(ctx, h2)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Project != "" || !tok.ExpiresAt.IsZero() || !tok.RevokedAt.IsZero() || tok.CreatedAt.IsZero() ||
		tok.Status(time.Now()) != keystore.TokenActive || tok.Name != "" {
		t.Errorf("workspace token = %+v", tok)
	}

	// Infinite times: +infinity is never, -infinity is always.
	e.exec(t, `UPDATE deplo_tokens SET expires_at = 'infinity', revoked_at = '-infinity' WHERE id = 'tok_ws'`)
	tok, err = s.Lookup(ctx, h2)
	if err != nil {
		t.Fatal(err)
	}
	if !tok.ExpiresAt.IsZero() || tok.RevokedAt.IsZero() || tok.Status(time.Now()) == keystore.TokenActive {
		t.Errorf("infinite times: %+v", tok)
	}

	var unknown keystore.Hash
	unknown[0] = 1
	if _, err := s.Lookup(ctx, unknown); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("unknown hash: %v, want keystore.ErrNotFound", err)
	}
}

func TestPostgresCustomLookupQuery(t *testing.T) {
	e := newPGEnv(t, false) // no shipped schema: no sessions table either
	e.exec(t, `CREATE TABLE api_keys (
		key_sha256 bytea PRIMARY KEY, key_id uuid NOT NULL, label varchar(50), org text NOT NULL,
		app text, perms text NOT NULL, made timestamp NOT NULL, valid_until timestamptz, disabled boolean NOT NULL DEFAULT false)`)
	_, h := newToken("x")
	e.exec(t, `INSERT INTO api_keys VALUES ($1, '6f1b2e9a-5a0c-4d3e-9f8b-1c2d3e4f5a6b', NULL, 'ws_org', 'proj', 'read deploy', '2026-01-02 03:04:05', NULL, true)`, h[:])
	s := e.open(t, Options{LookupQuery: `SELECT key_id::text, label, org, app, string_to_array(perms, ' '),
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
	var other keystore.Hash
	if _, err := s.Lookup(context.Background(), other); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("unknown: %v", err)
	}
	if s.SessionRevoked("any") {
		t.Error("session revoked without a sessions table")
	}
}

func TestPostgresLookupQueryWrongShape(t *testing.T) {
	e := newPGEnv(t, true)
	for _, tt := range []struct{ query, want string }{
		{`SELECT id, name FROM deplo_tokens WHERE hash = $1`, "returns 2 columns; want 8 or 9: id, name, workspace"},
		{`SELECT id, name, workspace, project, scopes, created_at, expires_at, revoked_at FROM deplo_tokens`, "takes 0 parameters"},
		{`SELECT id FROM no_such_table WHERE hash = $1`, "no_such_table"},
	} {
		_, err := Open(context.Background(), Options{DSN: e.dsn, LookupQuery: tt.query})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("query %q: err = %v, want it to contain %q", tt.query, err, tt.want)
		}
	}

	// Eight columns of the wrong types: found at lookup, and an error, not
	// "not found".
	h := e.insertToken(t, "tok_types")
	s := e.open(t, Options{LookupQuery: `SELECT id, name, workspace, project, 42, created_at, expires_at, revoked_at
		FROM deplo_tokens WHERE hash = $1`})
	_, err := s.Lookup(context.Background(), h)
	if err == nil || errors.Is(err, keystore.ErrNotFound) || !strings.Contains(err.Error(), "reading the row") {
		t.Errorf("wrong types: %v", err)
	}
	if strings.Contains(err.Error(), hex.EncodeToString(h[:])) {
		t.Error("error shows the hash")
	}

	// An empty project is an error, never workspace-wide.
	s2 := e.open(t, Options{LookupQuery: `SELECT id, name, workspace, '', scopes, created_at, expires_at, revoked_at
		FROM deplo_tokens WHERE hash = $1`})
	if _, err := s2.Lookup(context.Background(), h); err == nil || errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("empty project: %v", err)
	}
	// Two rows for one hash.
	s3 := e.open(t, Options{LookupQuery: `SELECT id, name, workspace, project, scopes, created_at, expires_at, revoked_at
		FROM deplo_tokens, generate_series(1, 2) WHERE hash = $1`})
	if _, err := s3.Lookup(context.Background(), h); err == nil || !strings.Contains(err.Error(), "more than one row") {
		t.Errorf("two rows: %v", err)
	}
}

func TestPostgresDefaultQueryNeedsSchema(t *testing.T) {
	e := newPGEnv(t, false)
	_, err := Open(context.Background(), Options{DSN: e.dsn})
	if err == nil || !strings.Contains(err.Error(), "Migrate") {
		t.Errorf("unmigrated database: %v", err)
	}
	s := e.open(t, Options{Migrate: true})
	if _, err := s.Lookup(context.Background(), keystore.Hash{}); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("after the migrate option: %v", err)
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
		_, err := Open(context.Background(), Options{DSN: dsn})
		if err == nil {
			t.Errorf("Open(%q) succeeded", strings.ReplaceAll(dsn, pw, "…"))
			continue
		}
		if strings.Contains(err.Error(), pw) || strings.Contains(fmt.Sprintf("%+v", err), pw) {
			t.Errorf("error shows the password: %v", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Open took %v", d)
		}
		t.Logf("%v", err)
	}

	h := e.insertToken(t, "tok_fault")
	ctx := context.Background()

	// A timeout too short to do anything.
	s := e.open(t, Options{QueryTimeout: time.Nanosecond})
	if _, err := s.Lookup(ctx, h); err == nil || errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("1ns timeout: %v", err)
	}

	// A cancelled caller.
	s = e.open(t, Options{})
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Lookup(cctx, h); err == nil || errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("cancelled context: %v", err)
	}
	if _, err := s.Lookup(ctx, h); err != nil {
		t.Fatalf("lookup: %v", err)
	}

	// After the pool is closed.
	s.Pool().Close()
	if _, err := s.Lookup(ctx, h); err == nil || errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("closed pool: %v", err)
	}

	// A slow query is cut off at QueryTimeout.
	slow := e.open(t, Options{QueryTimeout: 200 * time.Millisecond,
		LookupQuery: `SELECT id, name, workspace, project, scopes, created_at, expires_at, revoked_at
			FROM deplo_tokens, (SELECT pg_sleep(5)) z WHERE hash = $1`})
	start := time.Now()
	_, err := slow.Lookup(ctx, h)
	d := time.Since(start)
	if err == nil || errors.Is(err, keystore.ErrNotFound) || !errors.Is(err, context.DeadlineExceeded) {
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

func TestPostgresClose(t *testing.T) {
	e := newPGEnv(t, true)
	h := e.insertToken(t, "tok_close")
	base := runtime.NumGoroutine()
	reconnected := make(chan struct{}, 1)
	s, err := Open(context.Background(), Options{DSN: e.nextDSN(t), RecordLastUsed: true,
		TouchInterval: 20 * time.Millisecond, Logger: zaptest.NewLogger(t),
		OnReconnect: func() { reconnected <- struct{}{} }})
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan event, 100)
	s.Watch(func(h keystore.Hash, all bool) { events <- event{h: h, all: all} })
	for range 10 {
		if _, err := s.Lookup(context.Background(), h); err != nil {
			t.Fatal(err)
		}
	}
	s.Touch(h)
	e.exec(t, `UPDATE deplo_tokens SET name = 'x' WHERE hash = $1`, h[:])
	waitEvent(t, events, time.Second, "notification", forHash(h))
	e.terminateListener(t, s)
	select {
	case <-reconnected:
	case <-time.After(5 * time.Second):
		t.Fatal("no reconnect within 5s")
	}

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
	if _, err := s.Lookup(context.Background(), h); err == nil || errors.Is(err, keystore.ErrNotFound) {
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
	s, err := Open(ctx, Options{DSN: dsn, Migrate: true})
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
		var other keystore.Hash
		for b.Loop() {
			if _, err := s.Lookup(ctx, other); !errors.Is(err, keystore.ErrNotFound) {
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
