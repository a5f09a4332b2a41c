package tokenapi

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
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deplo-sh/deplo-auth/apikey"
	"github.com/deplo-sh/deplo-auth/keystore"
)

// leakSigner is a GitHub-like signer: a P-256 key and its key document.
type leakSigner struct {
	id  string
	key *ecdsa.PrivateKey
}

func newLeakSigner(t testing.TB, id string) *leakSigner {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &leakSigner{id: id, key: k}
}

func (s *leakSigner) sign(t testing.TB, body []byte) string {
	t.Helper()
	d := sha256.Sum256(body)
	sig, err := ecdsa.SignASN1(rand.Reader, s.key, d[:])
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

// keyDocument is GitHub's public key document for signers.
func keyDocument(t testing.TB, signers ...*leakSigner) []byte {
	t.Helper()
	type key struct {
		ID      string `json:"key_identifier"`
		Key     string `json:"key"`
		Current bool   `json:"is_current"`
	}
	var doc struct {
		Keys []key `json:"public_keys"`
	}
	for i, s := range signers {
		der, err := x509.MarshalPKIXPublicKey(&s.key.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		doc.Keys = append(doc.Keys, key{s.id, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), i == 0})
	}
	b, _ := json.Marshal(doc)
	return b
}

func TestParseLeakKeys(t *testing.T) {
	s := newLeakSigner(t, "k1")
	if keys, err := ParseLeakKeys(keyDocument(t, s, newLeakSigner(t, "k2"))); err != nil || len(keys) != 2 {
		t.Fatalf("%v, %v", keys, err)
	}
	rsaLike := `{"public_keys":[{"key_identifier":"x","key":"-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n"}]}`
	for name, doc := range map[string]string{
		"not JSON":        `nope`,
		"no keys":         `{"public_keys":[]}`,
		"empty id":        strings.Replace(string(keyDocument(t, s)), `"k1"`, `""`, 1),
		"not PEM":         `{"public_keys":[{"key_identifier":"x","key":"abc"}]}`,
		"truncated key":   rsaLike,
		"wrong PEM block": `{"public_keys":[{"key_identifier":"x","key":"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}]}`,
	} {
		if _, err := ParseLeakKeys([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestVerifyLeak(t *testing.T) {
	s, other := newLeakSigner(t, "k1"), newLeakSigner(t, "k2")
	keys, err := ParseLeakKeys(keyDocument(t, s))
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`[{"token":"sk_live_x","type":"deplo_api_token","url":"https://github.com/o/r/blob/x","source":"content"}]`)
	good := s.sign(t, body)
	for _, tt := range []struct {
		name, id, sig string
		body          []byte
		ok            bool
	}{
		{"signed", "k1", good, body, true},
		{"no identifier", "", good, body, false},
		{"no signature", "k1", "", body, false},
		{"unknown identifier", "k2", other.sign(t, body), body, false},
		{"another key's signature", "k1", other.sign(t, body), body, false},
		{"body changed", "k1", good, append([]byte(" "), body...), false},
		{"not base64", "k1", "!!!", body, false},
		{"truncated signature", "k1", good[:20], body, false},
	} {
		err := VerifyLeak(keys, tt.id, tt.sig, tt.body)
		if (err == nil) != tt.ok {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
	if err := VerifyLeak(keys, "k2", other.sign(t, body), body); !errors.Is(err, ErrUnknownLeakKey) {
		t.Errorf("unknown key: %v, want ErrUnknownLeakKey", err)
	}
}

// RevokeLeaked revokes each live reported token (reason leaked), labels
// every report, and leaves every other token alone.
func TestRevokeLeaked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	admin := &keystore.FileTokenManager{Path: path}
	raws := map[string]string{}
	now := time.Now().UTC().Truncate(time.Second)
	for _, id := range []string{"tok_live", "tok_revoked", "tok_bystander"} {
		raw, _ := apikey.Generate()
		raws[id] = raw
		e := keystore.TokenEntry{ID: id, Name: id, Hash: apikey.Sum(raw).String(), Workspace: "ws_acme", Scopes: []string{"read"}}
		if id == "tok_revoked" {
			at := now.Add(-time.Hour)
			e.RevokedAt = &at
		}
		if err := admin.CreateToken(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	unknown, _ := apikey.Generate()
	reports := []LeakReport{
		{Token: raws["tok_live"], Type: "deplo_api_token", URL: "https://github.com/o/r/blob/a/ci.yml", Source: "content"},
		{Token: raws["tok_revoked"], Type: "deplo_api_token", URL: "u2", Source: "commit"},
		{Token: unknown, Type: "deplo_api_token", URL: "u3"},
		{Token: "sk_live_notavalidtoken", Type: "deplo_api_token", URL: "u4"},
		{Token: "", Type: "x"},
	}
	labels, outcomes, err := RevokeLeaked(context.Background(), admin, reports, now)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{LabelTruePositive, LabelTruePositive, LabelFalsePositive, LabelFalsePositive, LabelFalsePositive}
	for i, l := range labels {
		if l.Label != want[i] || l.TokenRaw != reports[i].Token || l.TokenType != reports[i].Type {
			t.Errorf("label %d: %+v, want %s", i, l, want[i])
		}
	}
	if !outcomes[0].Revoked || outcomes[1].Revoked || outcomes[0].TokenID != "tok_live" || outcomes[0].URL != reports[0].URL {
		t.Errorf("outcomes %+v", outcomes)
	}
	live, _ := admin.Token(context.Background(), "tok_live")
	if live.RevokedAt == nil || !live.RevokedAt.Equal(now) || live.RevokedReason != keystore.RevokedLeaked {
		t.Errorf("tok_live: %+v", live)
	}
	if old, _ := admin.Token(context.Background(), "tok_revoked"); !old.RevokedAt.Equal(now.Add(-time.Hour)) || old.RevokedReason != "" {
		t.Errorf("an earlier revocation was changed: %+v", old)
	}
	if by, _ := admin.Token(context.Background(), "tok_bystander"); by.RevokedAt != nil {
		t.Error("a token not reported was revoked")
	}
	// A failing store: an error, and the sender retries.
	broken := &keystore.FileTokenManager{Path: filepath.Join(t.TempDir(), "missing.json")}
	if _, _, err := RevokeLeaked(context.Background(), broken, reports[:1], now); err == nil {
		t.Error("a store failure was not reported")
	}
}

func TestParseLeakReports(t *testing.T) {
	for body, ok := range map[string]bool{
		`[]`: true,
		`[{"token":"a","type":"b","url":"c","source":"d","extra":1}]`: true,
		`{"token":"a"}`:                false,
		`[{"token":1}]`:                false,
		`[`:                            false,
		``:                             false,
		`["a"]`:                        false,
		`[{}]` + " ":                   true,
		strings.Repeat(" ", 10) + `[]`: false,
		`[` + strings.Repeat(`{},`, MaxLeakReports) + `{}]`: false,
	} {
		if _, err := ParseLeakReports([]byte(body)); (err == nil) != ok {
			t.Errorf("%.40q: %v", body, err)
		}
	}
}

// FuzzLeaks drives the leak endpoint's input — any body, signed or not —
// and checks what must hold: an unsigned or altered body never verifies;
// a signed one is parsed, answered with one label per report, and revokes
// only tokens it names.
func FuzzLeaks(f *testing.F) {
	f.Add([]byte(`[{"token":"sk_live_x","type":"t","url":"u","source":"s"}]`), true, uint8(0))
	f.Add([]byte(`[]`), false, uint8(3))
	f.Add([]byte(`[{"token":"","type":"","url":"","source":""},{}]`), true, uint8(1))
	s := newLeakSigner(f, "k1")
	keys, err := ParseLeakKeys(keyDocument(f, s))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte, includeKnown bool, flip uint8) {
		path := filepath.Join(t.TempDir(), "keys.json")
		admin := &keystore.FileTokenManager{Path: path}
		raw, _ := apikey.Generate()
		if err := admin.CreateToken(context.Background(), keystore.TokenEntry{ID: "tok_k", Name: "k", Hash: apikey.Sum(raw).String(),
			Workspace: "ws", Scopes: []string{"read"}}); err != nil {
			t.Fatal(err)
		}
		if includeKnown && len(body) > 0 && body[0] == '[' {
			body = append([]byte(`[{"token":"`+raw+`"},`), body[1:]...)
		}
		sig := s.sign(t, body)
		if len(body) > 0 {
			altered := append([]byte(nil), body...)
			altered[int(flip)%len(altered)] ^= 1
			if VerifyLeak(keys, "k1", sig, altered) == nil {
				t.Fatal("an altered body verified")
			}
		}
		if err := VerifyLeak(keys, "k1", sig, body); err != nil {
			t.Fatalf("a signed body did not verify: %v", err)
		}
		reports, err := ParseLeakReports(body)
		if err != nil {
			return
		}
		labels, _, err := RevokeLeaked(context.Background(), admin, reports, time.Now())
		if err != nil || len(labels) != len(reports) {
			t.Fatalf("%d labels for %d reports, %v", len(labels), len(reports), err)
		}
		named := false
		for _, r := range reports {
			named = named || r.Token == raw
		}
		rec, err := admin.Token(context.Background(), "tok_k")
		if err != nil || (rec.RevokedAt != nil) != named {
			t.Fatalf("named %v, revoked %v (%v)", named, rec.RevokedAt, err)
		}
	})
}
