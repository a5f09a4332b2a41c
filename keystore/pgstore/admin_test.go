package pgstore

import (
	"context"
	"encoding/hex"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deplo-sh/deplo-auth/keystore"
)

func TestPostgresAdmin(t *testing.T) {
	e := newPGEnv(t, true)
	s := e.open(t, Options{})
	ctx := context.Background()
	a, ha := newToken("tok_a")
	p := "proj"
	a.Project = &p
	b, _ := newToken("tok_b")
	b.CreatedAt = time.Time{} // now
	b.Scopes = nil
	for _, en := range []keystore.TokenEntry{a, b} {
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
	for _, bad := range []func(*keystore.TokenEntry){
		func(e *keystore.TokenEntry) { e.Hash = "sha256:xyz" },
		func(e *keystore.TokenEntry) { e.ID = "" },
		func(e *keystore.TokenEntry) { e.ID = "sk_live_abc" },
		func(e *keystore.TokenEntry) { e.Workspace = "" },
		func(e *keystore.TokenEntry) { empty := ""; e.Project = &empty },
		func(e *keystore.TokenEntry) { e.Scopes = []string{""} },
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
	path := filepath.Join(t.TempDir(), "keys.json")
	if err := keystore.UpdateKeyFile(path, true, func(kf *keystore.KeyFile) error { kf.Tokens = list; return nil }); err != nil {
		t.Errorf("listed tokens do not form a valid key file: %v", err)
	}
}
