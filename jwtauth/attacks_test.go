package jwtauth

import (
	"crypto"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestAlgNone(t *testing.T) {
	now := time.Now()
	k := keys()
	payload := claimsAt(now)
	configs := map[string]Config{
		"secret":   {Secret: k.secret, Algorithms: []string{"HS256"}},
		"rsa file": {PublicKeyFiles: []string{writePublicPEM(t, k.rsa.Public())}, Algorithms: []string{"RS256", "HS256"}, Secret: k.secret},
	}
	for cname, cfg := range configs {
		v := newVerifier(t, cfg)
		for _, alg := range []string{"none", "None", "NONE", "nOnE", ""} {
			for _, sig := range []string{"", "AAAA", b64e(hmacSigner(k.secret)("x"))} {
				hdr := map[string]any{"alg": alg, "typ": "at+jwt"}
				tok := rawToken(t, hdr, payload, func(string) []byte { return nil }) + sig
				_, err := v.Verify(tok, now)
				want := ErrAlgorithm
				if sig == "" {
					want = ErrMalformed // the empty third segment is refused first
				}
				t.Run(cname+"/"+alg+"/sig="+sig, func(t *testing.T) { wantErr(t, err, want) })
			}
		}
		// No alg member at all, and alg of the wrong type.
		for name, hdr := range map[string]map[string]any{
			"absent": {"typ": "at+jwt"},
			"number": {"alg": 0, "typ": "at+jwt"},
			"array":  {"alg": []string{"HS256"}, "typ": "at+jwt"},
		} {
			_, err := v.Verify(rawToken(t, hdr, payload, hmacSigner(k.secret)), now)
			if err == nil || !(errors.Is(err, ErrAlgorithm) || errors.Is(err, ErrMalformed)) {
				t.Errorf("%s/alg %s: %v", cname, name, err)
			}
		}
	}
}

// TestKeyConfusion: HS256 tokens whose HMAC key is the bytes of the
// configured public key (PEM, DER, JWK) are refused even with HS256 in the
// allowlist.
func TestKeyConfusion(t *testing.T) {
	now := time.Now()
	k := keys()
	for _, pk := range []struct {
		name string
		pub  crypto.PublicKey
		alg  string
	}{{"RSA", k.rsa.Public(), "RS256"}, {"EC", k.p256.Public(), "ES256"}, {"Ed25519", k.ed.Public(), "EdDSA"}} {
		jwk, _ := json.Marshal(jwkOf(pk.pub, "", "", ""))
		tp, _ := Thumbprint(pk.pub)
		forms := map[string][]byte{
			"PEM":            pemOf(t, pk.pub),
			"PEM trimmed":    []byte(strings.TrimSpace(string(pemOf(t, pk.pub)))),
			"DER":            pkixDER(t, pk.pub),
			"JWK":            jwk,
			"JWKS":           jwksJSON(jwkOf(pk.pub, "", "", "")),
			"JWK thumbprint": []byte(tp),
		}
		file := writePublicPEM(t, pk.pub)
		configs := map[string]Config{
			"public key only":       {PublicKeyFiles: []string{file}, Algorithms: []string{pk.alg, "HS256"}},
			"public key and secret": {PublicKeyFiles: []string{file}, Secret: k.secret, Algorithms: []string{pk.alg, "HS256"}},
		}
		for cname, cfg := range configs {
			v := newVerifier(t, cfg)
			for fname, hmacKey := range forms {
				for _, kid := range []string{"", tp} {
					hdr := map[string]any{"alg": "HS256", "typ": "at+jwt"}
					if kid != "" {
						hdr["kid"] = kid
					}
					_, err := v.Verify(rawToken(t, hdr, claimsAt(now), hmacSigner(hmacKey)), now)
					if err == nil {
						t.Errorf("%s/%s/%s/kid=%q: accepted", pk.name, cname, fname, kid)
					} else if !errors.Is(err, ErrUnknownKey) && !errors.Is(err, ErrSignature) {
						t.Errorf("%s/%s/%s: %v", pk.name, cname, fname, err)
					}
				}
			}
		}
		// The same bytes as the secret: refused at New.
		for fname, b := range forms {
			if fname == "JWK thumbprint" {
				continue // 43 characters of base64: indistinguishable from a secret
			}
			if _, err := New(t.Context(), Config{Secret: b, Algorithms: []string{"HS256"}}); err == nil {
				t.Errorf("%s/%s accepted as a secret", pk.name, fname)
			}
		}
	}
}

// TestAlgKeyMismatch: a header alg that does not fit the key is refused,
// whatever the signature.
func TestAlgKeyMismatch(t *testing.T) {
	now := time.Now()
	k := keys()
	all := []string{"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "EdDSA"}
	v := newVerifier(t, Config{
		PublicKeyFiles: []string{writePublicPEM(t, k.p256.Public())},
		Algorithms:     all,
	})
	cases := []struct {
		name string
		hdr  string
		sign func(string) []byte
		want error
	}{
		{"ES256 key, header ES384, P-256 signature", "ES384", methodSigner(t, "ES256", k.p256), ErrUnknownKey},
		{"ES256 key, header RS256, RSA signature", "RS256", methodSigner(t, "RS256", k.rsa), ErrUnknownKey},
		{"ES256 key, header EdDSA", "EdDSA", methodSigner(t, "EdDSA", k.ed), ErrUnknownKey},
		{"ES256 key, header HS256, HMAC with DER", "HS256", hmacSigner(pkixDER(t, k.p256.Public())), ErrUnknownKey},
		{"ES256 key, header PS256", "PS256", methodSigner(t, "ES256", k.p256), ErrAlgorithm},
		{"ES256 key, header es256", "es256", methodSigner(t, "ES256", k.p256), ErrAlgorithm},
		{"ES256 key, header ES512", "ES512", methodSigner(t, "ES256", k.p256), ErrAlgorithm},
		{"control: ES256", "ES256", methodSigner(t, "ES256", k.p256), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(rawToken(t, map[string]any{"alg": tc.hdr, "typ": "at+jwt"}, claimsAt(now), tc.sign), now)
			wantErr(t, err, tc.want)
		})
	}

	// A key pinned by its JWK alg refuses the other algorithms of its family.
	srv := newJWKSServer(t, jwkOf(k.rsa.Public(), "rs", "RS256", "sig"))
	v2 := newVerifier(t, Config{JWKSURL: srv.URL, Algorithms: []string{"RS256", "RS384", "RS512"}})
	_, err := v2.Verify(mint(t, "RS384", k.rsa, "rs", claimsAt(now)), now)
	wantErr(t, err, ErrUnknownKey)
	_, err = v2.Verify(mint(t, "RS256", k.rsa, "rs", claimsAt(now)), now)
	wantErr(t, err, nil)

	// verifySig itself refuses algorithms a key is not pinned to.
	ks := v.keys.Load()
	key := ks.single[algES256]
	input := "a.b"
	sig := methodSigner(t, "ES256", k.p256)(input)
	if !verifySig(algES256, key, input, sig) {
		t.Fatal("control signature refused")
	}
	for a := algHS256; a < numAlgs; a++ {
		if a != algES256 && verifySig(a, key, input, sig) {
			t.Errorf("verifySig accepted %v with a P-256 key", a)
		}
	}
	// Within a family: an RSA key pinned to RS256 (by its JWK alg) and a
	// secret pinned to HS256 refuse valid RS384 and HS512 signatures.
	rsKey := v2.keys.Load().byKID["rs"][0]
	if !verifySig(algRS384, &verifyKey{kind: kindRSA, algs: setOf(algRS384), pub: rsKey.pub}, input, methodSigner(t, "RS384", k.rsa)(input)) {
		t.Fatal("control RS384 refused")
	}
	if verifySig(algRS384, rsKey, input, methodSigner(t, "RS384", k.rsa)(input)) {
		t.Error("verifySig accepted RS384 with a key pinned to RS256")
	}
	hs, err := newSecretKey(k.secret, setOf(algHS256))
	if err != nil {
		t.Fatal(err)
	}
	if verifySig(algHS512, hs, input, methodSigner(t, "HS512", k.secret)(input)) {
		t.Error("verifySig accepted HS512 with a secret pinned to HS256")
	}
}

func TestHostileKIDs(t *testing.T) {
	now := time.Now()
	k := keys()
	srv := newJWKSServer(t, jwkOf(k.rsa.Public(), "good", "RS256", "sig"))
	v := newVerifier(t, Config{JWKSURL: srv.URL, Algorithms: []string{"RS256"}, JWKSMinRefetch: time.Hour})
	cases := []struct {
		name, kid string
		want      error
		fetches   int64 // with the refetch throttle open
	}{
		{"path traversal", "../../etc/passwd", ErrUnknownKey, 1},
		{"file URL", "file:///etc/passwd", ErrUnknownKey, 1},
		{"SQL", "' OR 1=1 --", ErrUnknownKey, 1},
		{"NUL", "good\x00", ErrUnknownKey, 1},
		{"257 bytes", strings.Repeat("k", MaxKIDLength+1), ErrUnknownKey, 0}, // over the kid cap: never looked up
		{"4 KB", strings.Repeat("k", 4<<10), ErrUnknownKey, 0},
		{"10 KB", strings.Repeat("k", 10<<10), ErrMalformed, 0}, // over the 8 KiB token limit
		{"control: good", "good", nil, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok := rawToken(t, map[string]any{"alg": "RS256", "typ": "at+jwt", "kid": tc.kid}, claimsAt(now), methodSigner(t, "RS256", k.rsa))
			before := srv.hits.Load()
			v.allowRefetch()
			_, err := v.Verify(tok, now)
			wantErr(t, err, tc.want)
			if err != nil && strings.Contains(err.Error(), tc.kid) {
				t.Error("error echoes the kid")
			}
			if n := srv.hits.Load() - before; n != tc.fetches {
				t.Errorf("%d JWKS fetches, want %d", n, tc.fetches)
			}
			// Throttled: a second try fetches nothing.
			before = srv.hits.Load()
			v.Verify(tok, now)
			if n := srv.hits.Load() - before; n != 0 {
				t.Errorf("%d JWKS fetches inside the throttle window", n)
			}
		})
	}
	// kid of the wrong JSON type.
	tok := rawToken(t, map[string]any{"alg": "RS256", "typ": "at+jwt", "kid": 7}, claimsAt(now), methodSigner(t, "RS256", k.rsa))
	_, err := v.Verify(tok, now)
	wantErr(t, err, ErrMalformed)
}

