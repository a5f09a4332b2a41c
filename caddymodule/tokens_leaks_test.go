package caddymodule

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/deplo-sh/deplo-auth/apikey"
	"github.com/deplo-sh/deplo-auth/keystore"
	"github.com/deplo-sh/deplo-auth/tokenapi"
)

// githubKeys serves a key document whose keys can be rotated, counting
// fetches.
type githubKeys struct {
	mu      sync.Mutex
	id      string
	key     *ecdsa.PrivateKey
	fetches atomic.Int32
}

func (g *githubKeys) rotate(t *testing.T, id string) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	g.id, g.key = id, k
	g.mu.Unlock()
}

func (g *githubKeys) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	g.fetches.Add(1)
	g.mu.Lock()
	defer g.mu.Unlock()
	der, _ := x509.MarshalPKIXPublicKey(&g.key.PublicKey)
	b, _ := json.Marshal(map[string]any{"public_keys": []map[string]any{{"key_identifier": g.id,
		"key": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), "is_current": true}}})
	w.Write(b)
}

func (g *githubKeys) sign(body []byte) (string, string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	d := sha256.Sum256(body)
	sig, _ := ecdsa.SignASN1(rand.Reader, g.key, d[:])
	return g.id, base64.StdEncoding.EncodeToString(sig)
}

// The leaks endpoint through ServeHTTP, undecided as behind a public route:
// a bad or missing signature is 401 and revokes nothing; a signed report
// revokes at once and labels; a rotated GitHub key is fetched again.
func TestTokensHandlerLeaks(t *testing.T) {
	gh := &githubKeys{}
	gh.rotate(t, "k1")
	keysSrv := httptest.NewServer(gh)
	defer keysSrv.Close()
	h := &TokensHandler{Base: "/v1/workspaces/{workspace}/tokens", logger: zap.NewNop(),
		missingLog: &logLimiter{interval: time.Minute}, leakLog: &logLimiter{interval: time.Second},
		Leaks: &LeaksConfig{Path: "/v1/token-leaks/github", KeysURL: keysSrv.URL}}
	var err error
	if h.base, err = tokenapi.ParseBase(h.Base); err != nil {
		t.Fatal(err)
	}
	if err := h.Leaks.provision(zap.NewNop(), h.base); err != nil {
		t.Fatal(err)
	}
	admin := &keystore.FileTokenManager{Path: filepath.Join(t.TempDir(), "keys.json")}
	raw, _ := apikey.Generate()
	if err := admin.CreateToken(context.Background(), keystore.TokenEntry{ID: "tok_leaky", Name: "ci", Hash: apikey.Sum(raw).String(),
		Workspace: "ws_acme", Scopes: []string{"deploy"}}); err != nil {
		t.Fatal(err)
	}
	body := []byte(`[{"token":"` + raw + `","type":"deplo_api_token","url":"https://github.com/o/r/blob/main/ci.yml","source":"content"}]`)
	send := func(method string, body []byte, id, sig string, store bool) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, "/v1/token-leaks/github", strings.NewReader(string(body)))
		vars := map[string]any{}
		if store {
			vars[publicStoreVar] = &publicStore{admin: admin}
		}
		r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, vars))
		if id != "" {
			r.Header.Set("Github-Public-Key-Identifier", id)
		}
		if sig != "" {
			r.Header.Set("Github-Public-Key-Signature", sig)
		}
		w := httptest.NewRecorder()
		next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { t.Error("next called"); return nil })
		if err := h.ServeHTTP(w, r, next); err != nil {
			t.Fatal(err)
		}
		return w
	}
	revoked := func() bool {
		rec, _ := admin.Token(context.Background(), "tok_leaky")
		return rec.RevokedAt != nil
	}
	id, sig := gh.sign(body)
	_, otherSig := (&githubKeys{}).withKey(t).sign(body)
	for name, w := range map[string]*httptest.ResponseRecorder{
		"no signature":         send("POST", body, "", "", true),
		"no identifier":        send("POST", body, "", sig, true),
		"another key's":        send("POST", body, id, otherSig, true),
		"body altered":         send("POST", append(body, ' '), id, sig, true),
		"unknown identifier":   send("POST", body, "k9", sig, true),
		"signature as garbage": send("POST", body, id, "AAAA", true),
	} {
		if w.Code != 401 || revoked() {
			t.Fatalf("%s: %d %s, revoked %v", name, w.Code, w.Body, revoked())
		}
	}
	if w := send("GET", nil, id, sig, true); w.Code != 405 || w.Header().Get("Allow") != "POST" {
		t.Errorf("GET: %d %v", w.Code, w.Header())
	}
	if w := send("POST", body, id, sig, false); w.Code != 500 || revoked() {
		t.Errorf("without a deplo_auth before it: %d", w.Code)
	}
	w := send("POST", body, id, sig, true)
	var labels []tokenapi.LeakLabel
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &labels) != nil || len(labels) != 1 ||
		labels[0].Label != "true_positive" || labels[0].TokenRaw != raw || !revoked() {
		t.Fatalf("signed report: %d %s, revoked %v", w.Code, w.Body, revoked())
	}
	if rec, _ := admin.Token(context.Background(), "tok_leaky"); rec.RevokedReason != "leaked" {
		t.Errorf("revoked_reason %q", rec.RevokedReason)
	}
	// GitHub rotates its key: a report under the new identifier makes the
	// endpoint fetch the document again (the 30 s floor is past here).
	gh.rotate(t, "k2")
	h.Leaks.keys.mu.Lock()
	h.Leaks.keys.triedAt = time.Time{}
	h.Leaks.keys.mu.Unlock()
	before := gh.fetches.Load()
	id2, sig2 := gh.sign([]byte(`[]`))
	if w := send("POST", []byte(`[]`), id2, sig2, true); w.Code != 200 || gh.fetches.Load() != before+1 {
		t.Errorf("after GitHub's rotation: %d %s, %d fetches", w.Code, w.Body, gh.fetches.Load()-before)
	}
	// An unknown identifier within 30 s of the last fetch does not fetch.
	before = gh.fetches.Load()
	if w := send("POST", []byte(`[]`), "k3", sig2, true); w.Code != 401 || gh.fetches.Load() != before {
		t.Errorf("unknown identifier again: %d, %d fetches", w.Code, gh.fetches.Load()-before)
	}
}

