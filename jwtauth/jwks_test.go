package jwtauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// jwksServer serves a JWK set it can change, fail or slow down, and counts
// requests.
type jwksServer struct {
	*httptest.Server
	hits   atomic.Int64
	mu     sync.Mutex
	body   []byte
	status int
	delay  time.Duration
}

func newJWKSServer(t testing.TB, keys ...map[string]any) *jwksServer {
	s := &jwksServer{body: jwksJSON(keys...), status: http.StatusOK}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) serve(w http.ResponseWriter, r *http.Request) {
	s.hits.Add(1)
	s.mu.Lock()
	body, status, delay := s.body, s.status, s.delay
	s.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.WriteHeader(status)
	w.Write(body)
}

func (s *jwksServer) setKeys(keys ...map[string]any) { s.set(jwksJSON(keys...), http.StatusOK, 0) }

func (s *jwksServer) set(body []byte, status int, delay time.Duration) {
	s.mu.Lock()
	s.body, s.status, s.delay = body, status, delay
	s.mu.Unlock()
}

// allowRefetch lifts the unknown-kid throttle once, as if JWKSMinRefetch had
// passed.
func (v *Verifier) allowRefetch() {
	v.jwks.mu.Lock()
	v.jwks.lastAttempt = time.Time{}
	v.jwks.mu.Unlock()
}

func TestJWKSRotation(t *testing.T) {
	now := time.Now()
	k := keys()
	jwkA := jwkOf(k.rsa.Public(), "a", "RS256", "sig")
	jwkB := jwkOf(k.p256.Public(), "b", "", "sig")
	srv := newJWKSServer(t, jwkA)
	v := newVerifier(t, Config{JWKSURL: srv.URL, Algorithms: []string{"RS256", "ES256"}, JWKSMinRefetch: time.Hour, CacheMaxEntries: -1})

	tokA := mint(t, "RS256", k.rsa, "a", claimsAt(now))
	tokB := mint(t, "ES256", k.p256, "b", claimsAt(now))
	_, err := v.Verify(tokA, now)
	wantErr(t, err, nil)
	_, err = v.Verify(tokB, now)
	wantErr(t, err, ErrUnknownKey)

	// B is published: the next unknown-kid refetch (once the throttle
	// allows) picks it up, without restart.
	srv.setKeys(jwkA, jwkB)
	_, err = v.Verify(tokB, now)
	wantErr(t, err, ErrUnknownKey) // still throttled
	v.allowRefetch()
	_, err = v.Verify(tokB, now)
	wantErr(t, err, nil)
	gen := v.Stats().KeySetGeneration

	// A is withdrawn: once refetched, A's tokens are refused.
	srv.setKeys(jwkB)
	v.allowRefetch()
	_, err = v.Verify(mint(t, "ES256", k.p256, "c", claimsAt(now)), now) // any unknown kid triggers the refetch
	wantErr(t, err, ErrUnknownKey)
	_, err = v.Verify(tokA, now)
	wantErr(t, err, ErrUnknownKey)
	if g := v.Stats().KeySetGeneration; g != gen+1 {
		t.Errorf("generation %d, want %d", g, gen+1)
	}
}

func TestJWKSPeriodicRefresh(t *testing.T) {
	now := time.Now()
	k := keys()
	srv := newJWKSServer(t, jwkOf(k.rsa.Public(), "a", "", ""))
	v := newVerifier(t, Config{JWKSURL: srv.URL, Algorithms: []string{"RS256", "EdDSA"},
		JWKSRefresh: 20 * time.Millisecond, JWKSMinRefetch: time.Hour, testNoFloor: true})
	srv.setKeys(jwkOf(k.rsa.Public(), "a", "", ""), jwkOf(k.ed.Public(), "ed", "EdDSA", "sig"))
	tok := mint(t, "EdDSA", k.ed, "ed", claimsAt(now))
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := v.Verify(tok, now)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new key not picked up by the periodic refresh: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Refreshes of an unchanged document do not move the generation.
	gen := v.Stats().KeySetGeneration
	fetches := v.Stats().JWKSFetches
	for v.Stats().JWKSFetches < fetches+3 {
		time.Sleep(10 * time.Millisecond)
	}
	if g := v.Stats().KeySetGeneration; g != gen {
		t.Errorf("generation moved from %d to %d without a change", gen, g)
	}
	v.Close()
	n := srv.hits.Load()
	time.Sleep(100 * time.Millisecond)
	if srv.hits.Load() != n {
		t.Error("refresher still running after Close")
	}
}

