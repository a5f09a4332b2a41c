package jwtauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/deplo-sh/deplo-auth/grant"
)

// algCase is one algorithm with its signing key, another key of the same
// type, and a config that trusts the first.
type algCase struct {
	alg       string
	key, othr any
	cfg       func(t *testing.T) Config
}

func algCases() []algCase {
	k := keys()
	secret := func(s []byte) func(*testing.T) Config {
		return func(*testing.T) Config { return Config{Secret: s} }
	}
	file := func(pub crypto.PublicKey) func(*testing.T) Config {
		return func(t *testing.T) Config { return Config{PublicKeyFiles: []string{writePublicPEM(t, pub)}} }
	}
	return []algCase{
		{"HS256", k.secret, k.other, secret(k.secret)},
		{"HS384", k.secret, k.other, secret(k.secret)},
		{"HS512", k.secret, k.other, secret(k.secret)},
		{"RS256", k.rsa, k.rsa2, file(k.rsa.Public())},
		{"RS384", k.rsa, k.rsa2, file(k.rsa.Public())},
		{"RS512", k.rsa, k.rsa2, file(k.rsa.Public())},
		{"ES256", k.p256, k.p256b, file(k.p256.Public())},
		{"ES384", k.p384, mustP384(), file(k.p384.Public())},
		{"EdDSA", k.ed, k.ed2, file(k.ed.Public())},
	}
}

func mustP384() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

func TestEveryAlgorithm(t *testing.T) {
	now := time.Now()
	for _, tc := range algCases() {
		t.Run(tc.alg, func(t *testing.T) {
			cfg := tc.cfg(t)
			cfg.Algorithms = []string{tc.alg}
			v := newVerifier(t, cfg)

			s, err := v.Verify(mint(t, tc.alg, tc.key, "", claimsAt(now)), now)
			wantErr(t, err, nil)
			want := grant.Principal{Kind: grant.KindJWT, Subject: "user_42", Workspace: "ws_acme",
				Project: "weekly-report", Scopes: grant.ScopeRead | grant.ScopeDeploy}
			if s.Principal != want {
				t.Errorf("principal = %+v, want %+v", s.Principal, want)
			}
			if s.SessionID != "tok-1" || !s.ExpiresAt.Equal(time.Unix(now.Add(15*time.Minute).Unix(), 0)) {
				t.Errorf("session = %+v", s)
			}

			// Another key of the same type: bad signature.
			_, err = v.Verify(mint(t, tc.alg, tc.othr, "", claimsAt(now)), now)
			wantErr(t, err, ErrSignature)

			// The algorithm is not allowed (for HS*, the same secret
			// with another HS algorithm allowed).
			v2 := newVerifier(t, Config{Secret: keys().secret, Algorithms: []string{otherAlg(tc.alg)}})
			_, err = v2.Verify(mint(t, tc.alg, tc.key, "", claimsAt(now)), now)
			wantErr(t, err, ErrAlgorithm)
		})
	}
}

// otherAlg is an HS algorithm other than alg.
func otherAlg(alg string) string {
	if alg == "HS256" {
		return "HS512"
	}
	return "HS256"
}

