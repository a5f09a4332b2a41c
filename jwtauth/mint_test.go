package jwtauth

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestMintAndLoadPrivateKey(t *testing.T) {
	now := time.Now()
	k := keys()
	pkcs8 := func(key any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	sec1, err := x509.MarshalECPrivateKey(k.p384)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, alg, blockType string
		der                  []byte
		pub                  any
	}{
		{"PKCS8 RSA", "RS512", "PRIVATE KEY", pkcs8(k.rsa), k.rsa.Public()},
		{"PKCS1 RSA", "RS256", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k.rsa), k.rsa.Public()},
		{"PKCS8 EC", "ES256", "PRIVATE KEY", pkcs8(k.p256), k.p256.Public()},
		{"SEC1 EC P-384", "ES384", "EC PRIVATE KEY", sec1, k.p384.Public()},
		{"PKCS8 Ed25519", "EdDSA", "PRIVATE KEY", pkcs8(k.ed), k.ed.Public()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			signer, err := LoadPrivateKeyPEM(writePEM(t, tc.blockType, tc.der))
			if err != nil {
				t.Fatal(err)
			}
			tok, err := Mint(tc.alg, signer, "dev-1", claimsAt(now))
			if err != nil {
				t.Fatal(err)
			}
			hdr, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
			var h map[string]string
			if err := json.Unmarshal(hdr, &h); err != nil || h["typ"] != "at+jwt" || h["kid"] != "dev-1" || h["alg"] != tc.alg {
				t.Fatalf("header %s", hdr)
			}
			srv := newJWKSServer(t, jwkOf(tc.pub, "dev-1", "", "sig"))
			v := newVerifier(t, Config{JWKSURL: srv.URL, Algorithms: []string{tc.alg}})
			_, err = v.Verify(tok, now)
			wantErr(t, err, nil)
		})
	}
	// HMAC, without kid.
	tok, err := Mint("HS384", k.secret, "", claimsAt(now))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(tok, b64e([]byte(`"kid"`))) {
		t.Error("kid present")
	}
	v := newVerifier(t, Config{Secret: k.secret, Algorithms: []string{"HS384"}})
	_, err = v.Verify(tok, now)
	wantErr(t, err, nil)
}

func TestMintRefusals(t *testing.T) {
	k := keys()
	cases := []struct {
		name, alg string
		key       any
	}{
		{"none", "none", k.secret},
		{"None", "None", k.secret},
		{"unknown", "PS256", k.rsa},
		{"short secret", "HS256", []byte("short")},
		{"RSA key for HS256", "HS256", k.rsa},
		{"secret for RS256", "RS256", k.secret},
		{"P-384 for ES256", "ES256", k.p384},
		{"P-256 for ES384", "ES384", k.p256},
		{"Ed25519 for ES256", "ES256", k.ed},
		{"EC for EdDSA", "EdDSA", k.p256},
		{"public key", "RS256", k.rsa.Public()},
		{"string secret", "HS256", string(k.secret)},
		{"nil", "HS256", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tok, err := Mint(tc.alg, tc.key, "", claimsAt(time.Now())); err == nil {
				t.Fatalf("minted %q", tok)
			} else if strings.Contains(err.Error(), string(k.secret)) {
				t.Fatal("error contains the secret")
			}
		})
	}
}

func TestLoadPrivateKeyPEMRefusals(t *testing.T) {
	k := keys()
	for name, path := range map[string]string{
		"public key": writePublicPEM(t, k.rsa.Public()),
		"encrypted":  writePEM(t, "ENCRYPTED PRIVATE KEY", []byte{1, 2, 3}),
		"garbage":    writePEM(t, "PRIVATE KEY", []byte("secret-garbage-bytes")),
		"not PEM":    writeFile(t, "hello"),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := LoadPrivateKeyPEM(path); err == nil {
				t.Fatal("loaded")
			} else if strings.Contains(err.Error(), "secret-garbage") {
				t.Fatal("error contains key bytes")
			}
		})
	}
}
