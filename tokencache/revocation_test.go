package tokencache

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deplo-sh/deplo-auth/keystore"
)

// gatedStore is a key store whose lookups a test can hold "in the database":
// while gated, each lookup reads the row when it starts, announces itself on
// started and returns what it read once the test closes its release channel.
// Its Generation changes only when a test says so (a key file reload); a
// PostgreSQL store's does not between reconnections: there only pushed
// changes (Invalidate, PurgeAll) tell the cache.
type gatedStore struct {
	gen     atomic.Uint64
	mu      sync.Mutex
	tokens  map[keystore.Hash]*keystore.Token
	gated   atomic.Bool
	started chan heldLookup
	lookups atomic.Int64
}

// heldLookup is a store lookup waiting for the test to close release.
type heldLookup struct{ release chan struct{} }

func newGatedStore() *gatedStore {
	s := &gatedStore{tokens: map[keystore.Hash]*keystore.Token{}, started: make(chan heldLookup)}
	s.gated.Store(true)
	return s
}

func (s *gatedStore) Lookup(ctx context.Context, h keystore.Hash) (*keystore.Token, error) {
	s.lookups.Add(1)
	s.mu.Lock()
	tok := s.tokens[h]
	s.mu.Unlock()
	if s.gated.Load() {
		held := heldLookup{release: make(chan struct{})}
		s.started <- held
		// ctx is ignored on purpose: the cache must stay right with a store
		// that overruns its timeout.
		<-held.release
	}
	if tok == nil {
		return nil, keystore.ErrNotFound
	}
	return tok, nil
}

func (s *gatedStore) Generation() uint64 { return s.gen.Load() }

// set stores tok under h (nil: no such token), as a committed UPDATE or
// INSERT would, without telling the cache.
func (s *gatedStore) set(h keystore.Hash, tok *keystore.Token) {
	s.mu.Lock()
	if tok == nil {
		delete(s.tokens, h)
	} else {
		s.tokens[h] = tok
	}
	s.mu.Unlock()
}

type lookupResult struct {
	entry *Entry
	res   Result
	err   error
}

func lookupAsync(c *Cache, h keystore.Hash) <-chan lookupResult {
	done := make(chan lookupResult, 1)
	go func() {
		e, res, err := c.Lookup(context.Background(), h)
		done <- lookupResult{e, res, err}
	}()
	return done
}

// allowed reports whether a request with this answer would be let through.
func (r lookupResult) allowed() bool {
	return r.err == nil && r.entry != nil && r.entry.Token.Status(time.Now()) == keystore.TokenActive
}

func activeToken(id string) *keystore.Token {
	return &keystore.Token{ID: id, Workspace: "ws"}
}

func revokedToken(id string) *keystore.Token {
	return &keystore.Token{ID: id, Workspace: "ws", RevokedAt: time.Now().Add(-time.Second)}
}

// storeChanges are the ways a store tells the cache of a revocation: a
// watching store pushes the changed hash, or everything (after a lost
// connection); a key file store reloads, changing its Generation.
var storeChanges = []struct {
	name  string
	apply func(c *Cache, s *gatedStore, h keystore.Hash)
}{
	{"Invalidate", func(c *Cache, _ *gatedStore, h keystore.Hash) { c.Invalidate(h) }},
	{"PurgeAll", func(c *Cache, _ *gatedStore, _ keystore.Hash) { c.PurgeAll() }},
	{"reload", func(_ *Cache, s *gatedStore, _ keystore.Hash) { s.gen.Add(1) }},
}

// A request that arrives after a revocation must not share a store lookup
// begun before it, which read the row before the revocation (issue 15,
// item 9).
func TestRequestAfterRevocationDoesNotJoinEarlierLookup(t *testing.T) {
	for _, change := range storeChanges {
		t.Run(change.name, func(t *testing.T) {
			h := hashOf(20)
			s := newGatedStore()
			s.set(h, activeToken("tok_20"))
			c := newCache(t, s, Config{TTL: time.Hour})

			before := lookupAsync(c, h)
			first := <-s.started // holds the row as it was before the revocation
			s.set(h, revokedToken("tok_20"))
			change.apply(c, s, h) // the revocation is committed and announced
			after := lookupAsync(c, h)
			select {
			case second := <-s.started:
				close(second.release)
			case <-time.After(2 * time.Second): // no lookup of its own: it joined the first
				close(first.release)
				r := <-after
				t.Fatalf("a request that arrived after the revocation shared the lookup begun before it (allowed: %v)", r.allowed())
			}
			if r := <-after; r.err != nil || r.allowed() {
				t.Fatalf("request after the revocation: allowed %v, err %v", r.allowed(), r.err)
			}
			close(first.release)
			<-before // arrived before the revocation: either answer is right

			s.gated.Store(false)
			if r := <-lookupAsync(c, h); r.err != nil || r.allowed() {
				t.Fatalf("later request: allowed %v (%s), err %v: the answer from before the revocation was cached", r.allowed(), r.res, r.err)
			}
		})
	}
}