func TestClaims(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	k := keys()
	base := claimsAt(now)
	cases := []struct {
		name   string
		claims map[string]any
		cfg    func(*Config)
		want   error
		check  func(t *testing.T, s *Session)
	}{
		{name: "valid", claims: base},
		{name: "missing exp", claims: with(base, "exp", deleteClaim), want: ErrClaims},
		{name: "exp as string", claims: with(base, "exp", fmt.Sprint(now.Add(time.Minute).Unix())), want: ErrClaims},
		{name: "exp null", claims: with(base, "exp", nil), want: ErrClaims},
		{name: "exp bool", claims: with(base, "exp", true), want: ErrClaims},
		{name: "exp negative", claims: with(base, "exp", -5), want: ErrClaims},
		{name: "exp year 10000", claims: with(base, "exp", 253402300800), want: ErrClaims},
		{name: "exp fractional", claims: with(base, "exp", float64(now.Unix())+600.5)},
		{name: "expired", claims: with(base, "exp", now.Add(-time.Minute).Unix()), want: ErrExpired},
		{name: "expired within leeway", claims: with(base, "exp", now.Add(-10*time.Second).Unix())},
		{name: "expired at leeway", claims: with(base, "exp", now.Add(-30*time.Second).Unix()), want: ErrExpired},
		{name: "no leeway", claims: with(base, "exp", now.Add(-1*time.Second).Unix()), cfg: func(c *Config) { c.Leeway = -1 }, want: ErrExpired},
		{name: "custom leeway", claims: with(base, "exp", now.Add(-time.Minute).Unix()), cfg: func(c *Config) { c.Leeway = 2 * time.Minute }},
		{name: "nbf future", claims: with(base, "nbf", now.Add(time.Minute).Unix()), want: ErrNotYetValid},
		{name: "nbf within leeway", claims: with(base, "nbf", now.Add(20*time.Second).Unix())},
		{name: "nbf as string", claims: with(base, "nbf", "0"), want: ErrClaims},
		{name: "iat future", claims: with(base, "iat", now.Add(time.Minute).Unix()), want: ErrIssuedAt},
		{name: "iat within leeway", claims: with(base, "iat", now.Add(20*time.Second).Unix())},
		{name: "iat as string", claims: with(base, "iat", "now"), want: ErrClaims},
		{name: "lifetime ok", claims: base, cfg: func(c *Config) { c.MaxLifetime = 15 * time.Minute }},
		{name: "lifetime over max", claims: with(base, "exp", now.Add(16*time.Minute).Unix()), cfg: func(c *Config) { c.MaxLifetime = 15 * time.Minute }, want: ErrLifetime},
		{name: "missing iat with max lifetime", claims: with(base, "iat", deleteClaim), cfg: func(c *Config) { c.MaxLifetime = 15 * time.Minute }, want: ErrIssuedAt},
		{name: "missing iat without max lifetime", claims: with(base, "iat", deleteClaim)},
		{name: "issuer ok", claims: with(base, "iss", "https://dash.deplo.sh"), cfg: func(c *Config) { c.Issuer = "https://dash.deplo.sh" }},
		{name: "wrong issuer", claims: with(base, "iss", "https://evil.example"), cfg: func(c *Config) { c.Issuer = "https://dash.deplo.sh" }, want: ErrIssuer},
		{name: "issuer case differs", claims: with(base, "iss", "https://DASH.deplo.sh"), cfg: func(c *Config) { c.Issuer = "https://dash.deplo.sh" }, want: ErrIssuer},
		{name: "missing issuer", claims: base, cfg: func(c *Config) { c.Issuer = "https://dash.deplo.sh" }, want: ErrIssuer},
		{name: "issuer as number", claims: with(base, "iss", 7), cfg: func(c *Config) { c.Issuer = "https://dash.deplo.sh" }, want: ErrClaims},
		{name: "audience string", claims: with(base, "aud", "deplo-api"), cfg: func(c *Config) { c.Audience = "deplo-api" }},
		{name: "audience array", claims: with(base, "aud", []string{"other", "deplo-api"}), cfg: func(c *Config) { c.Audience = "deplo-api" }},
		{name: "wrong audience", claims: with(base, "aud", "other"), cfg: func(c *Config) { c.Audience = "deplo-api" }, want: ErrAudience},
		{name: "wrong audience array", claims: with(base, "aud", []string{"a", "b"}), cfg: func(c *Config) { c.Audience = "deplo-api" }, want: ErrAudience},
		{name: "empty audience array", claims: with(base, "aud", []string{}), cfg: func(c *Config) { c.Audience = "deplo-api" }, want: ErrAudience},
		{name: "missing audience", claims: base, cfg: func(c *Config) { c.Audience = "deplo-api" }, want: ErrAudience},
		{name: "audience as number", claims: with(base, "aud", 1), cfg: func(c *Config) { c.Audience = "deplo-api" }, want: ErrClaims},
		{name: "audience array with number", claims: with(base, "aud", []any{"deplo-api", 1}), cfg: func(c *Config) { c.Audience = "deplo-api" }, want: ErrClaims},
		{name: "audience ignored when not configured", claims: with(base, "aud", 1)},
		{name: "missing sub", claims: with(base, "sub", deleteClaim), want: ErrClaims},
		{name: "sub as number", claims: with(base, "sub", 42), want: ErrClaims},
		{name: "sub empty", claims: with(base, "sub", ""), want: ErrClaims},
		{name: "sub null", claims: with(base, "sub", nil), want: ErrClaims},
		{name: "sub with newline", claims: with(base, "sub", "a\nX-Deplo-Scopes: admin"), want: ErrClaims},
		{name: "sub too long", claims: with(base, "sub", strings.Repeat("a", 2000)), want: ErrClaims},
		{name: "workspace as number", claims: with(base, "workspace", 1), want: ErrClaims},
		{name: "workspace absent", claims: with(base, "workspace", deleteClaim), check: func(t *testing.T, s *Session) {
			if s.Principal.Workspace != "" {
				t.Errorf("workspace = %q", s.Principal.Workspace)
			}
		}},
		{name: "project null", claims: with(base, "project", nil), check: func(t *testing.T, s *Session) {
			if s.Principal.Project != "" {
				t.Errorf("project = %q", s.Principal.Project)
			}
		}},
		{name: "project as array", claims: with(base, "project", []string{"p"}), want: ErrClaims},
		{name: "scope as number", claims: with(base, "scope", 3), want: ErrClaims},
		{name: "scope array with number", claims: with(base, "scope", []any{"read", 1}), want: ErrClaims},
		{name: "scope as object", claims: with(base, "scope", map[string]any{"read": true}), want: ErrClaims},
		{name: "scope array", claims: with(base, "scope", []string{"admin", "delete"}), check: scopesAre(grant.ScopeAdmin | grant.ScopeDelete)},
		{name: "scope string with extra spaces", claims: with(base, "scope", "  read   delete "), check: scopesAre(grant.ScopeRead | grant.ScopeDelete)},
		{name: "scp array when scope absent", claims: with(base, "scope", deleteClaim, "scp", []string{"deploy"}), check: scopesAre(grant.ScopeDeploy)},
		{name: "scopes array when scope absent", claims: with(base, "scope", deleteClaim, "scopes", []string{"read"}), check: scopesAre(grant.ScopeRead)},
		{name: "scope wins over scp", claims: with(base, "scope", "read", "scp", []string{"admin"}), check: scopesAre(grant.ScopeRead)},
		{name: "no scopes", claims: with(base, "scope", deleteClaim), check: scopesAre(0)},
		{name: "unknown scopes ignored and reported", claims: with(base, "scope", "read superuser Admin"), check: func(t *testing.T, s *Session) {
			scopesAre(grant.ScopeRead)(t, s)
			if !reflect.DeepEqual(s.UnknownScopes, []string{"superuser", "Admin"}) {
				t.Errorf("unknown = %q", s.UnknownScopes)
			}
		}},
		{name: "custom claim names", claims: with(base, "uid", "u9", "ws", "ws_x", "prj", "p1", "perms", "admin"),
			cfg: func(c *Config) {
				c.Claims = ClaimNames{Subject: "uid", Workspace: "ws", Project: "prj", Scopes: "perms"}
			},
			check: func(t *testing.T, s *Session) {
				p := s.Principal
				if p.Subject != "u9" || p.Workspace != "ws_x" || p.Project != "p1" || p.Scopes != grant.ScopeAdmin {
					t.Errorf("principal = %+v", p)
				}
			}},
		{name: "sid preferred as session id", claims: with(base, "sid", "sess-9"), check: func(t *testing.T, s *Session) {
			if s.SessionID != "sess-9" {
				t.Errorf("session id = %q", s.SessionID)
			}
		}},
		{name: "jti as number", claims: with(base, "jti", 5), want: ErrClaims},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Secret: k.secret, Algorithms: []string{"HS256"}}
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			v := newVerifier(t, cfg)
			s, err := v.Verify(mint(t, "HS256", k.secret, "", tc.claims), now)
			wantErr(t, err, tc.want)
			if err == nil && tc.check != nil {
				tc.check(t, s)
			}
		})
	}
}

