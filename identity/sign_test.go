package identity

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	s := mustSigner(t, "", testKey1)
	v := mustVerifier(t, "", testKey1)
	for _, id := range []Identity{
		idWorkspace, idProject, idJWT,
		{Method: MethodJWT, Subject: "josé@example.com"},
		{Method: MethodAPIKey, Subject: "t", Workspace: "w", Scopes: allScopes},
	} {
		for _, target := range []string{"/", "/v1/x", "/v1/files/a%2Fb/caf%C3%A9", "/caf%c3%a9", "/%7Euser", "/a;b,c=d@e:f", "/v1/x?q=1&r=%20", "/a//b/./c/../d", "*"} {
			for _, method := range []string{"GET", "POST", "DELETE", "OPTIONS", "PROPFIND", "get"} {
				r := signedRequest(t, s, id, method, target, testNow)
				got, err := v.Verify(r, testNow)
				if err != nil {
					t.Fatalf("%s %s %+v: %v", method, target, id, err)
				}
				if got != id {
					t.Fatalf("got %+v, want %+v", got, id)
				}
				// Sign gives the same value as SignRequest.
				path, _ := requestPath(r.URL)
				hv, err := s.Sign(method, path, id, testNow)
				if err != nil || hv != r.Header.Get("X-Deplo-Signature") {
					t.Fatalf("Sign = %q, %v; SignRequest set %q", hv, err, r.Header.Get("X-Deplo-Signature"))
				}
			}
		}
	}
}

func TestSignatureHeaderForm(t *testing.T) {
	s := mustSigner(t, "", testKey1)
	r := signedRequest(t, s, idWorkspace, "GET", "/v1/x", testNow)
	hv := r.Header["X-Deplo-Signature"]
	if len(hv) != 1 {
		t.Fatalf("signature header values: %q", hv)
	}
	prefix := "v1 kid=k1 ts=" + strconv.FormatInt(testNow.Unix(), 10) + " sig="
	if !strings.HasPrefix(hv[0], prefix) || len(hv[0]) != len(prefix)+43 {
		t.Fatalf("signature header %q", hv[0])
	}
	// A client-sent signature header in another spelling is replaced, not
	// added to.
	r.Header["X-Deplo-Signature"] = []string{"v1 kid=k1 ts=1 sig=x", "another"}
	if err := s.SignRequest(r, testNow); err != nil || len(r.Header["X-Deplo-Signature"]) != 1 || r.Header["X-Deplo-Signature"][0] != hv[0] {
		t.Fatalf("re-signing: %v %q", err, r.Header["X-Deplo-Signature"])
	}
}

