package tokencache

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deplo-sh/deplo-auth/keystore"
)

// listeningStore is a countingStore with a change feed that can be down.
type listeningStore struct {
	*countingStore
	listening atomic.Bool
}

func (s *listeningStore) Listening() bool { return s.listening.Load() }

// TestUnwatchedRecheck: while the store's listener is down, a positive
// answer older than UnwatchedMaxAge is re-checked before it is served, so a
// revocation nobody announced takes effect within that time; when the store
// cannot answer, the cached answer is served as during any outage.
func TestUnwatchedRecheck(t *testing.T) {
	s := &listeningStore{countingStore: newStore()}
	s.listening.Store(true)
	h := hashOf(7)
	s.put(h, &keystore.Token{ID: "tok_a", Workspace: "ws"})
	c := newCache(t, s, Config{})
	lookup := func() (*Entry, Result) {
		t.Helper()
		e, r, err := c.Lookup(context.Background(), h)
		if err != nil || e == nil {
			t.Fatalf("Lookup = %v, %v, %v", e, r, err)
		}
		return e, r
	}
	lookup()
	waitCached(t, c, h, Hit)

	// The listener goes down and a revocation is missed: no notification,
	// no generation change.
	s.listening.Store(false)
	revoked := &keystore.Token{ID: "tok_a", Workspace: "ws", RevokedAt: time.Now()}
	s.mu.Lock()
	s.tokens[h] = revoked
	s.mu.Unlock()
	if e, r := lookup(); r != Hit || e.Token == revoked {
		t.Fatalf("a young answer was re-checked: %v", r)
	}
	time.Sleep(UnwatchedMaxAge)
	if e, r := lookup(); r != Miss || e.Token != revoked {
		t.Fatalf("an answer older than %v served unchecked while the listener is down: %v", UnwatchedMaxAge, r)
	}
	waitCached(t, c, h, Hit) // the fresh answer is cached again

	time.Sleep(UnwatchedMaxAge)
	s.fail.Store(true)
	before := s.lookups.Load()
	if e, r := lookup(); r != Hit || e.Token != revoked {
		t.Fatalf("store failing: %v, want the cached answer", r)
	}
	if n := s.lookups.Load() - before; n != 1 {
		t.Fatalf("%d store lookups for one re-check", n)
	}
	lookup()
	if n := s.lookups.Load() - before; n != 1 {
		t.Errorf("a failed re-check did not spare the failing store: %d lookups", n)
	}

	// With the listener up, no answer is re-checked however old.
	s.fail.Store(false)
	s.listening.Store(true)
	before = s.lookups.Load()
	if _, r := lookup(); r != Hit || s.lookups.Load() != before {
		t.Errorf("re-checked with the listener up: %v", r)
	}
}
