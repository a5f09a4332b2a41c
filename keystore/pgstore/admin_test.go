package pgstore

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/deplo-sh/deplo-auth/internal/testwait"
	"github.com/deplo-sh/deplo-auth/keystore"
	"github.com/deplo-sh/deplo-auth/keystore/admintest"
)

func TestPostgresAdmin(t *testing.T) {
	e := newPGEnv(t, true)
	s := e.open(t, Options{})
	admintest.Run(t, s)

	// The listed entries form a valid key file.
	list, err := s.ListTokens(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	entries := make([]keystore.TokenEntry, len(list))
	for i, r := range list {
		entries[i] = r.TokenEntry
	}
	path := filepath.Join(t.TempDir(), "keys.json")
	if err := keystore.UpdateKeyFile(path, true, func(kf *keystore.KeyFile) error { kf.Tokens = entries; return nil }); err != nil {
		t.Errorf("listed tokens do not form a valid key file: %v", err)
	}
}

// TestPostgresAdminReachesEveryInstance creates and revokes through store A
// and checks store B, on the same database, hears of each at once.
func TestPostgresAdminReachesEveryInstance(t *testing.T) {
	e := newPGEnv(t, true)
	a := e.open(t, Options{})
	b := e.open(t, Options{})
	eventsA, eventsB := watch(t, a), watch(t, b)
	ctx := context.Background()

	en, h := admintest.NewEntry(t, "tok_shared", "ws_acme")
	if _, err := b.Lookup(ctx, h); err != keystore.ErrNotFound {
		t.Fatalf("before create: %v", err)
	}
	if err := a.CreateToken(ctx, en); err != nil {
		t.Fatal(err)
	}
	// A drops the hash before CreateToken returns, B on the notification.
	waitEvent(t, eventsA, time.Millisecond, "create seen by A itself", forHash(h))
	waitEvent(t, eventsB, time.Second, "create notified to B", forHash(h))
	if tok, err := b.Lookup(ctx, h); err != nil || tok.Status(time.Now()) != keystore.TokenActive {
		t.Fatalf("B after create: %+v, %v", tok, err)
	}

	if _, err := a.RevokeToken(ctx, "tok_shared", time.Time{}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, eventsA, time.Millisecond, "revocation seen by A itself", forHash(h))
	waitEvent(t, eventsB, time.Second, "revocation notified to B", forHash(h))
	if tok, err := b.Lookup(ctx, h); err != nil || tok.Status(time.Now()) == keystore.TokenActive {
		t.Fatalf("B after revoke: %+v, %v", tok, err)
	}
}

func TestPostgresAdminLastUsed(t *testing.T) {
	e := newPGEnv(t, true)
	s := e.open(t, Options{RecordLastUsed: true, TouchInterval: 10 * time.Millisecond})
	ctx := context.Background()
	en, h := admintest.NewEntry(t, "tok_used", "ws_acme")
	if err := s.CreateToken(ctx, en); err != nil {
		t.Fatal(err)
	}
	if rec, err := s.Token(ctx, "tok_used"); err != nil || rec.LastUsedAt != nil {
		t.Fatalf("before use: %+v, %v", rec, err)
	}
	before := time.Now().Add(-time.Second)
	s.Touch(h)
	testwait.For(t, 2*time.Second, "last_used_at listed", func() bool {
		list, err := s.ListTokens(ctx, "ws_acme")
		return err == nil && len(list) == 1 && list[0].LastUsedAt != nil && list[0].LastUsedAt.After(before)
	})
}

func TestPostgresAdminLineage(t *testing.T) {
	admintest.RunLineage(t, func(t *testing.T) keystore.TokenManager {
		return newPGEnv(t, true).open(t, Options{})
	})
}
