package identity

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func TestFromRequest(t *testing.T) {
	full := map[string][]string{
		"X-Deplo-Auth": {"api_key"}, "X-Deplo-Subject": {"tok_1"}, "X-Deplo-Workspace": {"ws_1"},
		"X-Deplo-Project": {"web"}, "X-Deplo-Scopes": {"delete deploy read"},
	}
	with := func(name string, vs ...string) map[string][]string {
		h := map[string][]string{}
		for n, v := range full {
			h[n] = v
		}
		if vs == nil {
			delete(h, name)
		} else {
			h[name] = vs
		}
		return h
	}
	tests := []struct {
		name string
		h    map[string][]string
		want Identity
		err  error
	}{
		{"full", full, Identity{MethodAPIKey, "tok_1", "ws_1", "web", ScopeDelete | ScopeDeploy | ScopeRead}, nil},
		{"minimal", map[string][]string{"X-Deplo-Auth": {"jwt"}, "X-Deplo-Subject": {"u"}}, Identity{Method: MethodJWT, Subject: "u"}, nil},
		{"empty scopes header", with("X-Deplo-Scopes", ""), Identity{MethodAPIKey, "tok_1", "ws_1", "web", 0}, nil},
		{"empty workspace header is absent", with("X-Deplo-Workspace", ""), Identity{MethodAPIKey, "tok_1", "", "web", ScopeDelete | ScopeDeploy | ScopeRead}, nil},
		{"no project", with("X-Deplo-Project"), Identity{MethodAPIKey, "tok_1", "ws_1", "", ScopeDelete | ScopeDeploy | ScopeRead}, nil},
		{"utf8 subject", with("X-Deplo-Subject", "josé"), Identity{MethodAPIKey, "josé", "ws_1", "web", ScopeDelete | ScopeDeploy | ScopeRead}, nil},
		{"all scopes", with("X-Deplo-Scopes", "admin delete deploy read"), Identity{MethodAPIKey, "tok_1", "ws_1", "web", allScopes}, nil},

		{"nothing", map[string][]string{}, Identity{}, ErrNoIdentity},
		{"no auth", with("X-Deplo-Auth"), Identity{}, ErrNoIdentity},
		{"no subject", with("X-Deplo-Subject"), Identity{}, ErrNoIdentity},
		{"empty subject", with("X-Deplo-Subject", ""), Identity{}, ErrNoIdentity},
		{"empty auth", with("X-Deplo-Auth", ""), Identity{}, ErrNoIdentity},

		{"unknown auth", with("X-Deplo-Auth", "basic"), Identity{}, ErrMalformed},
		{"auth case", with("X-Deplo-Auth", "API_KEY"), Identity{}, ErrMalformed},
		{"two auth values", with("X-Deplo-Auth", "api_key", "jwt"), Identity{}, ErrMalformed},
		{"two equal subjects", with("X-Deplo-Subject", "tok_1", "tok_1"), Identity{}, ErrMalformed},
		{"two workspaces", with("X-Deplo-Workspace", "ws_1", "ws_2"), Identity{}, ErrMalformed},
		{"two projects", with("X-Deplo-Project", "web", "api"), Identity{}, ErrMalformed},
		{"two scopes values", with("X-Deplo-Scopes", "read", "admin"), Identity{}, ErrMalformed},
		{"unknown scope", with("X-Deplo-Scopes", "read root"), Identity{}, ErrMalformed},
		{"unsorted scopes", with("X-Deplo-Scopes", "read deploy"), Identity{}, ErrMalformed},
		{"repeated scope", with("X-Deplo-Scopes", "read read"), Identity{}, ErrMalformed},
		{"double space", with("X-Deplo-Scopes", "deploy  read"), Identity{}, ErrMalformed},
		{"trailing space", with("X-Deplo-Scopes", "read "), Identity{}, ErrMalformed},
		{"leading space", with("X-Deplo-Scopes", " read"), Identity{}, ErrMalformed},
		{"comma", with("X-Deplo-Scopes", "deploy,read"), Identity{}, ErrMalformed},
		{"upper-case scope", with("X-Deplo-Scopes", "READ"), Identity{}, ErrMalformed},
		{"tab in scopes", with("X-Deplo-Scopes", "deploy\tread"), Identity{}, ErrMalformed},
		{"newline in subject", with("X-Deplo-Subject", "tok_1\nX-Deplo-Scopes: admin"), Identity{}, ErrMalformed},
		{"NUL in workspace", with("X-Deplo-Workspace", "ws\x00"), Identity{}, ErrMalformed},
		{"DEL in project", with("X-Deplo-Project", "web\x7f"), Identity{}, ErrMalformed},
		{"subject too long", with("X-Deplo-Subject", strings.Repeat("a", MaxValueLen+1)), Identity{}, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromRequest(headerRequest(tt.h))
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				if got != (Identity{}) {
					t.Fatalf("identity %+v returned with an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParserPrefix(t *testing.T) {
	r := headerRequest(map[string][]string{"X-Gw-Auth": {"jwt"}, "X-Gw-Subject": {"u1"}, "X-Gw-Scopes": {"read"}})
	got, err := Parser{Prefix: "x-gw-"}.FromRequest(r)
	if err != nil || got != (Identity{Method: MethodJWT, Subject: "u1", Scopes: ScopeRead}) {
		t.Fatalf("got %+v, %v", got, err)
	}
	if _, err := FromRequest(r); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("default prefix read other headers: %v", err)
	}
	if err := (Parser{Prefix: "X-Gw-"}).Validate(); err != nil {
		t.Fatal(err)
	}
	if err := (Parser{Prefix: "X Gw-"}).Validate(); !errors.Is(err, ErrConfig) {
		t.Fatalf("bad prefix: %v", err)
	}
	if _, err := (Parser{Prefix: "X Gw-"}).FromRequest(r); !errors.Is(err, ErrConfig) {
		t.Fatalf("bad prefix: %v", err)
	}
}

func TestSetHeaders(t *testing.T) {
	h := http.Header{"X-Deplo-Project": {"stale"}, "X-Deplo-Signature": {"stale"}, "Other": {"kept"}}
	if err := (Parser{}).SetHeaders(h, idWorkspace); err != nil {
		t.Fatal(err)
	}
	want := http.Header{"X-Deplo-Auth": {"api_key"}, "X-Deplo-Subject": {"tok_1"}, "X-Deplo-Workspace": {"ws_1"},
		"X-Deplo-Scopes": {"deploy read"}, "Other": {"kept"}}
	if !reflect.DeepEqual(h, want) {
		t.Fatalf("got %v, want %v", h, want)
	}
	h = http.Header{}
	(Parser{}).SetHeaders(h, Identity{Method: MethodJWT, Subject: "u"})
	if vs, ok := h["X-Deplo-Scopes"]; !ok || len(vs) != 1 || vs[0] != "" {
		t.Fatalf("Scopes must be present and empty: %v", h)
	}
	for _, bad := range []Identity{
		{Method: "basic", Subject: "u"},
		{Method: MethodJWT},
		{Method: MethodJWT, Subject: "u "},
		{Method: MethodJWT, Subject: "u", Workspace: "a\rb"},
		{Method: MethodJWT, Subject: "u", Scopes: 0x10},
	} {
		if err := (Parser{}).SetHeaders(http.Header{}, bad); err == nil {
			t.Errorf("SetHeaders(%+v) accepted", bad)
		}
	}
}

func TestHasScope(t *testing.T) {
	tests := []struct {
		have ScopeSet
		name string
		want bool
	}{
		{ScopeRead, "read", true},
		{ScopeRead, "deploy", false},
		{ScopeDeploy, "read", false},
		{ScopeDelete, "deploy", false},
		{ScopeDeploy, "delete", false},
		{ScopeDeploy | ScopeRead, "admin", false},
		{ScopeRead | ScopeDeploy | ScopeDelete, "admin", false},
		{ScopeAdmin, "read", true},
		{ScopeAdmin, "deploy", true},
		{ScopeAdmin, "delete", true},
		{ScopeAdmin, "admin", true},
		{0, "read", false},
		{0, "admin", false},
		{ScopeAdmin, "write", false},
		{ScopeAdmin, "", false},
		{ScopeAdmin, "Read", false},
		{allScopes, "read ", false},
	}
	for _, tt := range tests {
		id := Identity{Method: MethodJWT, Subject: "u", Scopes: tt.have}
		if got := id.HasScope(tt.name); got != tt.want {
			t.Errorf("%q.HasScope(%q) = %v, want %v", tt.have, tt.name, got, tt.want)
		}
	}
}

func TestProjectScoped(t *testing.T) {
	if idWorkspace.ProjectScoped() || !idProject.ProjectScoped() || idJWT.ProjectScoped() {
		t.Fatal("ProjectScoped wrong")
	}
}

func TestScopeSet(t *testing.T) {
	for s := ScopeSet(0); s <= allScopes; s++ {
		str := s.String()
		got, err := ParseScopes(str)
		if err != nil || got != s {
			t.Fatalf("ParseScopes(%q) = %v, %v; want %v", str, got, err, s)
		}
		if strings.Join(s.Names(), " ") != str {
			t.Fatalf("Names(%v) = %v, String %q", s, s.Names(), str)
		}
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		var back ScopeSet
		if err := json.Unmarshal(b, &back); err != nil || back != s {
			t.Fatalf("JSON %s -> %v, %v", b, back, err)
		}
	}
	if b, _ := json.Marshal(ScopeSet(0)); string(b) != "[]" {
		t.Fatalf("empty set JSON = %s", b)
	}
	if b, _ := json.Marshal(Identity{Method: "jwt", Subject: "u", Scopes: ScopeDeploy | ScopeRead}); string(b) != `{"method":"jwt","subject":"u","scopes":["deploy","read"]}` {
		t.Fatalf("identity JSON = %s", b)
	}
	var s ScopeSet
	if err := json.Unmarshal([]byte(`["read","root"]`), &s); !errors.Is(err, ErrMalformed) {
		t.Fatalf("unknown scope in JSON: %v", err)
	}
	if !(ScopeAdmin).Satisfies(ScopeDelete|ScopeRead) || (ScopeRead).Satisfies(ScopeDeploy) || !(ScopeRead | ScopeDeploy).Satisfies(ScopeRead) {
		t.Fatal("Satisfies wrong")
	}
}

func TestParseKeys(t *testing.T) {
	sec := strings.Repeat("s", MinSecretLen)
	keys, err := ParseKeys(" k1:" + sec + ":with:colons , k2:" + sec + "\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []Key{{"k1", []byte(sec + ":with:colons")}, {"k2", []byte(sec)}}
	if !reflect.DeepEqual(keys, want) {
		t.Fatalf("got %q", keys)
	}
	for _, bad := range []string{
		"",
		"   ",
		"k1",
		"k1:" + sec[1:],
		":" + sec,
		"k 1:" + sec,
		"k1:" + sec + ",k1:" + sec,
		"k1:" + sec + ",",
		strings.Repeat("k", MaxKeyIDLen+1) + ":" + sec,
	} {
		if _, err := ParseKeys(bad); !errors.Is(err, ErrConfig) {
			t.Errorf("ParseKeys(%q) = %v, want ErrConfig", bad, err)
		} else if strings.Contains(err.Error(), sec[:8]) {
			t.Errorf("error leaks the secret: %v", err)
		}
	}
}

func TestFromContext(t *testing.T) {
	if _, ok := FromContext(t.Context()); ok {
		t.Fatal("identity in a bare context")
	}
	got, ok := FromContext(NewContext(t.Context(), idProject))
	if !ok || got != idProject {
		t.Fatalf("got %+v, %v", got, ok)
	}
}
