package admintest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/deplo-sh/deplo-auth/keystore"
)

// CreateRevokeInterleaved interleaves, exactly, a create by an API token
// (through creator) and the revocation of that token (through revoker,
// another instance of the same store): setHook installs the function the
// store calls after its lineage checks and before its write; waiting
// reports whether the revocation is blocked on the store's lock (a
// barrier observed in the store, never a sleep). The revocation must wait
// for the create and then take the new child with it; a create after it is
// refused.
func CreateRevokeInterleaved(t *testing.T, creator, revoker keystore.TokenManager, setHook func(func()), waiting func() bool) {
	ctx := context.Background()
	parent, _ := NewEntry(t, "tok_parent", "ws_acme")
	if err := creator.CreateToken(ctx, parent); err != nil {
		t.Fatal(err)
	}
	checked, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	let := func() { once.Do(func() { close(release) }) }
	t.Cleanup(let) // a failing test does not leave the create waiting
	setHook(func() { close(checked); <-release })
	child := func(id string) error {
		c, _ := NewEntry(t, id, "ws_acme")
		c.CreatedBy = &keystore.Creator{Kind: keystore.CreatorAPIKey, ID: "tok_parent"}
		_, err := creator.Create(ctx, c, keystore.CreateOptions{})
		return err
	}
	created := make(chan error, 1)
	go func() { created <- child("tok_child") }()
	<-checked
	revoked := make(chan error, 1)
	go func() { _, err := revoker.RevokeToken(ctx, "tok_parent", time.Time{}); revoked <- err }()
	deadline := time.Now().Add(5 * time.Second)
	for !waiting() {
		select {
		case err := <-revoked:
			t.Fatalf("the revocation finished while the create held the store's lock (%v)", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the revocation never waited on the store's lock")
		}
		time.Sleep(time.Millisecond)
	}
	let()
	if err := <-created; err != nil {
		t.Fatalf("create (checked before the revocation): %v", err)
	}
	if err := <-revoked; err != nil {
		t.Fatal(err)
	}
	rec, err := revoker.Token(ctx, "tok_child")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Live(time.Now()) {
		t.Fatal("the child created while its parent was being revoked still works")
	}
	setHook(nil)
	if err := child("tok_late"); err != keystore.ErrCreatorInactive {
		t.Fatalf("create by a revoked parent: %v, want ErrCreatorInactive", err)
	}
}