func TestTampering(t *testing.T) {
	s1 := mustSigner(t, "", testKey1)
	s2 := mustSigner(t, "", testKey2)
	impostor := mustSigner(t, "", Key{ID: "k1", Secret: []byte("an-impostor-secret-of-enough-length-0000")})
	v := mustVerifier(t, "", testKey1, testKey2)

	sigOf := func(s *Signer, id Identity, method, target string) string {
		return signedRequest(t, s, id, method, target, testNow).Header.Get("X-Deplo-Signature")
	}
	setSig := func(sig string) func(*http.Request) {
		return func(r *http.Request) { r.Header["X-Deplo-Signature"] = []string{sig} }
	}
	set := func(name string, vs ...string) func(*http.Request) {
		return func(r *http.Request) {
			if vs == nil {
				delete(r.Header, name)
			} else {
				r.Header[name] = vs
			}
		}
	}
	editSig := func(edit func(string) string) func(*http.Request) {
		return func(r *http.Request) { r.Header["X-Deplo-Signature"][0] = edit(r.Header["X-Deplo-Signature"][0]) }
	}
	setURL := func(target string) func(*http.Request) {
		return func(r *http.Request) { r.URL = httptest.NewRequest("GET", target, nil).URL }
	}

	tests := []struct {
		name   string
		id     Identity // signed identity (default idProject)
		tamper func(*http.Request)
		err    error
	}{
		{"auth changed", idProject, set("X-Deplo-Auth", "jwt"), ErrBadSignature},
		{"subject changed", idProject, set("X-Deplo-Subject", "tok_3"), ErrBadSignature},
		{"subject extended", idProject, set("X-Deplo-Subject", "tok_2x"), ErrBadSignature},
		{"workspace changed", idProject, set("X-Deplo-Workspace", "ws_2"), ErrBadSignature},
		{"workspace removed", idProject, set("X-Deplo-Workspace"), ErrBadSignature},
		{"workspace emptied", idProject, set("X-Deplo-Workspace", ""), ErrBadSignature},
		{"workspace added", idJWT, set("X-Deplo-Workspace", "ws_1"), ErrBadSignature},
		{"project removed", idProject, set("X-Deplo-Project"), ErrBadSignature},
		{"project changed", idProject, set("X-Deplo-Project", "api"), ErrBadSignature},
		{"project added", idWorkspace, set("X-Deplo-Project", "web"), ErrBadSignature},
		{"scope added", idWorkspace, set("X-Deplo-Scopes", "admin deploy read"), ErrBadSignature},
		{"scope removed", idWorkspace, set("X-Deplo-Scopes", "read"), ErrBadSignature},
		{"scopes removed", idWorkspace, set("X-Deplo-Scopes"), ErrBadSignature},
		{"scopes reordered", idWorkspace, set("X-Deplo-Scopes", "read deploy"), ErrBadSignature},
		{"scopes granted", Identity{Method: MethodJWT, Subject: "u"}, set("X-Deplo-Scopes", "read"), ErrBadSignature},
		{"fields shifted", Identity{Method: MethodJWT, Subject: "u", Workspace: "w"}, func(r *http.Request) {
			delete(r.Header, "X-Deplo-Workspace")
			r.Header["X-Deplo-Project"] = []string{"w"}
		}, ErrBadSignature},
		{"extra scopes value", idWorkspace, func(r *http.Request) { r.Header.Add("X-Deplo-Scopes", "admin") }, ErrMalformed},
		{"extra subject value, same", idProject, func(r *http.Request) { r.Header.Add("X-Deplo-Subject", "tok_2") }, ErrMalformed},
		{"extra project value", idProject, func(r *http.Request) { r.Header.Add("X-Deplo-Project", "api") }, ErrMalformed},
		{"extra signature value", idProject, func(r *http.Request) {
			r.Header.Add("X-Deplo-Signature", r.Header.Get("X-Deplo-Signature"))
		}, ErrMalformed},
		{"newline in subject", idProject, set("X-Deplo-Subject", "tok_2\n"), ErrMalformed},
		{"method changed", idProject, func(r *http.Request) { r.Method = "DELETE" }, ErrBadSignature},
		{"method case", idProject, func(r *http.Request) { r.Method = "post" }, ErrBadSignature},
		{"path changed", idProject, setURL("/v1/workspaces/ws_1/projects/web/deployz"), ErrBadSignature},
		{"path prefix", idProject, setURL("/v1/workspaces/ws_1/projects/web"), ErrBadSignature},
		{"path unescaped", idProject, setURL("/v1/workspaces/ws_1/projects/web/deploy/a/b"), ErrBadSignature},
		{"ts changed", idProject, editSig(func(s string) string {
			return strings.Replace(s, "ts="+strconv.FormatInt(testNow.Unix(), 10), "ts="+strconv.FormatInt(testNow.Unix()-1, 10), 1)
		}), ErrBadSignature},
		{"ts leading zero", idProject, editSig(func(s string) string { return strings.Replace(s, "ts=", "ts=0", 1) }), ErrMalformed},
		{"kid of the other key", idProject, editSig(func(s string) string { return strings.Replace(s, "kid=k1", "kid=k2", 1) }), ErrBadSignature},
		{"kid unknown", idProject, editSig(func(s string) string { return strings.Replace(s, "kid=k1", "kid=k3", 1) }), ErrUnknownKey},
		{"mac of the other key under this kid", idProject, editSig(func(string) string {
			return strings.Replace(sigOf(s2, idProject, "POST", "/v1/workspaces/ws_1/projects/web/deploy/a%2Fb"), "kid=k2", "kid=k1", 1)
		}), ErrBadSignature},
		{"mac of an impostor key with this kid", idProject, setSig(sigOf(impostor, idProject, "POST", "/v1/workspaces/ws_1/projects/web/deploy/a%2Fb")), ErrBadSignature},
		{"signature of another request", idProject, setSig(sigOf(s1, idWorkspace, "POST", "/v1/workspaces/ws_1/projects/web/deploy/a%2Fb")), ErrBadSignature},
		{"mac byte flipped", idProject, editSig(func(s string) string {
			b := []byte(s)
			i := len(b) - 10
			if b[i] == 'A' {
				b[i] = 'B'
			} else {
				b[i] = 'A'
			}
			return string(b)
		}), ErrBadSignature},
		{"mac truncated", idProject, editSig(func(s string) string { return s[:len(s)-1] }), ErrMalformed},
		{"mac padded", idProject, editSig(func(s string) string { return s + "=" }), ErrMalformed},
		{"mac non-canonical trailing bits", idProject, editSig(func(s string) string {
			b := []byte(s)
			b[len(b)-1] = "BFJNRVZdhlptx159"[strings.IndexByte("AEIMQUYcgkosw048", b[len(b)-1])]
			return string(b)
		}), ErrMalformed},
		{"mac lengthened, standard alphabet", idProject, editSig(func(s string) string {
			return strings.NewReplacer("-", "+", "_", "/").Replace(s) + "x" // + or / and a length change
		}), ErrMalformed},
		{"version changed", idProject, editSig(func(s string) string { return "v2" + s[2:] }), ErrMalformed},
		{"double space", idProject, editSig(func(s string) string { return strings.Replace(s, " ts=", "  ts=", 1) }), ErrMalformed},
		{"trailing space", idProject, editSig(func(s string) string { return s + " " }), ErrMalformed},
		{"fields reordered", idProject, editSig(func(s string) string {
			f := strings.Fields(s)
			return f[0] + " " + f[2] + " " + f[1] + " " + f[3]
		}), ErrMalformed},
		{"signature removed", idProject, set("X-Deplo-Signature"), ErrNoSignature},
		{"signature emptied", idProject, set("X-Deplo-Signature", ""), ErrMalformed},
		{"identity removed, signature kept", idProject, func(r *http.Request) {
			for _, f := range fieldSuffixes {
				delete(r.Header, "X-Deplo-"+f)
			}
		}, ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := signedRequest(t, s1, tt.id, "POST", "/v1/workspaces/ws_1/projects/web/deploy/a%2Fb", testNow)
			if _, err := v.Verify(r, testNow); err != nil {
				t.Fatalf("untampered request refused: %v", err)
			}
			tt.tamper(r)
			got, err := v.Verify(r, testNow)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if got != (Identity{}) {
				t.Fatalf("identity %+v returned with an error", got)
			}
		})
	}
}