// A change that lands just as a lookup is about to cache what it read
// before the change must not leave that answer cached (issue 15, item 9):
// not a revoked token's old row for the whole ttl, nor "unknown" for a
// token just created.
func TestChangeAtCacheWriteIsNotCached(t *testing.T) {
	for _, change := range storeChanges {
		for _, tc := range []struct {
			name          string
			before, after *keystore.Token
		}{
			{"revoked", activeToken("tok_21"), revokedToken("tok_21")},
			{"created", nil, activeToken("tok_21")},
		} {
			t.Run(change.name+"/"+tc.name, func(t *testing.T) {
				h := hashOf(21)
				s := newGatedStore()
				s.gated.Store(false)
				s.set(h, tc.before)
				c := newCache(t, s, Config{TTL: time.Hour, NegativeTTL: time.Hour})
				changed := make(chan struct{})
				c.beforeCacheWrite = func(keystore.Hash) {
					c.beforeCacheWrite = nil
					s.set(h, tc.after)
					go func() {
						change.apply(c, s, h)
						close(changed)
					}()
					// A cache that orders changes after this write makes the
					// change wait until the write is done; bounded so that
					// one does not wait forever here.
					select {
					case <-changed:
					case <-time.After(100 * time.Millisecond):
					}
				}
				c.Lookup(context.Background(), h) // arrived before the change: either answer is right
				<-changed

				r := <-lookupAsync(c, h)
				wantAllowed := tc.after.Status(time.Now()) == keystore.TokenActive
				if r.err != nil || r.allowed() != wantAllowed {
					t.Fatalf("request after the change: allowed %v (%s), err %v; want allowed %v: the answer read before the change was cached",
						r.allowed(), r.res, r.err, wantAllowed)
				}
			})
		}
	}
}

// TestInvalidateRecordsOnlyForLookupsInFlight: a change is recorded in the
// change log only while a lookup is in flight (it is what keeps that lookup
// from caching what it read before); with none, a held entry is dropped and
// nothing is remembered, and the next lookup reads the store afresh.
func TestInvalidateRecordsOnlyForLookupsInFlight(t *testing.T) {
	held, other := hashOf(31), hashOf(32)
	s := newGatedStore()
	s.set(held, activeToken("tok_31"))
	s.set(other, activeToken("tok_32"))
	c := newCache(t, s, Config{TTL: time.Hour})
	s.gated.Store(false)
	if r := <-lookupAsync(c, held); !r.allowed() {
		t.Fatalf("active token refused: %+v", r)
	}

	// Nothing in flight: the held entry is dropped, nothing recorded.
	s.set(held, revokedToken("tok_31"))
	c.Invalidate(held)
	c.Invalidate(hashOf(33)) // never looked up
	if n := c.changes.remembered(); n != 0 {
		t.Errorf("%d changes remembered with no lookup in flight, want 0", n)
	}
	if r := <-lookupAsync(c, held); r.err != nil || r.allowed() {
		t.Fatalf("revoked token allowed (%s): the held entry was not dropped", r.res)
	}

	// A lookup in flight: the change is recorded, and what it read before
	// is not cached.
	s.gated.Store(true)
	done := lookupAsync(c, other)
	lookup := <-s.started
	s.set(other, revokedToken("tok_32"))
	c.Invalidate(other)
	if n := c.changes.remembered(); n != 1 {
		t.Errorf("%d changes remembered with a lookup in flight, want 1", n)
	}
	close(lookup.release)
	<-done
	s.gated.Store(false)
	if r := <-lookupAsync(c, other); r.err != nil || r.allowed() {
		t.Fatalf("revoked token allowed (%s): the answer read before the change was cached", r.res)
	}
}
