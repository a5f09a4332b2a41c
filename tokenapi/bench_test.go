package tokenapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/deplo-sh/deplo-auth/grant"
	"github.com/deplo-sh/deplo-auth/keystore"
	"github.com/deplo-sh/deplo-auth/keystore/pgstore"
)

// The create and revoke benchmarks time Serve end to end on a store that
// already holds many tokens — on the key file: lock, read, hash (the bytes
// the store last loaded are not parsed again), validate in memory, marshal,
// write, fsync, rename, and the handoff to the store deplo_auth serves
// from; on PostgreSQL: one INSERT (or UPDATE) with its NOTIFY trigger. They
// report the p50 and p99 of single operations (ms).
//
//	go test ./tokenapi -run '^$' -bench 'File(Create|Revoke)/tokens=(1000|10000)$' -benchtime 10x
//	DEPLO_AUTH_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/test?sslmode=disable go test ./tokenapi -run '^$' -bench Postgres -benchtime 1000x

func BenchmarkFileCreate(b *testing.B) {
	for _, n := range []int{1000, 10000, 50000} {
		b.Run(fmt.Sprintf("tokens=%d", n), func(b *testing.B) { benchOps(b, fileStore(b, n), n, "POST") })
	}
}

func BenchmarkFileRevoke(b *testing.B) {
	for _, n := range []int{1000, 10000, 50000} {
		b.Run(fmt.Sprintf("tokens=%d", n), func(b *testing.B) { benchOps(b, fileStore(b, n), n, "DELETE") })
	}
}

func BenchmarkPostgresCreate(b *testing.B) { benchOps(b, postgresStore(b, 10000), 10000, "POST") }
func BenchmarkPostgresRevoke(b *testing.B) { benchOps(b, postgresStore(b, 10000), 10000, "DELETE") }

// seededIDs are the ids of the tokens a benchmark store starts with.
func seededIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("tok_seed%06d", i)
	}
	return ids
}

func seedEntries(b *testing.B, n int) []keystore.TokenEntry {
	out := make([]keystore.TokenEntry, 0, n)
	for _, id := range seededIDs(n) {
		var h keystore.Hash
		if _, err := rand.Read(h[:]); err != nil {
			b.Fatal(err)
		}
		out = append(out, keystore.TokenEntry{ID: id, Name: "seeded " + id, Hash: keystore.FormatHash(h), Workspace: "ws_acme",
			Scopes: []string{"deploy", "read"}, CreatedAt: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)})
	}
	return out
}

// fileStore is a key file of n tokens opened as deplo_auth opens it, and
// the admin deplo_auth_tokens gets from it (which reloads the store).
func fileStore(b *testing.B, n int) keystore.TokenManager {
	path := filepath.Join(b.TempDir(), "keys.json")
	seed := seedEntries(b, n)
	if err := keystore.UpdateKeyFile(path, true, func(kf *keystore.KeyFile) error {
		kf.Tokens = seed
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	fs, err := keystore.OpenFile(path, keystore.FileOptions{PollInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = fs.Close() })
	return fs.TokenManager()
}

// postgresStore is a fresh schema holding n tokens.
func postgresStore(b *testing.B, n int) keystore.TokenManager {
	base := os.Getenv("DEPLO_AUTH_TEST_POSTGRES")
	if base == "" {
		b.Skip("DEPLO_AUTH_TEST_POSTGRES is not set; skipping the PostgreSQL benchmarks")
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		b.Fatal(err)
	}
	suffix := make([]byte, 6)
	_, _ = rand.Read(suffix)
	schema := "deplo_bench_" + hex.EncodeToString(suffix)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_, _ = conn.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		_ = conn.Close(context.Background())
	})
	u, err := url.Parse(base)
	if err != nil {
		b.Fatal(err)
	}
	q := u.Query()
	q.Set("options", "-c search_path="+schema)
	u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20")
	store, err := pgstore.Open(ctx, pgstore.Options{DSN: u.String(), Migrate: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = store.Close() })
	rows := [][]any{}
	for _, e := range seedEntries(b, n) {
		h, _ := keystore.ParseHash(e.Hash)
		rows = append(rows, []any{h[:], e.ID, e.Name, e.Workspace, e.Scopes, e.CreatedAt})
	}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{schema, "deplo_tokens"},
		[]string{"hash", "id", "name", "workspace", "scopes", "created_at"}, pgx.CopyFromRows(rows)); err != nil {
		b.Fatal(err)
	}
	return store
}

// benchOps times b.N creates (POST) or revokes (DELETE, of distinct tokens
// among the seeded ones) through Serve, and reports p50 and p99.
func benchOps(b *testing.B, store keystore.TokenManager, seeded int, method string) {
	svc := &Service{Store: store}
	admin := &grant.Principal{Kind: grant.KindJWT, Subject: "user_42", Workspace: "ws_acme", Scopes: grant.ScopeAdmin}
	ids := seededIDs(b.N)
	if method == "DELETE" && b.N > seeded {
		b.Skipf("revoke runs at most %d operations (the seeded tokens)", seeded)
	}
	ctx := context.Background()
	durations := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := &Request{Method: method, Caller: admin,
			Target: Target{Workspace: "ws_acme", Collection: "/v1/workspaces/ws_acme/tokens"}}
		want := 201
		if method == "POST" {
			req.Body, req.ContentType = strings.NewReader(`{"name":"bench","scopes":["deploy"]}`), "application/json"
		} else {
			req.Target.Item, req.Target.ID, want = true, ids[i], 204
		}
		start := time.Now()
		a := svc.Serve(ctx, req)
		durations = append(durations, time.Since(start))
		if a.Status != want {
			b.Fatalf("status %d: %s", a.Status, a.Body)
		}
	}
	b.StopTimer()
	slices.Sort(durations)
	pct := func(p float64) float64 {
		return float64(durations[min(len(durations)-1, int(p*float64(len(durations))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}