// TestNotCovered pins what the signature deliberately leaves out.
func TestNotCovered(t *testing.T) {
	s := mustSigner(t, "", testKey1)
	v := mustVerifier(t, "", testKey1)
	r := signedRequest(t, s, idWorkspace, "GET", "/v1/x?a=1", testNow)
	r.URL.RawQuery = "a=2"
	r.Host = "other.example"
	r.Header.Set("X-Other", "1")
	if _, err := v.Verify(r, testNow); err != nil {
		t.Fatalf("query, host and other headers are not signed, yet: %v", err)
	}
}

func TestAge(t *testing.T) {
	s := mustSigner(t, "", testKey1)
	tests := []struct {
		name    string
		maxAge  time.Duration
		maxSkew time.Duration
		offset  time.Duration // verification time - signing time
		err     error
	}{
		{"fresh", 0, 0, 0, nil},
		{"29s", 0, 0, 29 * time.Second, nil},
		{"exactly max age", 0, 0, 30 * time.Second, nil},
		{"max age and a bit", 0, 0, 30*time.Second + time.Millisecond, ErrExpired},
		{"31s", 0, 0, 31 * time.Second, ErrExpired},
		{"an hour", 0, 0, time.Hour, ErrExpired},
		{"future within skew", 0, 0, -5 * time.Second, nil},
		{"future beyond skew", 0, 0, -5*time.Second - time.Millisecond, ErrExpired},
		{"far future", 0, 0, -24 * time.Hour, ErrExpired},
		{"custom max age", 5 * time.Second, 0, 6 * time.Second, ErrExpired},
		{"custom max age ok", 5 * time.Second, 0, 5 * time.Second, nil},
		{"custom skew", 0, time.Second, -2 * time.Second, ErrExpired},
		{"custom skew ok", 0, time.Minute, -59 * time.Second, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := &Verifier{Keys: []Key{testKey1}, MaxAge: tt.maxAge, MaxSkew: tt.maxSkew}
			r := signedRequest(t, s, idWorkspace, "GET", "/v1/x", testNow)
			_, err := v.Verify(r, testNow.Add(tt.offset))
			if tt.err == nil && err != nil || !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
		})
	}
	// The timestamp is whole seconds, truncated: signed at .999 counts from .000.
	r := signedRequest(t, s, idWorkspace, "GET", "/v1/x", testNow.Add(999*time.Millisecond))
	if _, err := (&Verifier{Keys: []Key{testKey1}}).Verify(r, testNow.Add(30*time.Second+time.Millisecond)); !errors.Is(err, ErrExpired) {
		t.Fatalf("err = %v", err)
	}
}