func TestTampering(t *testing.T) {
	now := time.Now()
	k := keys()
	v := newVerifier(t, Config{Secret: k.secret, Algorithms: []string{"HS256"}})
	tok := mint(t, "HS256", k.secret, "", claimsAt(now))
	parts := strings.Split(tok, ".")
	hdr := b64e([]byte(`{"alg":"HS256","typ":"at+jwt","x":1}`))
	adminClaims := with(claimsAt(now), "scope", "admin")
	adminPayload, _ := json.Marshal(adminClaims)
	expired := mint(t, "HS256", k.other, "", with(claimsAt(now), "exp", now.Add(-time.Hour).Unix()))
	cases := []struct {
		name, tok string
		want      error
	}{
		{"control", tok, nil},
		{"tampered header", hdr + "." + parts[1] + "." + parts[2], ErrSignature},
		{"tampered payload", parts[0] + "." + b64e(adminPayload) + "." + parts[2], ErrSignature},
		{"swapped segments", parts[1] + "." + parts[0] + "." + parts[2], ErrAlgorithm}, // the payload has no alg
		{"truncated signature", parts[0] + "." + parts[1] + "." + parts[2][:20], ErrSignature},
		{"signature of another token", parts[0] + "." + parts[1] + "." + strings.Split(mint(t, "HS256", k.secret, "", adminClaims), ".")[2], ErrSignature},
		{"expired and badly signed", expired, ErrSignature},
		{"expired, badly signed, refresh typ", rawToken(t, map[string]any{"alg": "HS256", "typ": "refresh+jwt"}, with(claimsAt(now), "exp", 1), hmacSigner(k.other)), ErrSignature},
		{"badly signed, no exp", rawToken(t, map[string]any{"alg": "HS256", "typ": "at+jwt"}, with(claimsAt(now), "exp", deleteClaim), hmacSigner(k.other)), ErrSignature},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(tc.tok, now)
			wantErr(t, err, tc.want)
		})
	}
}

