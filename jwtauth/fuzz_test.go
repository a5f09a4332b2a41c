package jwtauth

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"math/big"
	"strings"
	"testing"
	"time"
)

// fuzzNow is fixed so that the seed tokens stay valid.
var fuzzNow = time.Unix(1_900_000_000, 0)

func FuzzVerify(f *testing.F) {
	k := keys()
	v := newVerifier(f, Config{
		Secret:         k.secret,
		PublicKeyFiles: []string{writePublicPEM(f, k.p256.Public())},
		Algorithms:     []string{"HS256", "ES256"},
		Issuer:         "dash",
		MaxLifetime:    time.Hour,
	})
	claims := with(claimsAt(fuzzNow), "iss", "dash")
	for _, tok := range []string{
		mint(f, "HS256", k.secret, "", claims),
		mint(f, "ES256", k.p256, "", claims),
		mint(f, "HS256", k.secret, "", with(claims, "scope", []string{"admin", "x"})),
		mint(f, "HS256", k.other, "", claims),
		rawToken(f, map[string]any{"alg": "none", "typ": "at+jwt"}, claims, nil),
		rawToken(f, map[string]any{"alg": "HS256", "crit": []string{"b64"}}, claims, hmacSigner(k.secret)),
		rawToken(f, map[string]any{"alg": "HS256", "kid": "../../etc/passwd"}, claims, hmacSigner(k.secret)),
		rawToken(f, map[string]any{"alg": "HS256", "typ": "at+jwt"}, []byte(`{"exp":"1","sub":1}`), hmacSigner(k.secret)),
		"a.b.c", "..", "", strings.Repeat(".", 100), "eyJ.eyJ.", "e30.e30.e30",
	} {
		f.Add(tok)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		s, err := v.Verify(tok, fuzzNow)
		if err != nil {
			if s != nil {
				t.Fatal("session with an error")
			}
			if Reason(err) == ReasonInvalid {
				t.Fatalf("error without a sentinel: %v", err)
			}
			if !LooksLikeJWT(tok) && Reason(err) != "jwt_malformed" {
				t.Fatalf("not JWT-shaped but %v", err)
			}
			return
		}
		if !hmacOK(k.secret, tok) && !ecdsaOK(&k.p256.PublicKey, tok) {
			t.Fatalf("accepted a token not signed by the test keys: %q", tok)
		}
		if s.Principal.Subject == "" {
			t.Fatal("accepted without subject")
		}
	})
}

// ecdsaOK is an independent ES256 check.
func ecdsaOK(pub *ecdsa.PublicKey, tok string) bool {
	i := strings.LastIndexByte(tok, '.')
	if i < 0 {
		return false
	}
	sig, err := b64.DecodeString(tok[i+1:])
	if err != nil || len(sig) != 64 {
		return false
	}
	h := sha256.Sum256([]byte(tok[:i]))
	return ecdsa.Verify(pub, h[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
}

func FuzzLooksLikeJWT(f *testing.F) {
	for _, s := range []string{"a.b.c", "a..c", "a.b.c.d", "", ".", "..", "eyJhbGciOiJIUzI1NiJ9.e30.abc", "a.b.c=", "a.b\n.c", "sk_live_abc"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := LooksLikeJWT(s)
		parts := strings.Split(s, ".")
		want := len(parts) == 3
		for _, p := range parts {
			want = want && p != "" && strings.Trim(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == ""
		}
		if got != want {
			t.Fatalf("LooksLikeJWT(%q) = %v, reference says %v", s, got, want)
		}
		// The strict parser never accepts what LooksLikeJWT refuses.
		if _, _, err := scanCompact(s); err == nil && !got {
			t.Fatalf("scanCompact accepted %q, which does not look like a JWT", s)
		}
	})
}
