package main

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/deplo-sh/deplo-auth/identity"
)

const secret = "example-upstream-test-secret-0123456789"

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestSetupRefusesWithoutKeys(t *testing.T) {
	for _, keys := range []string{"", "  "} {
		_, err := setup(nil, env(map[string]string{keysEnv: keys}), quiet)
		if err == nil || !strings.Contains(err.Error(), keysEnv) || !strings.Contains(err.Error(), "-insecure-no-signature") {
			t.Fatalf("keys %q: %v", keys, err)
		}
	}
}

func TestSetupErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		keys string
	}{
		{nil, "gw-1"},
		{nil, "gw-1:short"},
		{nil, "gw-1:" + secret + ",gw-1:" + secret},
		{[]string{"-max-age", "-1s"}, "gw-1:" + secret},
		{[]string{"-prefix", "X Bad-"}, "gw-1:" + secret},
		{[]string{"-prefix", "X Bad-", "-insecure-no-signature"}, ""},
		{[]string{"-nope"}, "gw-1:" + secret},
		{[]string{"extra"}, "gw-1:" + secret},
	} {
		if _, err := setup(tt.args, env(map[string]string{keysEnv: tt.keys}), quiet); err == nil {
			t.Errorf("setup(%q) with keys %q: no error", tt.args, tt.keys)
		} else if strings.Contains(err.Error(), secret) {
			t.Errorf("error leaks the secret: %v", err)
		}
	}
}

func TestSetupVerifies(t *testing.T) {
	cfg, err := setup([]string{"-listen", "127.0.0.1:0", "-insecure-no-signature"},
		env(map[string]string{keysEnv: "old:" + secret + "-old, gw-1:" + secret}), quiet)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.listen != "127.0.0.1:0" {
		t.Fatalf("listen %q", cfg.listen)
	}
	signer, _ := identity.NewSigner("", identity.Key{ID: "gw-1", Secret: []byte(secret)})
	id := identity.Identity{Method: identity.MethodJWT, Subject: "u", Scopes: identity.ScopeRead}

	r := httptest.NewRequest("GET", "/v1/x", nil)
	identity.Parser{}.SetHeaders(r.Header, id)
	w := httptest.NewRecorder()
	cfg.handler.ServeHTTP(w, r)
	if w.Code != http.StatusUnauthorized {
		t.Fatalf("unsigned with keys set (and the insecure flag ignored): %d", w.Code)
	}
	signer.SignRequest(r, time.Now())
	w = httptest.NewRecorder()
	cfg.handler.ServeHTTP(w, r)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"verified":true`) {
		t.Fatalf("signed: %d %s", w.Code, w.Body)
	}
}

func TestSetupInsecure(t *testing.T) {
	cfg, err := setup([]string{"-insecure-no-signature", "-prefix", "X-Gw-"}, env(nil), quiet)
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/v1/x", nil)
	identity.Parser{Prefix: "X-Gw-"}.SetHeaders(r.Header, identity.Identity{Method: identity.MethodJWT, Subject: "u"})
	w := httptest.NewRecorder()
	cfg.handler.ServeHTTP(w, r)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"verified":false`) {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
}