func scopesAre(want grant.ScopeSet) func(*testing.T, *Session) {
	return func(t *testing.T, s *Session) {
		t.Helper()
		if s.Principal.Scopes != want {
			t.Errorf("scopes = %v, want %v", s.Principal.Scopes, want)
		}
	}
}

func TestTypeHeader(t *testing.T) {
	now := time.Now()
	k := keys()
	payload := claimsAt(now)
	cases := []struct {
		name string
		hdr  map[string]any
		cfg  func(*Config)
		want error
	}{
		{"at+jwt", map[string]any{"alg": "HS256", "typ": "at+jwt"}, nil, nil},
		{"AT+JWT", map[string]any{"alg": "HS256", "typ": "AT+JWT"}, nil, nil},
		{"application/at+jwt", map[string]any{"alg": "HS256", "typ": "application/at+jwt"}, nil, nil},
		{"refresh token", map[string]any{"alg": "HS256", "typ": "refresh+jwt"}, nil, ErrType},
		{"JWT", map[string]any{"alg": "HS256", "typ": "JWT"}, nil, ErrType},
		{"missing typ", map[string]any{"alg": "HS256"}, nil, ErrType},
		{"empty typ", map[string]any{"alg": "HS256", "typ": ""}, nil, ErrType},
		{"typ as number", map[string]any{"alg": "HS256", "typ": 1}, nil, ErrMalformed},
		{"typ off, missing", map[string]any{"alg": "HS256"}, func(c *Config) { c.TypeOff = true }, nil},
		{"typ off, JWT", map[string]any{"alg": "HS256", "typ": "JWT"}, func(c *Config) { c.TypeOff = true }, nil},
		{"custom types", map[string]any{"alg": "HS256", "typ": "JWT"}, func(c *Config) { c.Types = []string{"jwt"} }, nil},
		{"custom types refuse default", map[string]any{"alg": "HS256", "typ": "at+jwt"}, func(c *Config) { c.Types = []string{"jwt"} }, ErrType},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Secret: k.secret, Algorithms: []string{"HS256"}}
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			v := newVerifier(t, cfg)
			_, err := v.Verify(rawToken(t, tc.hdr, payload, hmacSigner(k.secret)), now)
			wantErr(t, err, tc.want)
		})
	}
}

