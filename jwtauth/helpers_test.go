package jwtauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// testKeys are generated once per test binary (RSA generation is slow).
type testKeys struct {
	rsa, rsa2     *rsa.PrivateKey
	p256, p256b   *ecdsa.PrivateKey
	p384          *ecdsa.PrivateKey
	ed, ed2       ed25519.PrivateKey
	secret, other []byte
}

var keys = sync.OnceValue(func() *testKeys {
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	k := &testKeys{}
	var err error
	k.rsa, err = rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	k.rsa2, err = rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	k.p256, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	k.p256b, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	k.p384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	must(err)
	_, k.ed, err = ed25519.GenerateKey(rand.Reader)
	must(err)
	_, k.ed2, err = ed25519.GenerateKey(rand.Reader)
	must(err)
	k.secret = []byte("test-secret-0123456789abcdefghijklmnopqrstuvwxyz")
	k.other = []byte("another-secret-0123456789abcdefghijklmnopqrstuv")
	return k
})

func pubOf(signer crypto.Signer) crypto.PublicKey { return signer.Public() }

// writePEM writes a public key (PKIX) or any DER as a PEM file.
func writePEM(t testing.TB, blockType string, der []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func pkixDER(t testing.TB, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func writePublicPEM(t testing.TB, pub crypto.PublicKey) string {
	return writePEM(t, "PUBLIC KEY", pkixDER(t, pub))
}

// jwkOf is the public JWK of pub, with optional kid, alg and use.
func jwkOf(pub crypto.PublicKey, kid, alg, use string) map[string]any {
	enc := base64.RawURLEncoding.EncodeToString
	m := map[string]any{}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		m["kty"], m["n"], m["e"] = "RSA", enc(k.N.Bytes()), enc(big.NewInt(int64(k.E)).Bytes())
	case *ecdsa.PublicKey:
		raw, err := k.Bytes()
		if err != nil {
			panic(err)
		}
		size := (len(raw) - 1) / 2
		m["kty"], m["crv"], m["x"], m["y"] = "EC", k.Curve.Params().Name, enc(raw[1:1+size]), enc(raw[1+size:])
	case ed25519.PublicKey:
		m["kty"], m["crv"], m["x"] = "OKP", "Ed25519", enc(k)
	default:
		panic("jwkOf: unsupported key")
	}
	for name, v := range map[string]string{"kid": kid, "alg": alg, "use": use} {
		if v != "" {
			m[name] = v
		}
	}
	return m
}

func jwksJSON(keys ...map[string]any) []byte {
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		panic(err)
	}
	return b
}

// claimsAt are valid claims for a token issued at now.
func claimsAt(now time.Time) map[string]any {
	return map[string]any{
		"sub":       "user_42",
		"workspace": "ws_acme",
		"project":   "weekly-report",
		"scope":     "read deploy",
		"iat":       now.Unix(),
		"exp":       now.Add(15 * time.Minute).Unix(),
		"jti":       "tok-1",
	}
}

func with(m map[string]any, kv ...any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		name := kv[i].(string)
		if kv[i+1] == deleteClaim {
			delete(out, name)
		} else {
			out[name] = kv[i+1]
		}
	}
	return out
}

type deleteMarker struct{}

var deleteClaim = deleteMarker{}

func mint(t testing.TB, alg string, key any, kid string, claims map[string]any) string {
	t.Helper()
	tok, err := Mint(alg, key, kid, claims)
	if err != nil {
		t.Fatalf("Mint(%s): %v", alg, err)
	}
	return tok
}

var b64e = base64.RawURLEncoding.EncodeToString

// rawToken builds a token from any header and payload (marshalled unless
// already []byte), signed by sign over the signing input (nil: empty
// signature).
func rawToken(t testing.TB, header, payload any, sign func(input string) []byte) string {
	t.Helper()
	enc := func(v any) string {
		if b, ok := v.([]byte); ok {
			return b64e(b)
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b64e(b)
	}
	input := enc(header) + "." + enc(payload)
	var sig []byte
	if sign != nil {
		sig = sign(input)
	}
	return input + "." + b64e(sig)
}

func hmacSigner(key []byte) func(string) []byte {
	return func(input string) []byte {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(input))
		return m.Sum(nil)
	}
}

// methodSigner signs with golang-jwt's implementation of alg.
func methodSigner(t testing.TB, alg string, key any) func(string) []byte {
	return func(input string) []byte {
		a, ok := parseAlg(alg)
		if !ok {
			t.Fatalf("unknown alg %s", alg)
		}
		sig, err := algMethods[a].Sign(input, key)
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
}

// newVerifier is New with a small cache, closed at the end of the test.
func newVerifier(t testing.TB, cfg Config) *Verifier {
	t.Helper()
	if cfg.CacheMaxEntries == 0 {
		cfg.CacheMaxEntries = 1000
	}
	v, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(v.Close)
	return v
}

// waitCache makes buffered cache writes visible (ristretto applies them
// asynchronously).
func (v *Verifier) waitCache() {
	if v.cache != nil {
		v.cache.Wait()
	}
}

func wantErr(t testing.TB, err, want error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("got error %v, want success", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("got success, want %v", want)
	}
	if !errorsIs(err, want) {
		t.Fatalf("got %v (reason %s), want %v", err, Reason(err), want)
	}
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }

func newInt(b []byte) *big.Int { return new(big.Int).SetBytes(b) }

func pemOf(t testing.TB, pub crypto.PublicKey) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkixDER(t, pub)})
}

// selfSignedDER is a certificate for keys().p256b.
func selfSignedDER(t testing.TB) []byte {
	t.Helper()
	k := keys().p256b
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "dashboard signing"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}