func TestRotation(t *testing.T) {
	oldS := mustSigner(t, "", testKey1)
	newS := mustSigner(t, "", testKey2, testKey1) // signs with k2
	both := mustVerifier(t, "", testKey2, testKey1)
	onlyNew := mustVerifier(t, "", testKey2)
	onlyOld := mustVerifier(t, "", testKey1)
	tests := []struct {
		name string
		s    *Signer
		v    *Verifier
		err  error
	}{
		{"old key, both configured", oldS, both, nil},
		{"new key, both configured", newS, both, nil},
		{"new key, before the upstream has it", newS, onlyOld, ErrUnknownKey},
		{"old key, removed", oldS, onlyNew, ErrUnknownKey},
		{"new key, old removed", newS, onlyNew, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := signedRequest(t, tt.s, idProject, "GET", "/v1/x", testNow)
			_, err := tt.v.Verify(r, testNow)
			if tt.err == nil && err != nil || !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
		})
	}
}

func TestNoSignature(t *testing.T) {
	v := mustVerifier(t, "", testKey1)
	if _, err := v.Verify(httptest.NewRequest("GET", "/", nil), testNow); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("anonymous request: %v", err)
	}
	for _, f := range fieldSuffixes {
		r := headerRequest(map[string][]string{"X-Deplo-" + f: {"x"}})
		if _, err := v.Verify(r, testNow); !errors.Is(err, ErrNoSignature) {
			t.Fatalf("unsigned %s: %v", f, err)
		}
	}
}

func TestPrefix(t *testing.T) {
	s := mustSigner(t, "X-Gw-", testKey1)
	r := signedRequest(t, s, idProject, "GET", "/v1/x", testNow)
	if r.Header.Get("X-Gw-Signature") == "" || r.Header.Get("X-Deplo-Signature") != "" {
		t.Fatalf("headers: %v", r.Header)
	}
	got, err := mustVerifier(t, "x-gw-", testKey1).Verify(r, testNow)
	if err != nil || got != idProject {
		t.Fatalf("got %+v, %v", got, err)
	}
	if _, err := mustVerifier(t, "", testKey1).Verify(r, testNow); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("default prefix: %v", err)
	}
}

func TestConfig(t *testing.T) {
	sec := []byte(strings.Repeat("s", MinSecretLen))
	tests := []struct {
		name   string
		keys   []Key
		prefix string
		maxAge time.Duration
	}{
		{"no keys", nil, "", 0},
		{"empty id", []Key{{"", sec}}, "", 0},
		{"id with space", []Key{{"k 1", sec}}, "", 0},
		{"id with colon", []Key{{"k:1", sec}}, "", 0},
		{"id too long", []Key{{strings.Repeat("k", MaxKeyIDLen+1), sec}}, "", 0},
		{"short secret", []Key{{"k1", sec[1:]}}, "", 0},
		{"duplicate id", []Key{{"k1", sec}, {"k1", append(sec, 'x')}}, "", 0},
		{"bad prefix", []Key{{"k1", sec}}, "X Deplo-", 0},
		{"negative max age", []Key{{"k1", sec}}, "", -time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := &Verifier{Keys: tt.keys, Prefix: tt.prefix, MaxAge: tt.maxAge}
			if err := v.Validate(); !errors.Is(err, ErrConfig) {
				t.Fatalf("Verifier: %v", err)
			}
			if _, err := v.Verify(httptest.NewRequest("GET", "/", nil), testNow); !errors.Is(err, ErrConfig) {
				t.Fatalf("Verify: %v", err)
			}
			if tt.maxAge != 0 {
				return
			}
			if _, err := NewSigner(tt.prefix, tt.keys...); !errors.Is(err, ErrConfig) {
				t.Fatalf("NewSigner: %v", err)
			}
			s := &Signer{Keys: tt.keys, Prefix: tt.prefix}
			if _, err := s.Sign("GET", "/", idJWT, testNow); !errors.Is(err, ErrConfig) {
				t.Fatalf("Sign: %v", err)
			}
		})
	}
	// The secret is copied: changing the caller's slice changes nothing.
	k := Key{ID: "k1", Secret: append([]byte(nil), testKey1.Secret...)}
	s := mustSigner(t, "", k)
	k.Secret[0] ^= 1
	r := signedRequest(t, s, idJWT, "GET", "/", testNow)
	if _, err := mustVerifier(t, "", testKey1).Verify(r, testNow); err != nil {
		t.Fatal(err)
	}
}