func (g *githubKeys) withKey(t *testing.T) *githubKeys {
	g.rotate(t, "k1")
	return g
}

func TestUnmarshalTokensLeaks(t *testing.T) {
	for input, want := range map[string]string{
		"deplo_auth_tokens {\n base /v1/{workspace}/tokens\n leaks /v1/leaks {\n  keys_url https://api.github.com/meta/public_keys/secret_scanning\n }\n}": "",
		"deplo_auth_tokens {\n base /v1/{workspace}/tokens\n leaks /v1/leaks {\n  keys_file gh.json\n }\n}":                                                "",
		"deplo_auth_tokens {\n base /v1/{workspace}/tokens\n leaks /v1/leaks\n}":                                                                           "exactly one",
		"deplo_auth_tokens {\n base /v1/{workspace}/tokens\n leaks /v1/leaks {\n  keys_file a\n  keys_url https://x\n }\n}":                                "exactly one",
		"deplo_auth_tokens {\n base /v1/{workspace}/tokens\n leaks {\n  keys_file a\n }\n}":                                                                "wrong argument count",
		"deplo_auth_tokens {\n base /v1/{workspace}/tokens\n leaks /v1/leaks {\n  keys a\n }\n}":                                                           "unknown subdirective",
	} {
		var h TokensHandler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("%q: %v, want %q", input, err, want)
		}
	}
	b, _ := tokenapi.ParseBase("/v1/workspaces/{workspace}/tokens")
	if err := (&LeaksConfig{Path: "/v1/workspaces/x/tokens/leaks", KeysURL: "https://x"}).provision(zap.NewNop(), b); err == nil {
		t.Error("a leaks path under base was accepted")
	}
}
