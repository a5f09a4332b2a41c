package jwtauth

import (
	"crypto/sha256"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deplo-sh/deplo-auth/grant"
)

type denylist struct {
	mu      sync.Mutex
	revoked map[string]bool
}

func (d *denylist) SessionRevoked(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.revoked[id]
}

func (d *denylist) revoke(id string) {
	d.mu.Lock()
	d.revoked[id] = true
	d.mu.Unlock()
}

// verifyTwice verifies tok, waits for the cache write, and verifies again;
// it returns the second answer and whether it was a cache hit.
func verifyTwice(t *testing.T, v *Verifier, tok string, first, second time.Time) (*Session, error, bool) {
	t.Helper()
	if _, err := v.Verify(tok, first); err != nil {
		t.Fatalf("first Verify: %v", err)
	}
	v.waitCache()
	hits := v.Stats().CacheHits
	s, err := v.Verify(tok, second)
	return s, err, v.Stats().CacheHits == hits+1
}

func TestCacheHit(t *testing.T) {
	now := time.Now()
	k := keys()
	v := newVerifier(t, Config{Secret: k.secret, Algorithms: []string{"HS256"}})
	tok := mint(t, "HS256", k.secret, "", claimsAt(now))
	s, err, hit := verifyTwice(t, v, tok, now, now.Add(time.Second))
	wantErr(t, err, nil)
	if !hit {
		t.Fatal("second Verify was not a cache hit")
	}
	if s.Principal.Subject != "user_42" || s.Principal.Scopes != grant.ScopeRead|grant.ScopeDeploy {
		t.Errorf("cached session %+v", s)
	}
	// The caller's copy is its own.
	s.Principal.Scopes = grant.ScopeAdmin
	s2, err := v.Verify(tok, now)
	wantErr(t, err, nil)
	if s2.Principal.Scopes == grant.ScopeAdmin {
		t.Error("a caller's change reached the cache")
	}
	// The entry is keyed by the SHA-256 of the token, and holds no token.
	sum := sha256.Sum256([]byte(tok))
	e, ok := v.cache.Get(cacheKey(&sum))
	if !ok || e.hash != sum {
		t.Fatal("no entry under the token's SHA-256")
	}
	// A different token is a miss.
	misses := v.Stats().CacheMisses
	if _, err := v.Verify(mint(t, "HS256", k.secret, "", with(claimsAt(now), "jti", "x")), now); err != nil {
		t.Fatal(err)
	}
	if v.Stats().CacheMisses != misses+1 {
		t.Error("a new token did not miss")
	}
}

func TestCacheRechecksTime(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	k := keys()
	v := newVerifier(t, Config{Secret: k.secret, Algorithms: []string{"HS256"}})
	claims := with(claimsAt(now), "nbf", now.Add(-10*time.Second).Unix())
	tok := mint(t, "HS256", k.secret, "", claims)
	exp := time.Unix(claims["exp"].(int64), 0)

	_, err, hit := verifyTwice(t, v, tok, now, exp.Add(DefaultLeeway))
	wantErr(t, err, ErrExpired)
	if !hit {
		t.Error("expiry not judged on the cached entry")
	}
	_, err = v.Verify(tok, exp.Add(DefaultLeeway-time.Second))
	wantErr(t, err, nil) // within the leeway
	_, err = v.Verify(tok, now.Add(-time.Minute))
	wantErr(t, err, ErrNotYetValid)
	_, err = v.Verify(tok, now)
	wantErr(t, err, nil)
}

func TestCacheEntryDroppedWithKey(t *testing.T) {
	now := time.Now()
	k := keys()
	jwkA, jwkB := jwkOf(k.p256.Public(), "a", "ES256", "sig"), jwkOf(k.p256b.Public(), "b", "ES256", "sig")
	srv := newJWKSServer(t, jwkA)
	v := newVerifier(t, Config{JWKSURL: srv.URL, Algorithms: []string{"ES256"}})
	tok := mint(t, "ES256", k.p256, "a", claimsAt(now))
	_, err, hit := verifyTwice(t, v, tok, now, now)
	wantErr(t, err, nil)
	if !hit {
		t.Fatal("not cached")
	}

	// Another key appears: the set changes, A is unchanged, the entry
	// stays valid.
	srv.setKeys(jwkA, jwkB)
	if _, err := v.refreshJWKS(false); err != nil {
		t.Fatal(err)
	}
	hits := v.Stats().CacheHits
	_, err = v.Verify(tok, now)
	wantErr(t, err, nil)
	if v.Stats().CacheHits != hits+1 {
		t.Error("an unrelated key change dropped the cached entry")
	}

	// A leaves the JWKS: the cached token is refused.
	srv.setKeys(jwkB)
	if _, err := v.refreshJWKS(false); err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(tok, now)
	wantErr(t, err, ErrUnknownKey)

	// A comes back (a new key object with the same material): accepted
	// again after a fresh verification.
	srv.setKeys(jwkA, jwkB)
	if _, err := v.refreshJWKS(false); err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(tok, now)
	wantErr(t, err, nil)
}

