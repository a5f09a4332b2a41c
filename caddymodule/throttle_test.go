package caddymodule

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func requestFrom(ip, method, target string) *http.Request {
	r, _ := newRequest(method, target)
	vars := r.Context().Value(caddyhttp.VarsCtxKey).(map[string]any)
	vars[caddyhttp.ClientIPVarKey] = ip
	return r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, vars))
}

func TestThrottle(t *testing.T) {
	f := newFixture(t, func(h *Handler) { h.Throttle = &ThrottleConfig{Failures: 5, Window: caddyDuration(time.Minute)} })
	path := "/v1/workspaces/ws_acme/projects"
	attempt := func(ip, auth string) (*http.Request, int, http.Header) {
		r := requestFrom(ip, "GET", path)
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		w, _, err := f.serve(r)
		return r, statusOf(err), w.Header()
	}
	// Five failures (unknown, malformed, bad line) are let through, then 429.
	for i, auth := range []string{"Bearer " + mustToken(t), "Bearer " + mustToken(t), "Bearer sk_live_x", "Bearer a b", "Bearer " + mustToken(t)} {
		if _, st, _ := attempt("203.0.113.9", auth); st != 401 && st != 400 {
			t.Fatalf("failure %d: status %d", i, st)
		}
	}
	afterFailures := f.h.tokens.Stats()
	_, st, hdr := attempt("203.0.113.9", "Bearer "+mustToken(t))
	if st != http.StatusTooManyRequests {
		t.Fatalf("sixth failure: status %d, want 429", st)
	}
	if s, err := strconv.Atoi(hdr.Get("Retry-After")); err != nil || s < 1 || s > 60 {
		t.Errorf("Retry-After %q", hdr.Get("Retry-After"))
	}
	if hdr.Get("WWW-Authenticate") != "" {
		t.Error("429 carries a challenge")
	}
	if f.h.tokens.Stats() != afterFailures {
		t.Error("a throttled request reached the token cache")
	}
	// A valid credential the caches do not hold yet waits: the guard
	// answers before any store lookup.
	if _, st, _ := attempt("203.0.113.9", "Bearer "+f.read.raw); st != http.StatusTooManyRequests {
		t.Errorf("uncached valid token from a throttled client: %d", st)
	}
	// Another client, and the same /64 in IPv6 terms, are independent.
	if _, st, _ := attempt("198.51.100.1", "Bearer "+f.read.raw); st != 200 {
		t.Errorf("another client: %d", st)
	}
	// Throttled, not locked out: now that the caches hold the read token
	// as valid, the throttled client passes with it (and with nothing else).
	deadline := time.Now().Add(5 * time.Second) // ristretto admits asynchronously
	for _, st, _ := attempt("203.0.113.9", "Bearer "+f.read.raw); st != 200; _, st, _ = attempt("203.0.113.9", "Bearer "+f.read.raw) {
		if st != http.StatusTooManyRequests || time.Now().After(deadline) {
			t.Fatalf("cached token from a throttled client: %d", st)
		}
		time.Sleep(time.Millisecond)
	}
	if _, st, _ := attempt("203.0.113.9", "Bearer "+f.admin.raw); st != http.StatusTooManyRequests {
		t.Errorf("uncached token from a throttled client after a cached pass: %d", st)
	}
	// Requests without a credential are not failures.
	for i := 0; i < 10; i++ {
		if _, st, _ := attempt("198.51.100.2", ""); st != 401 {
			t.Fatalf("no credential: %d", st)
		}
	}
	if _, st, _ := attempt("198.51.100.2", "Bearer "+f.read.raw); st != 200 {
		t.Errorf("client that only lacked credentials was throttled: %d", st)
	}
}

func TestThrottleIPv6Prefix(t *testing.T) {
	f := newFixture(t, func(h *Handler) { h.Throttle = &ThrottleConfig{Failures: 2, Window: caddyDuration(time.Minute)} })
	for i, ip := range []string{"2001:db8:1:2::1", "2001:db8:1:2::ffff"} {
		r := requestFrom(ip, "GET", "/v1/workspaces/ws_acme/projects")
		r.Header.Set("Authorization", "Bearer "+mustToken(t))
		if _, _, err := f.serve(r); statusOf(err) != 401 {
			t.Fatalf("failure %d: %v", i, err)
		}
	}
	r := requestFrom("2001:db8:1:2::abcd", "GET", "/v1/workspaces/ws_acme/projects")
	r.Header.Set("Authorization", "Bearer "+f.read.raw)
	if _, _, err := f.serve(r); statusOf(err) != 429 {
		t.Fatalf("another address of the same /64: %v, want 429", err)
	}
}

func TestThrottleOff(t *testing.T) {
	f := newFixture(t, func(h *Handler) { h.Throttle = &ThrottleConfig{Off: true} })
	for i := 0; i < 100; i++ {
		r := requestFrom("203.0.113.7", "GET", "/v1/workspaces/ws_acme/projects")
		r.Header.Set("Authorization", "Bearer sk_live_bad")
		if _, _, err := f.serve(r); statusOf(err) != 401 {
			t.Fatalf("throttle off, attempt %d: %v", i, err)
		}
	}
}