func TestCompactShape(t *testing.T) {
	now := time.Now()
	k := keys()
	v := newVerifier(t, Config{Secret: k.secret, Algorithms: []string{"HS256"}})
	tok := mint(t, "HS256", k.secret, "", claimsAt(now))
	p := strings.Split(tok, ".")
	flipLast := func(s string) string {
		// Change the last character so that the unused trailing bits
		// are non-zero but the decoded bytes are the same.
		alphabet := "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
		i := strings.IndexByte(alphabet, s[len(s)-1])
		return s[:len(s)-1] + string(alphabet[i|1])
	}
	if len(p[2])%4 == 0 {
		t.Fatal("signature length leaves no trailing bits")
	}
	cases := []struct {
		name, tok string
	}{
		{"empty", ""},
		{"one segment", p[0]},
		{"two segments", p[0] + "." + p[1]},
		{"four segments", tok + "." + p[2]},
		{"five segments (JWE shape)", tok + ".a.b"},
		{"trailing dot", tok + "."},
		{"leading dot", "." + tok},
		{"double dot", p[0] + ".." + p[1] + "." + p[2]},
		{"empty header", "." + p[1] + "." + p[2]},
		{"empty payload", p[0] + ".." + p[2]},
		{"empty signature", p[0] + "." + p[1] + "."},
		{"thousands of dots", tok + strings.Repeat(".", 5000)},
		{"only dots", strings.Repeat(".", 8000)},
		{"over 8 KiB", p[0] + "." + p[1] + strings.Repeat("A", 8<<10) + "." + p[2]},
		{"over 8 KiB, validly signed", rawToken(t, map[string]any{"alg": "HS256", "typ": "at+jwt"}, with(claimsAt(now), "pad", strings.Repeat("x", 7<<10)), hmacSigner(k.secret))},
		{"non-canonical trailing bits in signature", p[0] + "." + p[1] + "." + flipLast(p[2])},
		{"padding on signature", p[0] + "." + p[1] + "." + p[2] + "="},
		{"padding on header", p[0] + "==." + p[1] + "." + p[2]},
		{"padding on payload", p[0] + "." + p[1] + "=." + p[2]},
		{"padding on every segment", padded(p[0]+"A") + "." + padded(p[1]+"A") + "." + padded(p[2])},
		{"standard alphabet", strings.NewReplacer("-", "+", "_", "/").Replace(tok) + "+/"},
		{"newline inside", p[0] + "." + p[1][:5] + "\n" + p[1][5:] + "." + p[2]},
		{"CR inside signature", p[0] + "." + p[1] + "." + p[2][:5] + "\r" + p[2][5:]},
		{"space", p[0] + ". " + p[1] + "." + p[2]},
		{"impossible length", p[0] + "." + p[1] + "." + impossible(p[2])},
		{"JSON serialization", `{"payload":"` + p[1] + `","protected":"` + p[0] + `","signature":"` + p[2] + `"}`},
		{"header is an array", b64e([]byte(`["alg","HS256"]`)) + "." + p[1] + "." + p[2]},
		{"header is null", b64e([]byte(`null`)) + "." + p[1] + "." + p[2]},
		{"header is a string", b64e([]byte(`"HS256"`)) + "." + p[1] + "." + p[2]},
		{"header is invalid JSON", b64e([]byte(`{"alg":"HS256",}`)) + "." + p[1] + "." + p[2]},
		{"header with trailing data", b64e([]byte(`{"alg":"HS256"}{}`)) + "." + p[1] + "." + p[2]},
		{"payload is an array", rawToken(t, map[string]any{"alg": "HS256", "typ": "at+jwt"}, []byte(`[1]`), hmacSigner(k.secret))},
		{"payload is a number", rawToken(t, map[string]any{"alg": "HS256", "typ": "at+jwt"}, []byte(`12`), hmacSigner(k.secret))},
		{"payload is not JSON", rawToken(t, map[string]any{"alg": "HS256", "typ": "at+jwt"}, []byte(`foo`), hmacSigner(k.secret))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			_, err := v.Verify(tc.tok, now)
			wantErr(t, err, ErrMalformed)
			if d := time.Since(start); d > 50*time.Millisecond {
				t.Errorf("took %v", d)
			}
		})
	}
	if _, err := v.Verify(tok, now); err != nil {
		t.Fatalf("control: %v", err)
	}
}

