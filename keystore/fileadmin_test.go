package keystore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deplo-sh/deplo-auth/keystore"
	"github.com/deplo-sh/deplo-auth/keystore/admintest"
)

func TestFileAdmin(t *testing.T) {
	admintest.Run(t, &keystore.FileTokenManager{Path: filepath.Join(t.TempDir(), "keys.json")})
}

// openIdleStore opens a key file store whose poller never runs during the
// test, so only FileStore.TokenManager's reload can bring a change in.
func openIdleStore(t *testing.T) *keystore.FileStore {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keys.json")
	if err := keystore.UpdateKeyFile(path, true, func(*keystore.KeyFile) error { return nil }); err != nil {
		t.Fatal(err)
	}
	s, err := keystore.OpenFile(path, keystore.FileOptions{PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestFileStoreAdminInForceAtOnce(t *testing.T) {
	s := openIdleStore(t)
	admin := s.TokenManager()
	ctx := context.Background()
	e, h := admintest.NewEntry(t, "tok_new", "ws_acme")
	if err := admin.CreateToken(ctx, e); err != nil {
		t.Fatal(err)
	}
	tok, err := s.Lookup(ctx, h)
	if err != nil {
		t.Fatalf("a token created through the store's admin is not found at once: %v", err)
	}
	if tok.Status(time.Now()) != keystore.TokenActive {
		t.Fatal("the new token is not active")
	}
	if _, err := admin.RevokeToken(ctx, "tok_new", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if tok, err := s.Lookup(ctx, h); err != nil || tok.Status(time.Now()) == keystore.TokenActive {
		t.Fatalf("a token revoked through the store's admin is still active: %+v, %v", tok, err)
	}
}

// TestFileAdminConcurrentCreates creates tokens from many goroutines, each
// with its own FileTokenManager (as separate CLI processes would be): the file
// lock keeps every one.
func TestFileAdminConcurrentCreates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	const n = 30
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			e, _ := admintest.NewEntry(t, fmt.Sprintf("tok_%02d", i), "ws_acme")
			errs <- (&keystore.FileTokenManager{Path: path}).CreateToken(context.Background(), e)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	list, err := (&keystore.FileTokenManager{Path: path}).ListTokens(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != n {
		t.Fatalf("%d tokens in the file after %d concurrent creates", len(list), n)
	}
}

func TestFileStoreAdmin(t *testing.T) {
	admintest.Run(t, openIdleStore(t).TokenManager())
}

// TestFileStoreAdminParsesHandEdits checks that the store's admin, which
// reuses the store's parsed document while the file holds the bytes it was
// parsed from, still applies every rule to a file changed by hand since.
func TestFileStoreAdminParsesHandEdits(t *testing.T) {
	s := openIdleStore(t)
	admin := s.TokenManager()
	ctx := context.Background()
	first, firstHash := admintest.NewEntry(t, "tok_first", "ws_acme")
	if err := admin.CreateToken(ctx, first); err != nil {
		t.Fatal(err)
	}

	// A valid token added by another process: the store has not polled.
	byHand, byHandHash := admintest.NewEntry(t, "tok_by_hand", "ws_acme")
	if err := keystore.UpdateKeyFile(s.Path(), false, func(kf *keystore.KeyFile) error {
		kf.Tokens = append(kf.Tokens, byHand)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	next, nextHash := admintest.NewEntry(t, "tok_next", "ws_acme")
	if err := admin.CreateToken(ctx, next); err != nil {
		t.Fatal(err)
	}
	list, err := (&keystore.FileTokenManager{Path: s.Path()}).ListTokens(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 {
		t.Fatalf("%d tokens in the file, want 3 (the one added by hand kept): %+v", len(list), list)
	}
	for _, h := range []keystore.Hash{firstHash, byHandHash, nextHash} {
		if _, err := s.Lookup(ctx, h); err != nil {
			t.Errorf("a token of the file written is not in force: %v", err)
		}
	}

	// A mistake made by hand: every operation refuses the file, naming
	// the entry and the field, and nothing is written.
	data, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(data), `"workspace": "ws_acme"`, `"workspace": ""`, 1)
	if err := os.WriteFile(s.Path(), []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	another, anotherHash := admintest.NewEntry(t, "tok_another", "ws_acme")
	wantMsg := `token 0 (id "tok_first"): workspace: missing or empty`
	if err := admin.CreateToken(ctx, another); err == nil || !strings.Contains(err.Error(), wantMsg) {
		t.Errorf("create on a file with a mistake: err = %v, want it to contain %q", err, wantMsg)
	}
	if _, err := admin.RevokeToken(ctx, "tok_next", time.Time{}); err == nil || !strings.Contains(err.Error(), wantMsg) {
		t.Errorf("revoke on a file with a mistake: err = %v, want it to contain %q", err, wantMsg)
	}
	if _, err := admin.Token(ctx, "tok_next"); err == nil || !strings.Contains(err.Error(), wantMsg) {
		t.Errorf("read of a file with a mistake: err = %v, want it to contain %q", err, wantMsg)
	}
	if after, _ := os.ReadFile(s.Path()); string(after) != bad {
		t.Error("a file with a mistake was rewritten")
	}
	if _, err := s.Lookup(ctx, anotherHash); err == nil {
		t.Error("a token refused by the file's rules is in force")
	}
	if tok, err := s.Lookup(ctx, nextHash); err != nil || tok.Status(time.Now()) != keystore.TokenActive {
		t.Errorf("the last good contents are not in force: %+v, %v", tok, err)
	}
}

// TestFileStoreAdminRecordsAreCopies checks that what the store's admin
// returns does not share memory with the document it reuses.
func TestFileStoreAdminRecordsAreCopies(t *testing.T) {
	s := openIdleStore(t)
	admin := s.TokenManager()
	ctx := context.Background()
	e, _ := admintest.NewEntry(t, "tok_a", "ws_acme")
	project := "weekly-report"
	e.Project = &project
	if err := admin.CreateToken(ctx, e); err != nil {
		t.Fatal(err)
	}
	scramble := func(rec keystore.TokenRecord) {
		rec.Scopes[0] = "admin"
		*rec.Project = "other"
	}
	rec, err := admin.Token(ctx, "tok_a")
	if err != nil {
		t.Fatal(err)
	}
	scramble(rec)
	list, err := admin.ListTokens(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	scramble(list[0])
	revoked, err := admin.RevokeToken(ctx, "tok_a", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	scramble(revoked)
	*revoked.RevokedAt = time.Time{}
	rec, err = admin.Token(ctx, "tok_a")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Scopes[0] != "deploy" || *rec.Project != "weekly-report" || rec.RevokedAt == nil || rec.RevokedAt.IsZero() {
		t.Errorf("changing a returned record changed the store's document: %+v", rec)
	}
}

// TestFileStoreAdminInvalidUTF8 checks that the store gets what the file
// says when encoding changed a string (invalid UTF-8 becomes U+FFFD).
func TestFileStoreAdminInvalidUTF8(t *testing.T) {
	s := openIdleStore(t)
	ctx := context.Background()
	e, h := admintest.NewEntry(t, "tok_a", "ws_acme")
	e.Name = "bad \xff name"
	if err := s.TokenManager().CreateToken(ctx, e); err != nil {
		t.Fatal(err)
	}
	tok, err := s.Lookup(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Name != "bad \uFFFD name" {
		t.Errorf("store has name %q, the file %q", tok.Name, "bad \uFFFD name")
	}
}

// TestFileStoreAdminsConcurrentCreates creates tokens through the admins of
// two stores of the same file (two gateway processes) and a plain FileTokenManager
// (the CLI) at once: each admin may reuse its store's document only while
// the file holds the bytes the store loaded, so no token is lost.
func TestFileStoreAdminsConcurrentCreates(t *testing.T) {
	a := openIdleStore(t)
	b, err := keystore.OpenFile(a.Path(), keystore.FileOptions{PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	admins := []keystore.TokenManager{a.TokenManager(), b.TokenManager(), &keystore.FileTokenManager{Path: a.Path()}}
	const n = 30
	hashes := make([]keystore.Hash, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		e, h := admintest.NewEntry(t, fmt.Sprintf("tok_%02d", i), "ws_acme")
		hashes[i] = h
		wg.Go(func() { errs <- admins[i%len(admins)].CreateToken(context.Background(), e) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	list, err := (&keystore.FileTokenManager{Path: a.Path()}).ListTokens(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != n {
		t.Fatalf("%d tokens in the file after %d concurrent creates", len(list), n)
	}
	for _, s := range []*keystore.FileStore{a, b} {
		s.Reload()
		for i, h := range hashes {
			if _, err := s.Lookup(context.Background(), h); err != nil {
				t.Errorf("token %d not in force after a reload: %v", i, err)
			}
		}
	}
}

func TestFileAdminLineage(t *testing.T) {
	admintest.RunLineage(t, func(t *testing.T) keystore.TokenManager {
		return &keystore.FileTokenManager{Path: filepath.Join(t.TempDir(), "keys.json")}
	})
}