func TestJWKSUnknownKIDFlood(t *testing.T) {
	now := time.Now()
	k := keys()
	srv := newJWKSServer(t, jwkOf(k.p256.Public(), "a", "ES256", "sig"))
	v := newVerifier(t, Config{JWKSURL: srv.URL, Algorithms: []string{"ES256"}})
	srv.set(jwksJSON(jwkOf(k.p256.Public(), "a", "ES256", "sig")), http.StatusOK, 50*time.Millisecond)

	sign := methodSigner(t, "ES256", k.p256b)
	tokens := make([]string, 1000)
	for i := range tokens {
		tokens[i] = rawToken(t, map[string]any{"alg": "ES256", "typ": "at+jwt", "kid": "flood-" + itoa(i)}, claimsAt(now), sign)
	}
	flood := func() {
		var wg sync.WaitGroup
		var accepted atomic.Int64
		for _, tok := range tokens {
			wg.Go(func() {
				if _, err := v.Verify(tok, now); !errors.Is(err, ErrUnknownKey) {
					accepted.Add(1)
				}
			})
		}
		wg.Wait()
		if accepted.Load() != 0 {
			t.Errorf("%d flood tokens not refused as unknown keys", accepted.Load())
		}
	}

	before := srv.hits.Load()
	flood() // within JWKSMinRefetch of the initial fetch: no fetch at all
	if n := srv.hits.Load() - before; n != 0 {
		t.Errorf("flood inside the throttle window made %d fetches, want 0", n)
	}
	v.allowRefetch()
	before = srv.hits.Load()
	flood() // the throttle window has passed: one shared fetch
	if n := srv.hits.Load() - before; n < 1 || n > 2 {
		t.Errorf("flood made %d fetches, want 1 (at most 2)", n)
	}

	// Requests that arrive while that fetch is in flight wait for it: when
	// it brings their key, they all pass.
	srv.set(jwksJSON(jwkOf(k.p256.Public(), "a", "ES256", "sig"), jwkOf(k.p256b.Public(), "new", "ES256", "sig")), http.StatusOK, 200*time.Millisecond)
	v.allowRefetch()
	tok := rawToken(t, map[string]any{"alg": "ES256", "typ": "at+jwt", "kid": "new"}, claimsAt(now), sign)
	before = srv.hits.Load()
	var wg sync.WaitGroup
	var refused atomic.Int64
	for range 50 {
		wg.Go(func() {
			if _, err := v.Verify(tok, now); err != nil {
				refused.Add(1)
			}
		})
	}
	wg.Wait()
	if refused.Load() != 0 {
		t.Errorf("%d of 50 concurrent requests refused; they should have shared the fetch", refused.Load())
	}
	if n := srv.hits.Load() - before; n != 1 {
		t.Errorf("%d fetches for 50 concurrent requests, want 1", n)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestJWKSFailuresKeepLastKeys(t *testing.T) {
	now := time.Now()
	k := keys()
	good := jwkOf(k.rsa.Public(), "a", "RS256", "sig")
	// Over 1 MiB, and otherwise a good document: only the size limit
	// refuses it.
	huge := jwksJSON(good)
	huge = append(huge[:len(huge)-1], `,"pad":"`+strings.Repeat("x", 1<<20)+`"}`...)
	weak, _ := rsa.GenerateKey(rand.Reader, 1024)
	cases := []struct {
		name   string
		body   []byte
		status int
		delay  time.Duration
	}{
		{"HTTP 500", []byte("oops"), 500, 0},
		{"HTTP 404", []byte("{}"), 404, 0},
		{"garbage", []byte("<html>not json</html>"), 200, 0},
		{"keys not an array", []byte(`{"keys":"a"}`), 200, 0},
		{"empty key set", []byte(`{"keys":[]}`), 200, 0},
		{"no usable key", jwksJSON(jwkOf(weak.Public(), "w", "", "")), 200, 0},
		{"oversized body", huge, 200, 0},
		{"slow endpoint", jwksJSON(good), 200, 3 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newJWKSServer(t, good)
			var callbackErrs atomic.Int64
			v := newVerifier(t, Config{JWKSURL: srv.URL, Algorithms: []string{"RS256"}, CacheMaxEntries: -1,
				HTTPClient: &http.Client{Timeout: 300 * time.Millisecond},
				OnJWKSRefresh: func(err error) {
					if err != nil {
						callbackErrs.Add(1)
					}
				}})
			tok := mint(t, "RS256", k.rsa, "a", claimsAt(now))
			_, err := v.Verify(tok, now)
			wantErr(t, err, nil)

			srv.set(tc.body, tc.status, tc.delay)
			start := time.Now()
			if _, err := v.refreshJWKS(false); err == nil {
				t.Fatal("refresh succeeded")
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("refresh took %v", d)
			}
			if s := v.Stats(); s.JWKSFailures != 1 || callbackErrs.Load() != 1 {
				t.Errorf("stats %+v, callback errors %d", s, callbackErrs.Load())
			}
			_, err = v.Verify(tok, now)
			wantErr(t, err, nil)

			// The same failure at provision is an error, bounded in time.
			start = time.Now()
			if v2, err := New(context.Background(), Config{JWKSURL: srv.URL, Algorithms: []string{"RS256"},
				HTTPClient: &http.Client{Timeout: 300 * time.Millisecond}}); err == nil {
				v2.Close()
				t.Fatal("New succeeded")
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("New took %v", d)
			}
		})
	}
}

func TestJWKSDefaultClientTimeout(t *testing.T) {
	if c := defaultHTTPClient(); c.Timeout != DefaultHTTPTimeout {
		t.Fatalf("default timeout %v", c.Timeout)
	}
}

func TestJWKSKeyFiltering(t *testing.T) {
	k := keys()
	weak, _ := rsa.GenerateKey(rand.Reader, 1024)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	offCurve := jwkOf(k.p256.Public(), "off", "", "")
	offCurve["y"] = jwkOf(k.p256b.Public(), "", "", "")["y"]
	withMember := func(m map[string]any, kv ...any) map[string]any {
		out := map[string]any{}
		for a, b := range m {
			out[a] = b
		}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i].(string)] = kv[i+1]
		}
		return out
	}
	rsaJWK := jwkOf(k.rsa.Public(), "r", "", "")
	cases := []struct {
		name string
		jwk  map[string]any
		ok   bool
	}{
		{"RSA", rsaJWK, true},
		{"RSA use sig alg RS256", withMember(rsaJWK, "use", "sig", "alg", "RS256"), true},
		{"EC P-256", jwkOf(k.p256.Public(), "e", "ES256", ""), true},
		{"EC P-384", jwkOf(k.p384.Public(), "e3", "", ""), true},
		{"Ed25519", jwkOf(k.ed.Public(), "ed", "EdDSA", "sig"), true},
		{"no kid", jwkOf(k.ed.Public(), "", "", ""), true},
		{"key_ops verify", withMember(rsaJWK, "key_ops", []string{"verify"}), true},
		{"use enc", withMember(rsaJWK, "use", "enc"), false},
		{"key_ops encrypt", withMember(rsaJWK, "key_ops", []string{"encrypt", "decrypt"}), false},
		{"key_ops malformed", withMember(rsaJWK, "key_ops", []string{"sign, verify"}), false},
		{"alg not allowed", withMember(rsaJWK, "alg", "RS512"), false},
		{"alg none", withMember(rsaJWK, "alg", "none"), false},
		{"alg of another key type", withMember(jwkOf(k.p256.Public(), "e", "", ""), "alg", "RS256"), false},
		{"HS256 alg on RSA key", withMember(rsaJWK, "alg", "HS256"), false},
		{"EC point off the curve", offCurve, false},
		{"EC P-521", jwkOf(p521.Public(), "p5", "", ""), false},
		{"EC short x", withMember(jwkOf(k.p256.Public(), "e", "", ""), "x", b64e([]byte{1, 2, 3})), false},
		{"oct", map[string]any{"kty": "oct", "k": b64e(k.secret), "kid": "h"}, false},
		{"private EC key", withMember(jwkOf(k.p256.Public(), "e", "", ""), "d", b64e([]byte{1})), false},
		{"RSA 1024", jwkOf(weak.Public(), "w", "", ""), false},
		{"RSA e = 1", withMember(rsaJWK, "e", b64e([]byte{1})), false},
		{"RSA huge e", withMember(rsaJWK, "e", b64e([]byte{1, 0, 0, 0, 0, 1})), false},
		{"no kty", map[string]any{"n": rsaJWK["n"], "e": "AQAB"}, false},
		{"unknown kty", withMember(rsaJWK, "kty", "RSA-PSS"), false},
		{"kid too long", withMember(rsaJWK, "kid", strings.Repeat("k", 300)), false},
		{"kid not a string", withMember(rsaJWK, "kid", 1), false},
		{"n not base64", withMember(rsaJWK, "n", "!!!"), false},
	}
	allow := setOf(algRS256, algES256, algES384, algEdDSA, algHS256)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			keys, skipped, err := parseJWKS(jwksJSON(tc.jwk), allow)
			if tc.ok != (err == nil && len(keys) == 1) {
				t.Fatalf("keys %d, skipped %q, err %v", len(keys), skipped, err)
			}
		})
	}
	// A usable key next to unusable ones; duplicates collapse.
	keys, skipped, err := parseJWKS(jwksJSON(withMember(rsaJWK, "use", "enc"), rsaJWK, rsaJWK, offCurve), allow)
	if err != nil || len(keys) != 1 || len(skipped) != 3 {
		t.Fatalf("keys %d, skipped %q, err %v", len(keys), skipped, err)
	}
	// End to end: a token signed with a key the JWKS marks for encryption.
	now := time.Now()
	srv := newJWKSServer(t, rsaJWK, withMember(jwkOf(k.p256.Public(), "enc-key", "", ""), "use", "enc"))
	v := newVerifier(t, Config{JWKSURL: srv.URL, Algorithms: []string{"RS256", "ES256"}})
	_, err = v.Verify(mint(t, "ES256", k.p256, "enc-key", claimsAt(now)), now)
	wantErr(t, err, ErrUnknownKey)
	_, err = v.Verify(mint(t, "ES256", k.p256, "", claimsAt(now)), now)
	wantErr(t, err, ErrUnknownKey)
	_, err = v.Verify(mint(t, "RS256", k.rsa, "r", claimsAt(now)), now)
	wantErr(t, err, nil)
}

