package identity

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

func FuzzParseSignature(f *testing.F) {
	for _, s := range []string{
		"v1 kid=gw-2026-01 ts=1767225600 sig=emsoyPAjTsYSh9z_p_C-VCjLln2NROgEbRdpf6H9WVw",
		"v1 kid=k ts=0 sig=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"v1 kid=k ts=01 sig=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB",
		"v1 kid= ts= sig=",
		"v2 kid=k ts=1 sig=x",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sh, err := parseSignature(s)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		// One spelling per signature: what parses formats back to itself.
		if got := formatSignature(sh); got != s {
			t.Fatalf("%q parsed, formats back as %q", s, got)
		}
		if !validKeyID(sh.kid) || sh.ts < 0 || len(sh.sig) != sigTextLen {
			t.Fatalf("accepted %+v", sh)
		}
		if _, err := b64.DecodeString(sh.sig); err != nil {
			t.Fatalf("accepted sig %q: %v", sh.sig, err)
		}
	})
}

func FuzzFromRequest(f *testing.F) {
	f.Add("api_key", "tok_1", "ws_1", "web", "deploy read", uint8(0))
	f.Add("jwt", "josé", "", "", "", uint8(0))
	f.Add("jwt", "u", "w", "", "admin delete deploy read", uint8(1))
	f.Add("api_key", "t\n", "w", "", "read deploy", uint8(0))
	f.Add("basic", "", " w", "p ", "root", uint8(31))
	f.Fuzz(func(t *testing.T, auth, subject, workspace, project, scopes string, dup uint8) {
		r := httptest.NewRequest("GET", "/", nil)
		vals := [numFields]string{auth, subject, workspace, project, scopes}
		for i, v := range vals {
			r.Header[defaultNames.fields[i]] = []string{v}
			if dup&(1<<i) != 0 {
				r.Header[defaultNames.fields[i]] = append(r.Header[defaultNames.fields[i]], v)
			}
		}
		id, err := FromRequest(r)
		if err != nil {
			if !errors.Is(err, ErrNoIdentity) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is neither ErrNoIdentity nor ErrMalformed", err)
			}
			if id != (Identity{}) {
				t.Fatal("identity returned with an error")
			}
			return
		}
		if dup&0x1f != 0 {
			t.Fatal("accepted a header with two values")
		}
		if id.Method != auth || id.Subject != subject || id.Workspace != workspace || id.Project != project || id.Scopes.String() != scopes {
			t.Fatalf("%+v does not restate %q", id, vals)
		}
		for _, v := range vals {
			if checkValue(v) != nil {
				t.Fatalf("accepted value %q", v)
			}
		}
		for _, name := range []string{"read", "deploy", "delete", "admin"} {
			bit, _ := ParseScope(name)
			if id.HasScope(name) != (id.Scopes&(bit|ScopeAdmin) != 0) {
				t.Fatalf("HasScope(%q) wrong for %v", name, id.Scopes)
			}
		}
		// Whatever parses, the gateway can sign and the upstream verifies
		// back to the same identity.
		h := http.Header{}
		if err := (Parser{}).SetHeaders(h, id); err != nil {
			t.Fatal(err)
		}
		r2 := httptest.NewRequest("GET", "/x", nil)
		r2.Header = h
		if err := fuzzSigner.SignRequest(r2, testNow); err != nil {
			t.Fatal(err)
		}
		got, err := fuzzVerifier.Verify(r2, testNow)
		if err != nil || got != id {
			t.Fatalf("round trip: %+v, %v; want %+v", got, err, id)
		}
	})
}

var (
	fuzzSigner   = &Signer{Keys: []Key{testKey1}}
	fuzzVerifier = &Verifier{Keys: []Key{testKey1, testKey2}}
)

// FuzzVerifyTamper replaces one part of a signed request with fuzzed data:
// Verify must refuse anything but the signed value (or, for the optional
// headers, its equivalent: absent for empty).
func FuzzVerifyTamper(f *testing.F) {
	f.Add(uint8(0), "jwt", false)
	f.Add(uint8(1), "tok_3", false)
	f.Add(uint8(2), "", true)
	f.Add(uint8(3), "web", false)
	f.Add(uint8(4), "admin deploy read", false)
	f.Add(uint8(5), "DELETE", false)
	f.Add(uint8(6), "/v1/workspaces/ws_1/projects/web/deploy%2F", false)
	f.Add(uint8(7), "v1 kid=k2 ts=1767225600 sig=emsoyPAjTsYSh9z_p_C-VCjLln2NROgEbRdpf6H9WVw", false)
	const target = "/v1/workspaces/ws_1/projects/web/deploy"
	f.Fuzz(func(t *testing.T, part uint8, val string, remove bool) {
		r := httptest.NewRequest("POST", target, nil)
		(Parser{}).SetHeaders(r.Header, idProject)
		if err := fuzzSigner.SignRequest(r, testNow); err != nil {
			t.Fatal(err)
		}
		orig := r.Header.Clone()
		switch p := int(part % 8); {
		case p < numFields:
			name := defaultNames.fields[p]
			if remove {
				delete(r.Header, name)
			} else {
				r.Header[name] = []string{val}
			}
			id, err := fuzzVerifier.Verify(r, testNow)
			if err == nil {
				before := ""
				if vs := orig[name]; len(vs) > 0 {
					before = vs[0]
				}
				after := ""
				if !remove {
					after = val
				}
				if before != after || id != idProject {
					t.Fatalf("accepted %s %q (signed %q): %+v", name, after, before, id)
				}
			}
		case p == 5:
			r.Method = val
			if _, err := fuzzVerifier.Verify(r, testNow); err == nil && val != "POST" {
				t.Fatalf("accepted method %q", val)
			}
		case p == 6:
			u, err := url.ParseRequestURI(val)
			if err != nil {
				return
			}
			r.URL = u
			if _, err := fuzzVerifier.Verify(r, testNow); err == nil && u.EscapedPath() != target {
				t.Fatalf("accepted path %q", u.EscapedPath())
			}
		default:
			if remove {
				r.Header["X-Deplo-Signature"] = append(r.Header["X-Deplo-Signature"], val)
			} else {
				r.Header["X-Deplo-Signature"] = []string{val}
			}
			if _, err := fuzzVerifier.Verify(r, testNow); err == nil && (remove || val != orig.Get("X-Deplo-Signature")) {
				t.Fatalf("accepted signature %q", r.Header["X-Deplo-Signature"])
			}
		}
	})
}