// impossible extends s to a length no base64 encoding has (4n+1).
func impossible(s string) string {
	for len(s)%4 != 1 {
		s += "A"
	}
	return s
}

func padded(s string) string {
	for len(s)%4 != 0 {
		s += "="
	}
	return s
}

// TestEmbeddedKeyHeaders: jwk, jku, x5u and x5c are never used and never
// fetched.
func TestEmbeddedKeyHeaders(t *testing.T) {
	now := time.Now()
	k := keys()
	var hits atomic.Int64
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write(jwksJSON(jwkOf(k.p256b.Public(), "evil", "ES256", "sig")))
	}))
	t.Cleanup(attacker.Close)
	v := newVerifier(t, Config{PublicKeyFiles: []string{writePublicPEM(t, k.p256.Public())}, Algorithms: []string{"ES256"}})
	evilSign := methodSigner(t, "ES256", k.p256b)
	for name, hdr := range map[string]map[string]any{
		"jwk":          {"jwk": jwkOf(k.p256b.Public(), "", "ES256", "")},
		"jku":          {"jku": attacker.URL + "/jwks.json"},
		"jku with kid": {"jku": attacker.URL + "/jwks.json", "kid": "evil"},
		"x5u":          {"x5u": attacker.URL + "/cert.pem"},
		"x5c":          {"x5c": []string{b64std(selfSignedDER(t))}},
		"all of them":  {"jwk": jwkOf(k.p256b.Public(), "", "", ""), "jku": attacker.URL, "x5u": attacker.URL, "x5c": []string{b64std(selfSignedDER(t))}},
	} {
		t.Run(name, func(t *testing.T) {
			hdr["alg"], hdr["typ"] = "ES256", "at+jwt"
			_, err := v.Verify(rawToken(t, hdr, claimsAt(now), evilSign), now)
			if err == nil {
				t.Fatal("token signed with an embedded or referenced key accepted")
			}
		})
	}
	// With the configured key, the same headers are ignored.
	hdr := map[string]any{"alg": "ES256", "typ": "at+jwt", "jku": attacker.URL, "x5u": attacker.URL, "jwk": jwkOf(k.p256b.Public(), "", "", "")}
	_, err := v.Verify(rawToken(t, hdr, claimsAt(now), methodSigner(t, "ES256", k.p256)), now)
	wantErr(t, err, nil)
	time.Sleep(50 * time.Millisecond)
	if n := hits.Load(); n != 0 {
		t.Fatalf("the attacker's server got %d requests", n)
	}
}