func TestSignRequestRefuses(t *testing.T) {
	s := mustSigner(t, "", testKey1)
	base := func() *http.Request {
		r := httptest.NewRequest("GET", "/v1/x", nil)
		(Parser{}).SetHeaders(r.Header, idProject)
		return r
	}
	tests := []struct {
		name string
		edit func(*http.Request)
		err  error
	}{
		{"no identity", func(r *http.Request) { r.Header = http.Header{} }, ErrNoIdentity},
		{"no subject", func(r *http.Request) { r.Header.Del("X-Deplo-Subject") }, ErrNoIdentity},
		{"subject trailing space", func(r *http.Request) { r.Header.Set("X-Deplo-Subject", "tok_2 ") }, ErrMalformed},
		{"subject leading space", func(r *http.Request) { r.Header.Set("X-Deplo-Subject", " tok_2") }, ErrMalformed},
		{"subject with newline", func(r *http.Request) { r.Header.Set("X-Deplo-Subject", "a\nb") }, ErrMalformed},
		{"workspace with tab", func(r *http.Request) { r.Header.Set("X-Deplo-Workspace", "a\tb") }, ErrMalformed},
		{"two subjects", func(r *http.Request) { r.Header.Add("X-Deplo-Subject", "x") }, ErrMalformed},
		{"unknown auth", func(r *http.Request) { r.Header.Set("X-Deplo-Auth", "none") }, ErrMalformed},
		{"unknown scope", func(r *http.Request) { r.Header.Set("X-Deplo-Scopes", "root") }, ErrMalformed},
		{"unsorted scopes", func(r *http.Request) { r.Header.Set("X-Deplo-Scopes", "read deploy") }, ErrMalformed},
		{"bad method", func(r *http.Request) { r.Method = "GE T" }, ErrMalformed},
		{"opaque URL", func(r *http.Request) { r.URL = &url.URL{Opaque: "x"} }, ErrMalformed},
		{"no URL", func(r *http.Request) { r.URL = nil }, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := base()
			tt.edit(r)
			if err := s.SignRequest(r, testNow); !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if _, ok := r.Header["X-Deplo-Signature"]; ok {
				t.Fatal("signature set on a refused request")
			}
		})
	}
	// An outgoing client request: "" method is GET, "" path is "/".
	r := &http.Request{URL: &url.URL{Scheme: "http", Host: "up"}, Header: http.Header{}}
	(Parser{}).SetHeaders(r.Header, idJWT)
	if err := s.SignRequest(r, testNow); err != nil {
		t.Fatal(err)
	}
	want, _ := s.Sign("GET", "/", idJWT, testNow)
	if r.Header.Get("X-Deplo-Signature") != want {
		t.Fatal("empty method and path are not signed as GET /")
	}
	if _, err := s.Sign("GET", "/a b", idJWT, testNow); !errors.Is(err, ErrMalformed) {
		t.Fatalf("unescaped path: %v", err)
	}
	if _, err := s.Sign("GET", "", idJWT, testNow); !errors.Is(err, ErrMalformed) {
		t.Fatalf("empty path: %v", err)
	}
	if _, err := s.Sign("GET", "/", idJWT, time.Unix(-1, 0)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("time before 1970: %v", err)
	}
}