func TestKeySelection(t *testing.T) {
	now := time.Now()
	k := keys()
	rsaFile, rsa2File := writePublicPEM(t, k.rsa.Public()), writePublicPEM(t, k.rsa2.Public())
	ecFile := writePublicPEM(t, k.p256.Public())
	tp := func(pub crypto.PublicKey) string {
		s, err := Thumbprint(pub)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	cases := []struct {
		name  string
		cfg   Config
		alg   string
		key   any
		kid   string
		want  error
		keyID string
	}{
		{name: "one RSA key, no kid", cfg: Config{PublicKeyFiles: []string{rsaFile}}, alg: "RS256", key: k.rsa, keyID: tp(k.rsa.Public())},
		{name: "RSA and EC keys, no kid, RSA token", cfg: Config{PublicKeyFiles: []string{rsaFile, ecFile}}, alg: "RS256", key: k.rsa},
		{name: "RSA and EC keys, no kid, EC token", cfg: Config{PublicKeyFiles: []string{rsaFile, ecFile}}, alg: "ES256", key: k.p256},
		{name: "two RSA keys, no kid: ambiguous", cfg: Config{PublicKeyFiles: []string{rsaFile, rsa2File}}, alg: "RS256", key: k.rsa, want: ErrUnknownKey},
		{name: "two RSA keys, kid = thumbprint", cfg: Config{PublicKeyFiles: []string{rsaFile, rsa2File}}, alg: "RS256", key: k.rsa2, kid: tp(k.rsa2.Public()), keyID: tp(k.rsa2.Public())},
		{name: "kid of the other key", cfg: Config{PublicKeyFiles: []string{rsaFile, rsa2File}}, alg: "RS256", key: k.rsa2, kid: tp(k.rsa.Public()), want: ErrSignature},
		{name: "unknown kid, static keys only", cfg: Config{PublicKeyFiles: []string{rsaFile}}, alg: "RS256", key: k.rsa, kid: "k1", want: ErrUnknownKey},
		{name: "secret has no kid", cfg: Config{Secret: k.secret}, alg: "HS256", key: k.secret, kid: "k1", want: ErrUnknownKey},
		{name: "same file twice is one key", cfg: Config{PublicKeyFiles: []string{rsaFile, rsaFile}}, alg: "RS256", key: k.rsa},
		{name: "EC key, thumbprint kid, RSA alg", cfg: Config{PublicKeyFiles: []string{rsaFile, ecFile}}, alg: "RS256", key: k.rsa, kid: tp(k.p256.Public()), want: ErrUnknownKey},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Algorithms = []string{"HS256", "RS256", "ES256"}
			v := newVerifier(t, tc.cfg)
			s, err := v.Verify(mint(t, tc.alg, tc.key, tc.kid, claimsAt(now)), now)
			wantErr(t, err, tc.want)
			if err == nil && tc.keyID != "" && s.KeyID != tc.keyID {
				t.Errorf("KeyID = %q, want %q", s.KeyID, tc.keyID)
			}
		})
	}
}