func TestCritAndB64Headers(t *testing.T) {
	now := time.Now()
	k := keys()
	v := newVerifier(t, Config{Secret: k.secret, Algorithms: []string{"HS256"}})
	for name, extra := range map[string]map[string]any{
		"crit exp":         {"crit": []string{"exp"}},
		"crit b64":         {"crit": []string{"b64"}, "b64": false},
		"crit empty":       {"crit": []string{}},
		"crit null":        {"crit": nil},
		"crit unknown":     {"crit": []string{"http://example.com/x"}, "http://example.com/x": true},
		"b64 false":        {"b64": false},
		"b64 string false": {"b64": "false"},
	} {
		t.Run(name, func(t *testing.T) {
			hdr := map[string]any{"alg": "HS256", "typ": "at+jwt"}
			for k, v := range extra {
				hdr[k] = v
			}
			_, err := v.Verify(rawToken(t, hdr, claimsAt(now), hmacSigner(k.secret)), now)
			wantErr(t, err, ErrMalformed)
		})
	}
	// b64 true changes nothing.
	_, err := v.Verify(rawToken(t, map[string]any{"alg": "HS256", "typ": "at+jwt", "b64": true}, claimsAt(now), hmacSigner(k.secret)), now)
	wantErr(t, err, nil)
}

