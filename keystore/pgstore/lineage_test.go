package pgstore

import (
	"context"
	"testing"
	"time"

	"github.com/deplo-sh/deplo-auth/keystore"
	"github.com/deplo-sh/deplo-auth/keystore/admintest"
)

// TestPostgresCreateRevokeInterleaved: see
// admintest.CreateRevokeInterleaved; the revocation goes through another
// instance. Without the workspace lock it would commit first, walk a
// subtree without the child, and leave the child working.
func TestPostgresCreateRevokeInterleaved(t *testing.T) {
	e := newPGEnv(t, true)
	creator, revoker := e.open(t, Options{}), e.open(t, Options{})
	admintest.CreateRevokeInterleaved(t, creator, revoker,
		func(f func()) { creator.beforeInsert = f },
		func() bool {
			return e.count(t, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1
	AND wait_event_type = 'Lock' AND query LIKE '%pg_advisory_xact_lock%'`, revoker.appName()) == 1
		})
}

// TestPostgresMigrationKeepsTokens: a token stored under schema version 1
// works after the lineage migration, as a root with no creator.
func TestPostgresMigrationKeepsTokens(t *testing.T) {
	e := newPGEnv(t, false)
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	e.exec(t, `CREATE TABLE deplo_schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`)
	e.exec(t, ms[0].sql)
	e.exec(t, `INSERT INTO deplo_schema_migrations (version) VALUES (1)`)
	h := e.insertToken(t, "tok_v1")
	s := e.open(t, Options{Migrate: true})
	tok, err := s.Lookup(context.Background(), h)
	if err != nil || tok.Status(time.Now()) != keystore.TokenActive {
		t.Fatalf("the version-1 token after migrating: %+v, %v", tok, err)
	}
	rec, err := s.Token(context.Background(), "tok_v1")
	if err != nil || rec.CreatedBy != nil || rec.RotatedFrom != "" {
		t.Fatalf("the version-1 token's record: %+v, %v", rec, err)
	}
	if _, err := s.RevokeToken(context.Background(), "tok_v1", time.Time{}); err != nil {
		t.Fatal(err)
	}
}

// count runs a query returning one integer.
func (e *pgEnv) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := e.admin.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// appName is the application_name of the store's pool connections.
func (s *Store) appName() string { return s.pool.Config().ConnConfig.RuntimeParams["application_name"] }