func TestJWKSOverTLSAndStaticKeysStay(t *testing.T) {
	now := time.Now()
	k := keys()
	var body atomic.Value
	body.Store(jwksJSON(jwkOf(k.p256.Public(), "e", "ES256", "sig")))
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(body.Load().([]byte))
	}))
	t.Cleanup(srv.Close)
	if !strings.HasPrefix(srv.URL, "https://") {
		t.Fatal(srv.URL)
	}
	v := newVerifier(t, Config{JWKSURL: srv.URL, HTTPClient: srv.Client(), Secret: k.secret,
		Algorithms: []string{"ES256", "HS256"}, CacheMaxEntries: -1})
	_, err := v.Verify(mint(t, "ES256", k.p256, "e", claimsAt(now)), now)
	wantErr(t, err, nil)
	body.Store(jwksJSON(jwkOf(k.p256b.Public(), "f", "ES256", "sig")))
	if _, err := v.refreshJWKS(false); err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(mint(t, "ES256", k.p256, "e", claimsAt(now)), now)
	wantErr(t, err, ErrUnknownKey)
	_, err = v.Verify(mint(t, "HS256", k.secret, "", claimsAt(now)), now)
	wantErr(t, err, nil) // the secret stays through JWKS changes
}

func TestJWKSLogsNothingSecret(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	k := keys()
	srv := newJWKSServer(t, jwkOf(k.p256.Public(), "e", "ES256", "sig"))
	v := newVerifier(t, Config{JWKSURL: srv.URL + "/jwks?access_token=SECRET-IN-QUERY", Algorithms: []string{"ES256", "HS256"},
		Logger: zap.New(core), Secret: k.secret, TypeOff: true})
	srv.set([]byte("oops SECRET-IN-BODY"), 500, 0)
	_, err := v.refreshJWKS(false)
	if err == nil {
		t.Fatal("refresh succeeded")
	}
	now := time.Now()
	v.Verify(mint(t, "HS256", k.other, "", claimsAt(now)), now)
	v.Verify(mint(t, "ES256", k.p256, "unknown-kid-sent", claimsAt(now)), now)
	texts := []string{err.Error()}
	for _, e := range logs.All() {
		texts = append(texts, e.Message)
		for key, val := range e.ContextMap() {
			texts = append(texts, key, fmtAny(val))
		}
	}
	if len(logs.FilterMessageSnippet("jwks fetch failed").All()) != 1 {
		t.Error("fetch failure not logged")
	}
	for _, s := range texts {
		for _, bad := range []string{"SECRET-IN-QUERY", "SECRET-IN-BODY", string(k.secret), "unknown-kid-sent"} {
			if strings.Contains(s, bad) {
				t.Errorf("log or error %q contains %q", s, bad)
			}
		}
	}
}