// TestCaseFoldedHeaderNames: "ALG", "Kid", "TYP" are not alg, kid, typ.
func TestCaseFoldedHeaderNames(t *testing.T) {
	now := time.Now()
	k := keys()
	v := newVerifier(t, Config{Secret: k.secret, Algorithms: []string{"HS256"}})
	_, err := v.Verify(rawToken(t, map[string]any{"ALG": "HS256", "typ": "at+jwt"}, claimsAt(now), hmacSigner(k.secret)), now)
	wantErr(t, err, ErrAlgorithm)
	_, err = v.Verify(rawToken(t, map[string]any{"alg": "HS256", "TYP": "at+jwt"}, claimsAt(now), hmacSigner(k.secret)), now)
	wantErr(t, err, ErrType)
	_, err = v.Verify(rawToken(t, map[string]any{"alg": "HS256", "typ": "at+jwt"}, with(claimsAt(now), "exp", deleteClaim, "EXP", now.Add(time.Hour).Unix()), hmacSigner(k.secret)), now)
	wantErr(t, err, ErrClaims)
}

// TestRepeatedAndEscapedMembers: a member read twice is refused (two
// parsers could read two different tokens), and escaped names are the
// names they spell.
func TestRepeatedAndEscapedMembers(t *testing.T) {
	now := time.Now()
	k := keys()
	v := newVerifier(t, Config{Secret: k.secret, Algorithms: []string{"HS256"}})
	body, _ := json.Marshal(claimsAt(now))
	inner := string(body[1 : len(body)-1])
	sign := hmacSigner(k.secret)
	tok := func(header, payload string) string {
		input := b64e([]byte(header)) + "." + b64e([]byte(payload))
		return input + "." + b64e(sign(input))
	}
	cases := []struct {
		name, header, payload string
		want                  error
	}{
		{"control", `{"alg":"HS256","typ":"at+jwt"}`, `{` + inner + `}`, nil},
		{"alg twice", `{"alg":"none","alg":"HS256","typ":"at+jwt"}`, `{` + inner + `}`, ErrMalformed},
		{"typ twice", `{"alg":"HS256","typ":"refresh+jwt","typ":"at+jwt"}`, `{` + inner + `}`, ErrMalformed},
		{"kid twice", `{"alg":"HS256","kid":"a","kid":"b","typ":"at+jwt"}`, `{` + inner + `}`, ErrMalformed},
		{"escaped alg name", `{"\u0061lg":"HS256","typ":"at+jwt"}`, `{` + inner + `}`, nil},
		{"escaped alg name twice", `{"\u0061lg":"none","alg":"HS256","typ":"at+jwt"}`, `{` + inner + `}`, ErrMalformed},
		{"escaped crit", `{"alg":"HS256","typ":"at+jwt","\u0063rit":["exp"]}`, `{` + inner + `}`, ErrMalformed},
		{"unread member twice", `{"alg":"HS256","typ":"at+jwt","x":1,"x":2}`, `{` + inner + `}`, nil},
		{"sub twice", `{"alg":"HS256","typ":"at+jwt"}`, `{` + inner + `,"sub":"admin"}`, ErrClaims},
		{"scope twice", `{"alg":"HS256","typ":"at+jwt"}`, `{` + inner + `,"scope":"admin"}`, ErrClaims},
		{"exp twice", `{"alg":"HS256","typ":"at+jwt"}`, `{` + inner + `,"exp":99999999999}`, ErrClaims},
		{"escaped nbf is nbf", `{"alg":"HS256","typ":"at+jwt"}`, `{` + inner + `,"\u006ebf":` + fmt.Sprint(now.Add(time.Hour).Unix()) + `}`, ErrNotYetValid},
		{"escaped sub value", `{"alg":"HS256","typ":"at+jwt"}`, `{"sub":"\u0041dmin","exp":` + fmt.Sprint(now.Add(time.Minute).Unix()) + `}`, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(tok(tc.header, tc.payload), now)
			wantErr(t, err, tc.want)
		})
	}
}

