package tokencache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deplo-sh/deplo-auth/grant"
	"github.com/deplo-sh/deplo-auth/keystore"
)

// countingStore is an in-memory keystore.Store that counts lookups and can
// be made slow or failing.
type countingStore struct {
	mu      sync.Mutex
	tokens  map[keystore.Hash]*keystore.Token
	gen     atomic.Uint64
	lookups atomic.Int64
	delay   time.Duration
	fail    atomic.Bool
}

func (s *countingStore) Lookup(ctx context.Context, h keystore.Hash) (*keystore.Token, error) {
	s.lookups.Add(1)
	if s.delay > 0 {
		select {
		case <-time.After(s.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if s.fail.Load() {
		return nil, errors.New("connection refused")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.tokens[h]; ok {
		return t, nil
	}
	return nil, keystore.ErrNotFound
}

func (s *countingStore) Generation() uint64 { return s.gen.Load() }

func (s *countingStore) put(h keystore.Hash, t *keystore.Token) {
	s.mu.Lock()
	s.tokens[h] = t
	s.mu.Unlock()
	s.gen.Add(1)
}

func hashOf(b byte) keystore.Hash {
	var h keystore.Hash
	for i := range h {
		h[i] = b
	}
	return h
}

func newStore() *countingStore {
	return &countingStore{tokens: map[keystore.Hash]*keystore.Token{}}
}

func newCache(t *testing.T, s keystore.Store, cfg Config) *Cache {
	t.Helper()
	c, err := New(s, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// waitCached retries until ristretto has admitted the asynchronous set.
func waitCached(t *testing.T, c *Cache, h keystore.Hash, want Result) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		c.positive.Wait()
		c.negative.Wait()
		_, res, err := c.Lookup(context.Background(), h)
		if err != nil {
			t.Fatal(err)
		}
		if res == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("result %s, want %s", res, want)
		}
	}
}

func TestLookupPrincipal(t *testing.T) {
	s := newStore()
	var reported []string
	h := hashOf(1)
	s.put(h, &keystore.Token{ID: "tok_1", Workspace: "ws", Project: "p", Scopes: []string{"read", "bogus", "deploy"}})
	c := newCache(t, s, Config{OnUnknownScopes: func(id string, unknown []string) { reported = append(reported, unknown...) }})
	e, res, err := c.Lookup(context.Background(), h)
	if err != nil || e == nil || res != Miss {
		t.Fatalf("Lookup = %v, %s, %v", e, res, err)
	}
	want := grant.Principal{Kind: grant.KindAPIKey, Subject: "tok_1", Workspace: "ws", Project: "p", Scopes: grant.ScopeRead | grant.ScopeDeploy}
	if e.Principal != want {
		t.Errorf("principal %+v, want %+v", e.Principal, want)
	}
	if len(reported) != 1 || reported[0] != "bogus" {
		t.Errorf("unknown scopes reported %v", reported)
	}
	waitCached(t, c, h, Hit)
	if n := s.lookups.Load(); n != 1 {
		t.Errorf("%d store lookups, want 1", n)
	}
}

func TestNegativeCache(t *testing.T) {
	s := newStore()
	c := newCache(t, s, Config{NegativeTTL: time.Hour})
	h := hashOf(2)
	e, res, err := c.Lookup(context.Background(), h)
	if e != nil || err != nil || res != Miss {
		t.Fatalf("Lookup = %v, %s, %v", e, res, err)
	}
	waitCached(t, c, h, NegativeHit)
	// A token added to the store is found at once: the generation changed.
	s.put(h, &keystore.Token{ID: "tok_new", Workspace: "ws"})
	e, _, err = c.Lookup(context.Background(), h)
	if err != nil || e == nil || e.Token.ID != "tok_new" {
		t.Fatalf("after the store changed: %v, %v", e, err)
	}
}

func TestGenerationDropsStaleEntries(t *testing.T) {
	s := newStore()
	h := hashOf(3)
	s.put(h, &keystore.Token{ID: "tok_old", Workspace: "ws"})
	c := newCache(t, s, Config{TTL: time.Hour})
	waitCached(t, c, h, Hit)
	s.put(h, &keystore.Token{ID: "tok_old", Workspace: "ws", RevokedAt: time.Now()})
	e, res, err := c.Lookup(context.Background(), h)
	if err != nil || res != Miss || e.Token.RevokedAt.IsZero() {
		t.Fatalf("stale entry served after a store change: %s %+v %v", res, e, err)
	}
}

func TestKeyCollisionIsNotAHit(t *testing.T) {
	s := newStore()
	a, b := hashOf(4), hashOf(4)
	b[31] = 0xff // same first 8 bytes: same ristretto key
	s.put(a, &keystore.Token{ID: "tok_a", Workspace: "ws"})
	c := newCache(t, s, Config{})
	waitCached(t, c, a, Hit)
	e, _, err := c.Lookup(context.Background(), b)
	if err != nil || e != nil {
		t.Fatalf("hash b resolved to %+v", e)
	}
}

func TestStoreErrorNotCached(t *testing.T) {
	s := newStore()
	h := hashOf(5)
	s.put(h, &keystore.Token{ID: "tok_5", Workspace: "ws"})
	s.fail.Store(true)
	c := newCache(t, s, Config{})
	for i := 0; i < 3; i++ {
		if e, _, err := c.Lookup(context.Background(), h); err == nil || e != nil {
			t.Fatalf("failing store: %v, %v", e, err)
		}
	}
	s.fail.Store(false)
	if e, _, err := c.Lookup(context.Background(), h); err != nil || e == nil {
		t.Fatalf("after recovery: %v, %v", e, err)
	}
	if n := s.lookups.Load(); n != 4 {
		t.Errorf("%d lookups, want 4 (errors must not be cached)", n)
	}
}

func TestConcurrentMissesMakeOneLookup(t *testing.T) {
	s := newStore()
	s.delay = 100 * time.Millisecond
	h := hashOf(6)
	s.put(h, &keystore.Token{ID: "tok_6", Workspace: "ws", Scopes: []string{"read"}})
	c := newCache(t, s, Config{})
	const n = 1000
	var wg sync.WaitGroup
	var found atomic.Int64
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if e, _, err := c.Lookup(context.Background(), h); err == nil && e != nil {
				found.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	if found.Load() != n {
		t.Errorf("%d of %d lookups found the token", found.Load(), n)
	}
	if got := s.lookups.Load(); got != 1 {
		t.Errorf("%d store lookups for %d concurrent first requests, want 1", got, n)
	}
}

func TestCancelledCallerDoesNotFailOthers(t *testing.T) {
	s := newStore()
	s.delay = 50 * time.Millisecond
	h := hashOf(7)
	s.put(h, &keystore.Token{ID: "tok_7", Workspace: "ws"})
	c := newCache(t, s, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if e, _, err := c.Lookup(ctx, h); err != nil || e == nil {
		t.Fatalf("a cancelled request context aborted the shared lookup: %v", err)
	}
}

func TestPurge(t *testing.T) {
	s := newStore()
	h := hashOf(8)
	s.put(h, &keystore.Token{ID: "tok_8", Workspace: "ws"})
	c := newCache(t, s, Config{})
	waitCached(t, c, h, Hit)
	c.Invalidate(h)
	if _, res, _ := c.Lookup(context.Background(), h); res != Miss {
		t.Errorf("after Purge: %s", res)
	}
	waitCached(t, c, h, Hit)
	c.PurgeAll()
	if _, res, _ := c.Lookup(context.Background(), h); res != Miss {
		t.Errorf("after PurgeAll: %s", res)
	}
}

func TestStaleIfError(t *testing.T) {
	s := newStore()
	h := hashOf(10)
	s.put(h, &keystore.Token{ID: "tok_10", Workspace: "ws"})
	c := newCache(t, s, Config{TTL: 50 * time.Millisecond, StaleIfError: time.Hour})
	waitCached(t, c, h, Hit)
	time.Sleep(60 * time.Millisecond) // past TTL, inside the stale window
	s.fail.Store(true)
	e, res, err := c.Lookup(context.Background(), h)
	if err != nil || e == nil || res != Stale {
		t.Fatalf("store down past TTL: %v %s %v, want the stale entry", e, res, err)
	}
	s.fail.Store(false)
	if _, res, err := c.Lookup(context.Background(), h); err != nil || res != Miss {
		t.Fatalf("store back: %s %v, want a fresh lookup", res, err)
	}
}

func TestNoStaleByDefault(t *testing.T) {
	s := newStore()
	h := hashOf(11)
	s.put(h, &keystore.Token{ID: "tok_11", Workspace: "ws"})
	c := newCache(t, s, Config{TTL: 50 * time.Millisecond})
	waitCached(t, c, h, Hit)
	time.Sleep(80 * time.Millisecond)
	s.fail.Store(true)
	if e, _, err := c.Lookup(context.Background(), h); err == nil || e != nil {
		t.Fatalf("store down, no stale_if_error: %v %v, want an error", e, err)
	}
}

// A lookup that read the row before a pushed change must not cache it.
func TestInvalidateDuringLookupIsNotCached(t *testing.T) {
	for _, change := range []struct {
		name  string
		apply func(c *Cache, h keystore.Hash)
	}{
		{"Invalidate", func(c *Cache, h keystore.Hash) { c.Invalidate(h) }},
		{"PurgeAll", func(c *Cache, _ keystore.Hash) { c.PurgeAll() }},
	} {
		t.Run(change.name, func(t *testing.T) {
			s := newStore()
			s.delay = 100 * time.Millisecond
			h := hashOf(12)
			s.put(h, &keystore.Token{ID: "tok_12", Workspace: "ws"})
			c := newCache(t, s, Config{TTL: time.Hour})
			done := make(chan struct{})
			go func() {
				defer close(done)
				c.Lookup(context.Background(), h) // reads the old row, slowly
			}()
			time.Sleep(30 * time.Millisecond)
			change.apply(c, h) // the revocation arrives while that lookup is in flight
			<-done
			c.positive.Wait()
			before := s.lookups.Load()
			if _, res, _ := c.Lookup(context.Background(), h); res != Miss || s.lookups.Load() != before+1 {
				t.Fatalf("the answer read before the change was cached (%s)", res)
			}
		})
	}
}

// Requests still running when their config is unloaded keep getting right
// answers from the store: ristretto's Close is not safe against concurrent
// use, so Close stops caching at once and releases ristretto later.
func TestLookupsDuringClose(t *testing.T) {
	s := newStore()
	known, unknown := hashOf(11), hashOf(12)
	s.put(known, &keystore.Token{ID: "tok_11", Workspace: "ws"})
	c, err := New(s, Config{})
	if err != nil {
		t.Fatal(err)
	}
	waitCached(t, c, known, Hit)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var wrong atomic.Int64
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if e, _, err := c.Lookup(context.Background(), known); err != nil || e == nil || e.Token.ID != "tok_11" {
					wrong.Add(1)
				}
				if e, _, err := c.Lookup(context.Background(), unknown); err != nil || e != nil {
					wrong.Add(1)
				}
				c.Invalidate(unknown)
				c.PurgeAll()
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	c.Close()
	before := s.lookups.Load()
	time.Sleep(20 * time.Millisecond)
	close(stop)
	wg.Wait()
	if n := wrong.Load(); n != 0 {
		t.Fatalf("%d wrong answers around Close", n)
	}
	if _, res, _ := c.Lookup(context.Background(), known); res != Miss {
		t.Errorf("after Close: %s, want every lookup to go to the store", res)
	}
	if s.lookups.Load() == before {
		t.Error("no store lookups after Close: something is still cached")
	}
}

// Stats counts the entries held, and OnEvict reports entries evicted for
// room (never expired ones).
func TestEntriesAndEvictions(t *testing.T) {
	s := newStore()
	var evicted, evictedNegative atomic.Int64
	c := newCache(t, s, Config{MaxEntries: 10, OnEvict: func(negative bool) {
		if negative {
			evictedNegative.Add(1)
		} else {
			evicted.Add(1)
		}
	}})
	for i := 0; i < 3; i++ {
		h := hashOf(byte(100 + i))
		s.put(h, &keystore.Token{ID: fmt.Sprintf("tok_%d", i), Workspace: "ws"})
		c.Lookup(context.Background(), h)
	}
	c.Lookup(context.Background(), hashOf(200)) // unknown
	if st := c.Stats(); st.Entries != 3 || st.NegativeEntries != 1 {
		t.Fatalf("entries %d / %d negative, want 3 / 1", st.Entries, st.NegativeEntries)
	}
	// Fill past the bound: the cache stays within it and reports evictions.
	for i := 0; i < 200; i++ {
		h := hashOf(byte(i))
		h[1] = 0xee // distinct from the hashes above
		s.put(h, &keystore.Token{ID: fmt.Sprintf("tok_x%d", i), Workspace: "ws"})
		for j := 0; j < 3; j++ { // seen often enough to be admitted
			c.Lookup(context.Background(), h)
		}
	}
	c.positive.Wait()
	if st := c.Stats(); st.Entries > 10 || st.Entries == 0 {
		t.Errorf("%d entries in a cache of 10", st.Entries)
	}
	if evicted.Load() == 0 {
		t.Error("no eviction reported while filling a full cache")
	}
	if evictedNegative.Load() != 0 {
		t.Errorf("%d negative evictions with one negative entry", evictedNegative.Load())
	}
}
