package pgstore

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/deplo-sh/deplo-auth/keystore"
	"github.com/deplo-sh/deplo-auth/keystore/admintest"
)

// TestPostgresCascadeReachesInstances revokes a parent with 1,000
// descendants (10 children of 99 grandchildren each) through instance A
// and measures how long until A and B (two stores on the database, as two
// gateways) have both been told of every one of the 1,001 revoked tokens
// (a cache drops what it is told of, so its next lookup reads the
// revocation); then every token reads revoked on B. The figure is logged,
// never asserted: go test ./keystore/pgstore/ -run Cascade -v.
func TestPostgresCascadeReachesInstances(t *testing.T) {
	e := newPGEnv(t, true)
	a, b := e.open(t, Options{}), e.open(t, Options{})
	ctx := context.Background()
	root, rootHash := admintest.NewEntry(t, "tok_root", "ws_acme")
	if err := a.CreateToken(ctx, root); err != nil {
		t.Fatal(err)
	}
	hashes := map[keystore.Hash]bool{rootHash: true}
	// The descendants in one statement (a create each would take a
	// transaction each): the rows Create would write.
	var ids, parents []string
	var raw [][]byte
	add := func(id, parent string) {
		h := admintest.NewHash(t)
		ids, parents, raw = append(ids, id), append(parents, parent), append(raw, h[:])
		hashes[h] = true
	}
	for c := range 10 {
		child := fmt.Sprintf("tok_c%d", c)
		add(child, "tok_root")
		for g := range 99 {
			add(fmt.Sprintf("tok_c%d_g%d", c, g), child)
		}
	}
	e.exec(t, `INSERT INTO deplo_tokens (hash, id, workspace, scopes, created_by_kind, created_by_id)
SELECT h, i, 'ws_acme', '{read}', 'api_key', p FROM unnest($1::bytea[], $2::text[], $3::text[]) AS u(h, i, p)`, raw, ids, parents)
	if len(hashes) != 1001 {
		t.Fatalf("%d tokens", len(hashes))
	}
	// told waits for the store's Watch to report every hash.
	told := func(s *Store) (func() time.Time, func()) {
		var mu sync.Mutex
		left := len(hashes)
		seen := map[keystore.Hash]bool{}
		done := make(chan time.Time, 1)
		stop := s.Watch(func(h keystore.Hash, all bool) {
			mu.Lock()
			defer mu.Unlock()
			if left == 0 {
				return
			}
			if all {
				left = 0
			} else if hashes[h] && !seen[h] {
				seen[h] = true
				left--
			}
			if left == 0 {
				done <- time.Now()
			}
		})
		return func() time.Time {
			select {
			case at := <-done:
				return at
			case <-time.After(10 * time.Second):
				t.Fatal("not every revocation reported within 10s")
				return time.Time{}
			}
		}, stop
	}
	waitA, stopA := told(a)
	defer stopA()
	waitB, stopB := told(b)
	defer stopB()
	start := time.Now()
	if _, err := a.RevokeToken(ctx, "tok_root", time.Time{}); err != nil {
		t.Fatal(err)
	}
	committed := time.Since(start)
	atA, atB := waitA(), waitB()
	last := atA
	if atB.After(last) {
		last = atB
	}
	t.Logf("1,001 tokens revoked in one transaction in %v; instance A told of all after %v, instance B after %v: both refuse every one after %v",
		committed.Round(time.Millisecond), atA.Sub(start).Round(time.Millisecond), atB.Sub(start).Round(time.Millisecond),
		last.Sub(start).Round(time.Millisecond))
	for h := range hashes {
		tok, err := b.Lookup(ctx, h)
		if err != nil || tok.Status(time.Now()) == keystore.TokenActive {
			t.Fatalf("a descendant still works on B: %+v %v", tok, err)
		}
	}
}