// TestNothingSecretInErrors runs many refusals and checks that no error
// text carries the token, a segment of it, a claim value or the secret.
func TestNothingSecretInErrors(t *testing.T) {
	now := time.Now()
	k := keys()
	v := newVerifier(t, Config{Secret: k.secret, Algorithms: []string{"HS256"}, Issuer: "iss-expected", Audience: "aud-expected"})
	secretish := []string{string(k.secret), "user_42", "ws_acme", "iss-sent", "aud-sent"}
	sign := hmacSigner(k.secret)
	for i, tok := range []string{
		mint(t, "HS256", k.other, "", claimsAt(now)),
		mint(t, "HS256", k.secret, "kid-sent", claimsAt(now)),
		mint(t, "HS256", k.secret, "", with(claimsAt(now), "iss", "iss-sent")),
		mint(t, "HS256", k.secret, "", with(claimsAt(now), "iss", "iss-expected", "aud", "aud-sent")),
		rawToken(t, map[string]any{"alg": "HS256", "typ": "typ-sent"}, claimsAt(now), sign),
		rawToken(t, map[string]any{"alg": "alg-sent"}, claimsAt(now), sign),
		"not.a.jwt-" + string(k.secret),
	} {
		_, err := v.Verify(tok, now)
		if err == nil {
			t.Fatalf("case %d accepted", i)
		}
		msg := err.Error()
		for _, s := range append(secretish, tok, "kid-sent", "typ-sent", "alg-sent") {
			if strings.Contains(msg, s) {
				t.Errorf("case %d: error %q contains %q", i, msg, s)
			}
		}
		for _, seg := range strings.Split(tok, ".") {
			if len(seg) > 8 && strings.Contains(msg, seg) {
				t.Errorf("case %d: error contains a token segment", i)
			}
		}
	}
}

func b64std(b []byte) string {
	return strings.NewReplacer("-", "+", "_", "/").Replace(b64e(b)) + strings.Repeat("=", (4-len(b64e(b))%4)%4)
}

// hmacOK is an independent HS256 check (for the fuzz target).
func hmacOK(secret []byte, tok string) bool {
	i := strings.LastIndexByte(tok, '.')
	if i < 0 {
		return false
	}
	sig, err := b64.DecodeString(tok[i+1:])
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(tok[:i]))
	return hmac.Equal(m.Sum(nil), sig)
}
