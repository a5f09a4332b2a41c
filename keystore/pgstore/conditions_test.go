package pgstore

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	"github.com/deplo-sh/deplo-auth/keystore"
)

// A database on the schema before 004_conditions.sql: its tokens work
// (the lookup falls back to eight columns), and once migrated they still
// work, without allowed_ips, while a token with allowed_ips carries them.
func TestPostgresConditionsMigration(t *testing.T) {
	e := newPGEnv(t, false)
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	e.exec(t, ms[0].sql) // 001 only, recorded as Migrate records it
	e.exec(t, `CREATE TABLE deplo_schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`)
	e.exec(t, `INSERT INTO deplo_schema_migrations (version) VALUES (1)`)
	old := e.insertToken(t, "tok_old")

	s := e.open(t, Options{})
	if tok, err := s.Lookup(context.Background(), old); err != nil || tok.ID != "tok_old" || tok.AllowedIPs != nil {
		t.Fatalf("before the migration: %+v, %v", tok, err)
	}

	if _, err := Migrate(context.Background(), e.admin); err != nil {
		t.Fatal(err)
	}
	s2 := e.open(t, Options{})
	if tok, err := s2.Lookup(context.Background(), old); err != nil || tok.ID != "tok_old" || tok.AllowedIPs != nil {
		t.Fatalf("after the migration: %+v, %v", tok, err)
	}
	ent, h := newEntry(t, "tok_pinned")
	ent.AllowedIPs = []string{"203.0.113.0/24", "2001:db8::/32"}
	if err := s2.CreateToken(context.Background(), ent); err != nil {
		t.Fatal(err)
	}
	tok, err := s2.Lookup(context.Background(), h)
	want := []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8::/32")}
	if err != nil || !slices.Equal(tok.AllowedIPs, want) {
		t.Fatalf("a pinned token looked up: %+v, %v", tok, err)
	}
	if !tok.AllowedFrom("203.0.113.9") || tok.AllowedFrom("198.51.100.1") {
		t.Error("AllowedFrom does not follow allowed_ips")
	}
	// A row the database holds with an empty list is refused, never read
	// as "anywhere".
	e.exec(t, `ALTER TABLE deplo_tokens DROP CONSTRAINT deplo_tokens_allowed_ips_bounded`)
	e.exec(t, `UPDATE deplo_tokens SET allowed_ips = '{}' WHERE id = 'tok_pinned'`)
	if tok, err := s2.Lookup(context.Background(), h); err == nil {
		t.Errorf("an empty allowed_ips was read as %+v", tok)
	}
}

func newEntry(t *testing.T, id string) (keystore.TokenEntry, keystore.Hash) {
	t.Helper()
	_, h := newToken(id)
	return keystore.TokenEntry{ID: id, Name: id, Hash: keystore.FormatHash(h), Workspace: "ws_acme", Scopes: []string{"read"}}, h
}