func TestThumbprintRFC7638(t *testing.T) {
	// RFC 7638 §3.1.
	n, _ := base64.RawURLEncoding.DecodeString("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")
	pub := &rsa.PublicKey{N: newInt(n), E: 65537}
	got, err := Thumbprint(pub)
	if err != nil || got != "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs" {
		t.Fatalf("Thumbprint = %q, %v", got, err)
	}
}

func TestConfigErrors(t *testing.T) {
	k := keys()
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaPKCS8, _ := x509.MarshalPKCS8PrivateKey(k.rsa)
	pemBytes, derBytes := pemOf(t, k.rsa.Public()), pkixDER(t, k.rsa.Public())
	jwkBytes := jwksJSON(jwkOf(k.p256.Public(), "", "", ""))
	jwkBytes = jwkBytes[len(`{"keys":[`) : len(jwkBytes)-2] // the single JWK
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no algorithms", Config{Secret: k.secret}, "allowlist is required"},
		{"none", Config{Secret: k.secret, Algorithms: []string{"HS256", "none"}}, "never accepted"},
		{"None", Config{Secret: k.secret, Algorithms: []string{"None"}}, "never accepted"},
		{"unknown alg", Config{Secret: k.secret, Algorithms: []string{"PS256"}}, "unsupported algorithm"},
		{"lowercase alg", Config{Secret: k.secret, Algorithms: []string{"hs256"}}, "unsupported algorithm"},
		{"no key", Config{Algorithms: []string{"HS256"}}, "no key configured"},
		{"short secret", Config{Secret: []byte("0123456789abcdef0123456789abcde"), Algorithms: []string{"HS256"}}, "at least 32"},
		{"secret is PEM", Config{Secret: pemBytes, Algorithms: []string{"HS256"}}, "PEM"},
		{"secret is DER", Config{Secret: derBytes, Algorithms: []string{"HS256"}}, "DER"},
		{"secret is JWK", Config{Secret: jwkBytes, Algorithms: []string{"HS256"}}, "JWK"},
		{"secret is JWKS", Config{Secret: jwksJSON(jwkOf(k.p256.Public(), "", "", "")), Algorithms: []string{"HS256"}}, "JWK set"},
		{"secret is base64 DER", Config{Secret: []byte(base64.StdEncoding.EncodeToString(derBytes)), Algorithms: []string{"HS256"}}, "base64"},
		{"secret is certificate DER", Config{Secret: selfSignedDER(t), Algorithms: []string{"HS256"}}, "DER"},
		{"secret without HS alg", Config{Secret: k.secret, Algorithms: []string{"RS256"}}, "no HS256"},
		{"RSA 1024", Config{PublicKeyFiles: []string{writePublicPEM(t, weak.Public())}, Algorithms: []string{"RS256"}}, "2048"},
		{"P-521", Config{PublicKeyFiles: []string{writePublicPEM(t, p521.Public())}, Algorithms: []string{"ES256"}}, "curve"},
		{"private key file", Config{PublicKeyFiles: []string{writePEM(t, "PRIVATE KEY", rsaPKCS8)}, Algorithms: []string{"RS256"}}, "private key"},
		{"key file, alg not allowed", Config{PublicKeyFiles: []string{writePublicPEM(t, k.p256.Public())}, Algorithms: []string{"RS256"}}, "none of ES256"},
		{"P-384 file with ES256 only", Config{PublicKeyFiles: []string{writePublicPEM(t, k.p384.Public())}, Algorithms: []string{"ES256"}}, "none of ES384"},
		{"missing file", Config{PublicKeyFiles: []string{filepath.Join(t.TempDir(), "nope.pem")}, Algorithms: []string{"RS256"}}, "no such file"},
		{"not PEM", Config{PublicKeyFiles: []string{writeFile(t, "hello")}, Algorithms: []string{"RS256"}}, "no PUBLIC KEY"},
		{"jwks http to a remote host", Config{JWKSURL: "http://keys.example.com/jwks.json", Algorithms: []string{"RS256"}}, "loopback"},
		{"jwks ftp", Config{JWKSURL: "ftp://keys.example.com/jwks.json", Algorithms: []string{"RS256"}}, "https"},
		{"leeway too large", Config{Secret: k.secret, Algorithms: []string{"HS256"}, Leeway: time.Hour}, "maximum"},
		{"negative max lifetime", Config{Secret: k.secret, Algorithms: []string{"HS256"}, MaxLifetime: -1}, "negative"},
		{"jwks refresh too short", Config{JWKSURL: "https://keys.example.com/", JWKSRefresh: time.Millisecond, Algorithms: []string{"RS256"}}, "at least"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := New(context.Background(), tc.cfg)
			if err == nil {
				v.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
			if s := string(tc.cfg.Secret); s != "" && strings.Contains(err.Error(), s) {
				t.Fatal("error contains the secret")
			}
		})
	}
}