func TestParseSignature(t *testing.T) {
	const sig = "emsoyPAjTsYSh9z_p_C-VCjLln2NROgEbRdpf6H9WVw"
	ok := []string{
		"v1 kid=k ts=0 sig=" + sig,
		"v1 kid=gw-2026.01_A ts=1767225600 sig=" + sig,
		"v1 kid=" + strings.Repeat("k", 64) + " ts=999999999999999999 sig=" + sig,
	}
	for _, s := range ok {
		sh, err := parseSignature(s)
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		if formatSignature(sh) != s {
			t.Fatalf("%q formats back as %q", s, formatSignature(sh))
		}
	}
	bad := []string{
		"",
		"v1",
		"v1 kid=k ts=1 sig=" + sig + " ",
		" v1 kid=k ts=1 sig=" + sig,
		"V1 kid=k ts=1 sig=" + sig,
		"v1 kid= ts=1 sig=" + sig,
		"v1 kid=k/1 ts=1 sig=" + sig,
		"v1 kid=" + strings.Repeat("k", 65) + " ts=1 sig=" + sig,
		"v1 kid=k ts= sig=" + sig,
		"v1 kid=k ts=01 sig=" + sig,
		"v1 kid=k ts=-1 sig=" + sig,
		"v1 kid=k ts=+1 sig=" + sig,
		"v1 kid=k ts=1e3 sig=" + sig,
		"v1 kid=k ts=1000000000000000000 sig=" + sig,
		"v1 kid=k ts=1 sig=" + sig[1:],
		"v1 kid=k ts=1 sig=" + sig + "A",
		"v1 kid=k ts=1 sig=" + sig[:42] + "x",
		"v1 kid=k ts=1 sig=" + sig[:42] + "=",
		"v1 kid=k ts=1 sig=" + strings.Replace(sig, "_", "/", 1),
		"v1 kid=k sig=" + sig + " ts=1",
		"v1 ts=1 kid=k sig=" + sig,
		"v1 kid=k ts=1 sig=" + sig + " extra=1",
		"v1\tkid=k ts=1 sig=" + sig,
		"v1 kid=k ts=1  sig=" + sig,
	}
	for _, s := range bad {
		if _, err := parseSignature(s); !errors.Is(err, ErrMalformed) {
			t.Errorf("parseSignature(%q) = %v, want ErrMalformed", s, err)
		}
	}
}

func TestErrorsLeakNothing(t *testing.T) {
	s := mustSigner(t, "", testKey1)
	v := mustVerifier(t, "", testKey1)
	r := signedRequest(t, s, idWorkspace, "GET", "/", testNow)
	r.Header.Set("X-Deplo-Scopes", "secretish-scope")
	r.Header.Add("X-Deplo-Subject", "secretish-subject")
	_, err := v.Verify(r, testNow)
	if err == nil || strings.Contains(err.Error(), "secretish") || strings.Contains(err.Error(), string(testKey1.Secret)) {
		t.Fatalf("err = %v", err)
	}
}

func TestConcurrent(t *testing.T) {
	s := &Signer{Keys: []Key{testKey1}} // initialised lazily, concurrently
	v := &Verifier{Keys: []Key{testKey2, testKey1}}
	done := make(chan error)
	for g := 0; g < 8; g++ {
		go func() {
			var err error
			for i := 0; i < 200 && err == nil; i++ {
				id := Identity{Method: MethodAPIKey, Subject: "tok_" + strconv.Itoa(g) + "_" + strconv.Itoa(i), Scopes: ScopeSet(i % 16)}
				r := httptest.NewRequest("GET", "/v1/"+strconv.Itoa(i), nil)
				(Parser{}).SetHeaders(r.Header, id)
				if err = s.SignRequest(r, testNow); err == nil {
					var got Identity
					if got, err = v.Verify(r, testNow); err == nil && got != id {
						err = errors.New("identity mixed up between goroutines")
					}
				}
			}
			done <- err
		}()
	}
	for g := 0; g < 8; g++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// The MAC is computed from precomputed pads; it must be HMAC-SHA256 exactly,
// for keys shorter than, equal to and longer than SHA-256's block, and for
// canonical strings that do and do not fit the stack buffer.
func TestMACIsHMACSHA256(t *testing.T) {
	vals := [numFields]string{"api_key", "tok_1", "ws_acme", "weekly-report", "deploy read"}
	for _, keyLen := range []int{32, 63, 64, 65, 200} {
		secret := []byte(strings.Repeat("k", keyLen-1) + "!")
		ks := newKeyState(Key{ID: "k1", Secret: secret})
		for _, path := range []string{"/v1/x", "/" + strings.Repeat("p", 2000)} {
			got := ks.mac(1795756000, "POST", path, &vals)
			h := hmac.New(sha256.New, secret)
			h.Write(appendCanonical(nil, "k1", 1795756000, "POST", path, &vals))
			if want := h.Sum(nil); !hmac.Equal(got[:], want) {
				t.Errorf("key of %d bytes, path of %d: MAC differs from crypto/hmac", keyLen, len(path))
			}
		}
	}
}
