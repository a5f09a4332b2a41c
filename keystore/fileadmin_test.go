package keystore_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/deplo-sh/deplo-auth/keystore"
	"github.com/deplo-sh/deplo-auth/keystore/admintest"
)

func TestFileAdmin(t *testing.T) {
	admintest.Run(t, &keystore.FileAdmin{Path: filepath.Join(t.TempDir(), "keys.json")})
}

// openIdleStore opens a key file store whose poller never runs during the
// test, so only FileStore.Admin's reload can bring a change in.
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
	admin := s.Admin()
	ctx := context.Background()
	e, h := admintest.NewEntry(t, "tok_new", "ws_acme")
	if err := admin.CreateToken(ctx, e); err != nil {
		t.Fatal(err)
	}
	tok, err := s.Lookup(ctx, h)
	if err != nil {
		t.Fatalf("a token created through the store's admin is not found at once: %v", err)
	}
	if !tok.Active(time.Now()) {
		t.Fatal("the new token is not active")
	}
	if _, err := admin.RevokeToken(ctx, "tok_new", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if tok, err := s.Lookup(ctx, h); err != nil || tok.Active(time.Now()) {
		t.Fatalf("a token revoked through the store's admin is still active: %+v, %v", tok, err)
	}
}

// TestFileAdminConcurrentCreates creates tokens from many goroutines, each
// with its own FileAdmin (as separate CLI processes would be): the file
// lock keeps every one.
func TestFileAdminConcurrentCreates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	const n = 30
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			e, _ := admintest.NewEntry(t, fmt.Sprintf("tok_%02d", i), "ws_acme")
			errs <- (&keystore.FileAdmin{Path: path}).CreateToken(context.Background(), e)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	list, err := (&keystore.FileAdmin{Path: path}).ListTokens(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != n {
		t.Fatalf("%d tokens in the file after %d concurrent creates", len(list), n)
	}
}