func writeFile(t *testing.T, content string) string {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestPublicKeyFileForms(t *testing.T) {
	now := time.Now()
	k := keys()
	certDER := selfSignedDER(t)
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		t.Fatal(err)
	}
	if !cert.PublicKey.(*ecdsa.PublicKey).Equal(k.p256b.Public()) {
		t.Fatal("certificate key")
	}
	cases := []struct {
		name string
		path string
		alg  string
		key  any
	}{
		{"PKIX RSA", writePublicPEM(t, k.rsa.Public()), "RS256", k.rsa},
		{"PKCS1 RSA", writePEM(t, "RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&k.rsa.PublicKey)), "RS256", k.rsa},
		{"PKIX Ed25519", writePublicPEM(t, k.ed.Public()), "EdDSA", k.ed},
		{"certificate", writePEM(t, "CERTIFICATE", certDER), "ES256", k.p256b},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := newVerifier(t, Config{PublicKeyFiles: []string{tc.path}, Algorithms: []string{tc.alg}})
			_, err := v.Verify(mint(t, tc.alg, tc.key, "", claimsAt(now)), now)
			wantErr(t, err, nil)
		})
	}
}

func TestLooksLikeJWT(t *testing.T) {
	cases := map[string]bool{
		"a.b.c":                              true,
		"eyJhbGciOiJIUzI1NiJ9.e30.sig-_":     true,
		"":                                   false,
		"a.b":                                false,
		"a.b.c.d":                            false,
		".b.c":                               false,
		"a..c":                               false,
		"a.b.":                               false,
		"a.b.c=":                             false,
		"a.b+.c":                             false,
		"a.b/.c":                             false,
		"a.b .c":                             false,
		"a.b\n.c":                            false,
		"sk_live_0123456789abcdefghijABCDEF": false,
		"..":                                 false,
		"a.b.c\x00":                          false,
		"é.b.c":                              false,
	}
	for s, want := range cases {
		if got := LooksLikeJWT(s); got != want {
			t.Errorf("LooksLikeJWT(%q) = %v, want %v", s, got, want)
		}
	}
	tok := mint(t, "HS256", keys().secret, "", claimsAt(time.Now()))
	if !LooksLikeJWT(tok) {
		t.Error("a minted token does not look like a JWT")
	}
	if n := testing.AllocsPerRun(100, func() { LooksLikeJWT(tok) }); n != 0 {
		t.Errorf("LooksLikeJWT allocates %v times", n)
	}
}

func TestReason(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range reasons {
		got := Reason(r.err)
		if got != r.reason || seen[got] {
			t.Errorf("Reason(%v) = %q", r.err, got)
		}
		seen[got] = true
		if Reason(fmt.Errorf("context: %w", r.err)) != r.reason {
			t.Errorf("Reason does not unwrap %v", r.err)
		}
		if !strings.HasPrefix(got, "jwt_") {
			t.Errorf("reason %q lacks the jwt_ prefix", got)
		}
	}
	if Reason(nil) != "" || Reason(errors.New("other")) != ReasonInvalid {
		t.Error("Reason of nil or a foreign error")
	}
	if got := Reasons(); len(got) != len(reasons)+1 || got[len(got)-1] != ReasonInvalid {
		t.Errorf("Reasons() = %v", got)
	}
	// Every refusal variable maps to its sentinel's reason.
	for _, e := range []*verifyError{errEmpty, errAlgNone, errKIDTooLong, errBadSignature, errExpired, errTyp, errSessionRevoked} {
		if Reason(e) != Reason(e.sentinel) || !errors.Is(e, e.sentinel) {
			t.Errorf("%v does not map to its sentinel", e)
		}
	}
}

func TestIdentityClaimsWithSurroundingSpacesRefused(t *testing.T) {
	for _, claim := range []string{"sub", "workspace", "project"} {
		for _, v := range []string{" alice", "alice ", " "} {
			if headerSafe(v) {
				t.Errorf("%s %q accepted: HTTP would trim it in transit", claim, v)
			}
		}
	}
	if !headerSafe("alice smith") {
		t.Error("an inner space refused")
	}
}
