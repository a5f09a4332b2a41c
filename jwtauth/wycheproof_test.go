package jwtauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deplo-sh/deplo-auth/internal/jsonwire"
)

// wycheproofDir holds the vectors, committed with their licence and
// source (see its README.md).
var wycheproofDir = filepath.Join("testdata", "wycheproof")

func readWycheproof(t *testing.T, name string, v any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(wycheproofDir, name))
	if errors.Is(err, os.ErrNotExist) {
		t.Skipf("Wycheproof vectors absent (%s not found; see %s)", filepath.Join(wycheproofDir, name), filepath.Join(wycheproofDir, "README.md"))
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// signatureLayer runs the part of Verify that precedes the claims: strict
// parsing of the compact form and header, algorithm and key selection, and
// the signature check. Wycheproof payloads are not claim sets.
func (v *Verifier) signatureLayer(token string) error {
	if len(token) > MaxTokenLength {
		return errTooLong
	}
	c, verr := parseCompact(token)
	if verr != nil {
		return verr
	}
	if _, verr := v.checkSignature(c); verr != nil {
		return verr
	}
	return nil
}

var allAlgs = []string{"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "EdDSA"}

// wycheproofMislabelled are the JWS vectors whose label the README of the
// vectors calls wrong; they are skipped, each for the reason given.
var wycheproofMislabelled = map[int]string{
	367: `"invalid" but byte-identical to valid case 357`,
	370: `"invalid" but byte-identical to valid case 357`,
	372: `"valid" though a '?' is inserted in the header segment (not base64url)`,
	373: `"valid" though a '?' is inserted in the payload segment (not base64url)`,
	346: `RFC 7520 Figure 20 (PS256), "valid": PS256 is not supported here`,
	350: `RFC 7520 Figure 20 (PS256) with key_ops, "valid": PS256 is not supported here`,
}

func TestWycheproofJWS(t *testing.T) {
	var file struct {
		TestGroups []struct {
			Comment string                     `json:"comment"`
			Private map[string]json.RawMessage `json:"private"`
			Tests   []struct {
				TcID    int    `json:"tcId"`
				Comment string `json:"comment"`
				JWS     string `json:"jws"`
				Result  string `json:"result"`
			} `json:"tests"`
		} `json:"testGroups"`
	}
	readWycheproof(t, "json_web_signature_test.json", &file)

	allow := setOf(algHS256, algHS384, algHS512, algRS256, algRS384, algRS512, algES256, algES384, algEdDSA)
	validJWS := map[int]string{}
	var invalidRefused, validAccepted, validUnsupported, validEmptyPayload, skipped int
	for _, g := range file.TestGroups {
		key, why := wycheproofJWK(t, g.Private, allow)
		cfg := Config{Algorithms: allAlgs, TypeOff: true, CacheMaxEntries: -1}
		if key != nil {
			cfg.testKeys = []*verifyKey{key}
		} else {
			// No usable key: a verifier with an unrelated key, which must
			// refuse everything in the group.
			other, err := newPublicKey(keys().ed.Public(), "unrelated", allow, "test")
			if err != nil {
				t.Fatal(err)
			}
			cfg.testKeys = []*verifyKey{other}
		}
		v, err := New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range g.Tests {
			if tc.Result == "valid" {
				validJWS[tc.TcID] = tc.JWS
			}
			if reason, ok := wycheproofMislabelled[tc.TcID]; ok {
				t.Logf("tcId %d skipped: %s", tc.TcID, reason)
				skipped++
				continue
			}
			err := v.signatureLayer(tc.JWS)
			// The full Verify must refuse whatever the signature layer
			// refuses.
			if _, ferr := v.Verify(tc.JWS, time.Now()); err != nil && ferr == nil {
				t.Errorf("tcId %d: Verify accepted what the signature layer refused", tc.TcID)
			}
			switch tc.Result {
			case "invalid":
				if err == nil {
					t.Errorf("tcId %d (%s, group %s): invalid vector accepted", tc.TcID, tc.Comment, g.Comment)
				}
				invalidRefused++
			case "valid":
				if parts := strings.Split(tc.JWS, "."); len(parts) == 3 && parts[1] == "" {
					// By design: every segment must be non-empty (a JWT
					// always has a claims object).
					if err == nil || !errors.Is(err, ErrMalformed) {
						t.Errorf("tcId %d: empty payload not refused as malformed: %v", tc.TcID, err)
					}
					validEmptyPayload++
				} else if supported(tc.JWS) && key != nil {
					if err != nil {
						t.Errorf("tcId %d (%s, group %s): valid vector refused: %v", tc.TcID, tc.Comment, g.Comment, err)
					}
					validAccepted++
				} else {
					// PS*, ES512, or a key this verifier will not use
					// (key_ops "sign, verify" is one malformed string).
					if err == nil {
						t.Errorf("tcId %d: unsupported vector accepted", tc.TcID)
					}
					t.Logf("tcId %d (%s, group %s): valid, not supported here (%s): %v", tc.TcID, tc.Comment, g.Comment, why, err)
					validUnsupported++
				}
			default:
				t.Errorf("tcId %d: result %q", tc.TcID, tc.Result)
			}
		}
		v.Close()
	}
	// The skips are only justified while the vectors are as described.
	if validJWS[357] == "" {
		t.Error("case 357 is not a valid vector any more; revisit the skips")
	}
	for _, id := range []int{367, 370} {
		found := false
		for _, g := range file.TestGroups {
			for _, tc := range g.Tests {
				if tc.TcID == id {
					found = tc.JWS == validJWS[357]
				}
			}
		}
		if !found {
			t.Errorf("case %d is no longer identical to case 357; revisit the skip", id)
		}
	}
	t.Logf("JWS: %d invalid refused, %d valid accepted, %d valid but unsupported (refused), %d valid with an empty payload (refused by design), %d skipped as mislabelled",
		invalidRefused, validAccepted, validUnsupported, validEmptyPayload, skipped)
}

// supported reports whether the vector's alg is one this package implements.
func supported(jws string) bool {
	i := strings.IndexByte(jws, '.')
	if i < 0 {
		return false
	}
	raw, err := base64.RawURLEncoding.DecodeString(jws[:i])
	if err != nil {
		return false
	}
	var h struct {
		Alg string `json:"alg"`
	}
	if json.Unmarshal(raw, &h) != nil {
		return false
	}
	_, ok := parseAlg(h.Alg)
	return ok
}

// wycheproofJWK makes a key from a group's JWK: an oct key becomes an HMAC
// key with the JWK's kid; for the others, the private members are dropped
// and the public part goes through the JWKS parser.
func wycheproofJWK(t *testing.T, jwk map[string]json.RawMessage, allow algSet) (*verifyKey, string) {
	t.Helper()
	str := func(name string) string {
		s, _ := jsonwire.String(jwk[name])
		return s
	}
	if str("kty") == "oct" {
		secret, err := base64.RawURLEncoding.DecodeString(str("k"))
		if err != nil {
			t.Fatal(err)
		}
		k, err := newSecretKey(secret, allow)
		if err != nil {
			return nil, err.Error()
		}
		if a, ok := parseAlg(str("alg")); ok {
			k.algs &= setOf(a)
		}
		k.kid = str("kid")
		return k, ""
	}
	public := map[string]json.RawMessage{}
	for name, v := range jwk {
		public[name] = v
	}
	for _, name := range privateMembers {
		delete(public, name)
	}
	raw, err := json.Marshal(public)
	if err != nil {
		t.Fatal(err)
	}
	return parseJWK(raw, allow)
}

type sigVectors struct {
	TestGroups []struct {
		PublicKeyJwk json.RawMessage `json:"publicKeyJwk"`
		KeyJwk       json.RawMessage `json:"keyJwk"`
		PublicKey    struct {
			Uncompressed string `json:"uncompressed"`
		} `json:"publicKey"`
		Tests []struct {
			TcID    int    `json:"tcId"`
			Comment string `json:"comment"`
			Msg     string `json:"msg"`
			Sig     string `json:"sig"`
			Result  string `json:"result"`
		} `json:"tests"`
	} `json:"testGroups"`
}

// TestWycheproofSignatures runs the raw signature vectors through
// verifySig, the function Verify uses, with msg as the signing input.
func TestWycheproofSignatures(t *testing.T) {
	for _, f := range []struct {
		file string
		alg  alg
	}{
		{"ecdsa_secp256r1_sha256_p1363_test.json", algES256},
		{"ed25519_test.json", algEdDSA},
		{"rsa_signature_2048_sha256_test.json", algRS256},
	} {
		t.Run(f.file, func(t *testing.T) {
			var file sigVectors
			readWycheproof(t, f.file, &file)
			allow := setOf(f.alg)
			var checked, valid, invalid, acceptable, skippedGroups, skippedVectors int
			for gi, g := range file.TestGroups {
				jwk := g.PublicKeyJwk
				if jwk == nil {
					jwk = g.KeyJwk
				}
				var key *verifyKey
				why := "no JWK"
				if jwk != nil {
					key, why = parseJWK(jwk, allow)
				}
				if key == nil && g.PublicKey.Uncompressed != "" && f.alg == algES256 {
					point, err := hex.DecodeString(g.PublicKey.Uncompressed)
					if err != nil {
						t.Fatal(err)
					}
					if pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point); err == nil {
						key, err = newPublicKey(pub, "", allow, "test")
						if err != nil {
							why = err.Error()
						}
					} else {
						why = err.Error()
					}
				}
				if key == nil {
					// A key this package refuses cannot verify anything;
					// a valid vector under it would be a finding.
					for _, tc := range g.Tests {
						if tc.Result == "valid" {
							t.Errorf("group %d: key refused (%s) but tcId %d is valid", gi, why, tc.TcID)
						}
					}
					skippedGroups++
					skippedVectors += len(g.Tests)
					continue
				}
				for _, tc := range g.Tests {
					msg, err1 := hex.DecodeString(tc.Msg)
					sig, err2 := hex.DecodeString(tc.Sig)
					if err1 != nil || err2 != nil {
						t.Fatalf("tcId %d: bad hex", tc.TcID)
					}
					ok := verifySig(f.alg, key, string(msg), sig)
					checked++
					switch tc.Result {
					case "valid":
						valid++
						if !ok {
							t.Errorf("tcId %d (%s): valid signature refused", tc.TcID, tc.Comment)
						}
					case "invalid":
						invalid++
						if ok {
							t.Errorf("tcId %d (%s): invalid signature accepted", tc.TcID, tc.Comment)
						}
					case "acceptable":
						acceptable++ // either answer
					default:
						t.Errorf("tcId %d: result %q", tc.TcID, tc.Result)
					}
				}
			}
			t.Logf("%s: %d vectors checked (%d valid, %d invalid, %d acceptable); %d groups / %d vectors skipped (key refused)",
				f.file, checked, valid, invalid, acceptable, skippedGroups, skippedVectors)
			if checked == 0 {
				t.Fatal("no vector checked")
			}
		})
	}
}