func fmtAny(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// Stats reports the JWKS key count and the time of the last good fetch,
// which a failing fetch does not move, and the entries of the cache.
func TestJWKSStats(t *testing.T) {
	now := time.Now()
	k := keys()
	srv := newJWKSServer(t, jwkOf(k.p256.Public(), "a", "ES256", "sig"), jwkOf(k.rsa.Public(), "b", "RS256", "sig"))
	before := time.Now()
	v := newVerifier(t, Config{JWKSURL: srv.URL, Algorithms: []string{"RS256", "ES256"}})
	st := v.Stats()
	if !st.JWKS || st.JWKSKeys != 2 || st.JWKSLastSuccess.Before(before) || st.JWKSLastSuccess.After(time.Now()) {
		t.Fatalf("after the first fetch: %+v", st)
	}
	keysBefore := v.Keys()
	if len(keysBefore) != 2 || keysBefore[0].ID != "a" || keysBefore[0].Algorithms != "ES256" || keysBefore[0].Source != "jwks" ||
		keysBefore[1].ID != "b" || keysBefore[0].Since.Before(before) {
		t.Fatalf("Keys() = %+v", keysBefore)
	}
	if _, err := v.Verify(mint(t, "ES256", k.p256, "a", claimsAt(now)), now); err != nil {
		t.Fatal(err)
	}
	v.waitCache()
	if n := v.Stats().CacheEntries; n != 1 {
		t.Errorf("%d cache entries after one verified token, want 1", n)
	}
	srv.set([]byte("oops"), http.StatusInternalServerError, 0)
	v.allowRefetch()
	_, _ = v.Verify(mint(t, "ES256", k.p256, "unknown", claimsAt(now)), now) // an unknown kid refetches
	st2 := v.Stats()
	if st2.JWKSFailures == 0 || !st2.JWKSLastSuccess.Equal(st.JWKSLastSuccess) || st2.JWKSKeys != 2 {
		t.Errorf("after a failed fetch: %+v (before: %+v)", st2, st)
	}
	// The same keys fetched again keep their age.
	srv.setKeys(jwkOf(k.p256.Public(), "a", "ES256", "sig"), jwkOf(k.rsa.Public(), "b", "RS256", "sig"))
	v.allowRefetch()
	_, _ = v.Verify(mint(t, "ES256", k.p256, "unknown", claimsAt(now)), now)
	if after := v.Keys(); len(after) != 2 || !after[0].Since.Equal(keysBefore[0].Since) || !v.Stats().JWKSLastSuccess.After(st.JWKSLastSuccess) {
		t.Errorf("after refetching the same keys: %+v (before: %+v)", after, keysBefore)
	}
	if st := newVerifier(t, Config{Secret: k.secret, Algorithms: []string{"HS256"}}).Stats(); st.JWKS || !st.JWKSLastSuccess.IsZero() {
		t.Errorf("without a JWKS: %+v", st)
	}
}