func TestCacheSessionRevoked(t *testing.T) {
	now := time.Now()
	k := keys()
	deny := &denylist{revoked: map[string]bool{}}
	v := newVerifier(t, Config{Secret: k.secret, Algorithms: []string{"HS256"}, Sessions: deny})
	tok := mint(t, "HS256", k.secret, "", with(claimsAt(now), "sid", "sess-1"))
	_, err, hit := verifyTwice(t, v, tok, now, now)
	wantErr(t, err, nil)
	if !hit {
		t.Fatal("not cached")
	}
	deny.revoke("sess-1")
	_, err = v.Verify(tok, now)
	wantErr(t, err, ErrSessionRevoked)

	// jti is asked too, and a revoked session is refused uncached.
	tok2 := mint(t, "HS256", k.secret, "", with(claimsAt(now), "jti", "tok-9"))
	deny.revoke("tok-9")
	_, err = v.Verify(tok2, now)
	wantErr(t, err, ErrSessionRevoked)
}

func TestCacheDisabled(t *testing.T) {
	now := time.Now()
	k := keys()
	v := newVerifier(t, Config{Secret: k.secret, Algorithms: []string{"HS256"}, CacheMaxEntries: -1})
	tok := mint(t, "HS256", k.secret, "", claimsAt(now))
	for range 3 {
		if _, err := v.Verify(tok, now); err != nil {
			t.Fatal(err)
		}
	}
	if s := v.Stats(); s.CacheHits != 0 || s.CacheMisses != 0 {
		t.Errorf("stats %+v", s)
	}
}

// TestCacheHitCost: a hit allocates only the caller's Session copy.
func TestCacheHitCost(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	now := time.Now()
	k := keys()
	v := newVerifier(t, Config{PublicKeyFiles: []string{writePublicPEM(t, k.p256.Public())}, Algorithms: []string{"ES256"}})
	tok := mint(t, "ES256", k.p256, "", claimsAt(now))
	if _, err, hit := verifyTwice(t, v, tok, now, now); err != nil || !hit {
		t.Fatal(err, hit)
	}
	if n := testing.AllocsPerRun(200, func() { v.Verify(tok, now) }); n > 1 {
		t.Errorf("a cache hit allocates %v times, want at most 1", n)
	}
}

func TestVerifyAfterClose(t *testing.T) {
	now := time.Now()
	k := keys()
	v := newVerifier(t, Config{Secret: k.secret, Algorithms: []string{"HS256"}})
	tok := mint(t, "HS256", k.secret, "", claimsAt(now))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				v.Verify(tok, now)
			}
		})
	}
	v.Close()
	wg.Wait()
	v.Close()
	if _, err := v.Verify(tok, now); err != nil {
		t.Fatal(err)
	}
}

// A full verification cache reports what it evicts for room.
func TestCacheEvictionsReported(t *testing.T) {
	now := time.Now()
	k := keys()
	var evicted atomic.Int64
	v := newVerifier(t, Config{Secret: k.secret, Algorithms: []string{"HS256"}, CacheMaxEntries: 5,
		OnCacheEvict: func() { evicted.Add(1) }})
	for i := 0; i < 100; i++ {
		c := claimsAt(now)
		c["jti"] = fmt.Sprintf("j%d", i)
		tok := mint(t, "HS256", k.secret, "", c)
		for j := 0; j < 3; j++ {
			if _, err := v.Verify(tok, now); err != nil {
				t.Fatal(err)
			}
			v.waitCache()
		}
	}
	if n := v.Stats().CacheEntries; n > 5 || n == 0 {
		t.Errorf("%d entries in a cache of 5", n)
	}
	if evicted.Load() == 0 {
		t.Error("no eviction reported while filling a full cache")
	}
}
