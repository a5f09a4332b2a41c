package keystore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// testHash returns the hash of a made-up token name and its stored form.
func testHash(name string) (Hash, string) {
	h := Hash(sha256.Sum256([]byte(name)))
	return h, "sha256:" + hex.EncodeToString(h[:])
}

var (
	hashA, hexA = testHash("sk_live_a")
	hashB, hexB = testHash("sk_live_b")
)

// hexRun matches anything that looks like (part of) a hash value.
var hexRun = regexp.MustCompile(`[0-9a-fA-F]{16,}`)

func validDoc() string {
	return `{
  "tokens": [
    {
      "id": "tok_4kq9v2m8x1",
      "name": "My Agent",
      "hash": "` + hexA + `",
      "workspace": "ws_acme",
      "project": "weekly-report",
      "scopes": ["deploy"],
      "created_at": "2026-11-26T10:00:00Z",
      "expires_at": null,
      "revoked_at": null
    },
    {
      "id": "tok_b",
      "hash": "` + hexB + `",
      "workspace": "ws_acme",
      "project": null,
      "scopes": ["read", "future-scope"],
      "created_at": "2026-11-26T10:00:00.5+01:00",
      "expires_at": "2027-01-01T00:00:00Z",
      "revoked_at": "2026-12-01T00:00:00Z"
    }
  ]
}
`
}

func TestParseValid(t *testing.T) {
	kf, tokens, err := parseKeyFile("/keys.json", []byte(validDoc()))
	if err != nil {
		t.Fatal(err)
	}
	if len(kf.Tokens) != 2 || len(tokens) != 2 {
		t.Fatalf("got %d entries, %d tokens; want 2, 2", len(kf.Tokens), len(tokens))
	}
	a := tokens[hashA]
	if a == nil || a.ID != "tok_4kq9v2m8x1" || a.Name != "My Agent" || a.Workspace != "ws_acme" ||
		a.Project != "weekly-report" || len(a.Scopes) != 1 || a.Scopes[0] != "deploy" ||
		!a.CreatedAt.Equal(time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)) ||
		!a.ExpiresAt.IsZero() || !a.RevokedAt.IsZero() || a.Hash != hashA {
		t.Errorf("token a = %+v", a)
	}
	b := tokens[hashB]
	if b == nil || b.ID != "tok_b" || b.Project != "" || b.Name != "" ||
		strings.Join(b.Scopes, ",") != "read,future-scope" ||
		!b.CreatedAt.Equal(time.Date(2026, 11, 26, 9, 0, 0, 5e8, time.UTC)) ||
		!b.ExpiresAt.Equal(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)) ||
		!b.RevokedAt.Equal(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("token b = %+v", b)
	}
	e := kf.Find("tok_b")
	if e == nil || e.Project != nil || e.ExpiresAt == nil || e.RevokedAt == nil || e.Hash != hexB {
		t.Errorf("entry b = %+v", e)
	}
	if kf.Find("tok_4kq9v2m8x1").Project == nil {
		t.Error("entry a lost its project")
	}

	for _, doc := range []string{`{"tokens": []}`, "  {\"tokens\":[]}\n\n"} {
		kf, tokens, err := parseKeyFile("/keys.json", []byte(doc))
		if err != nil || len(kf.Tokens) != 0 || len(tokens) != 0 {
			t.Errorf("%q: %v, %v, %v", doc, kf, tokens, err)
		}
	}
}

func TestParseInvalid(t *testing.T) {
	valid := validDoc()
	// edit replaces old (which must occur once in the valid document).
	edit := func(old, new string) string {
		if strings.Count(valid, old) != 1 {
			panic("edit: " + old)
		}
		return strings.Replace(valid, old, new, 1)
	}
	tests := []struct {
		name string
		doc  string
		want []string // substrings of the error
	}{
		{"not JSON", `tokens: []`, []string{"not valid JSON"}},
		{"empty file", ``, []string{"not valid JSON"}},
		{"truncated", valid[:len(valid)/2], []string{"not valid JSON"}},
		{"trailing garbage", valid + "x", []string{"after the document"}},
		{"second document", valid + `{"tokens": []}`, []string{"after the document"}},
		{"not an object", `[]`, []string{"want a JSON object"}},
		{"null document", `null`, []string{"want a JSON object"}},
		{"tokens missing", `{}`, []string{"tokens: missing"}},
		{"tokens null", `{"tokens": null}`, []string{"tokens: missing or null"}},
		{"tokens not array", `{"tokens": {}}`, []string{"tokens: want an array"}},
		{"unknown top-level field", `{"tokens": [], "version": 2}`, []string{`unknown field "version"`}},
		{"top-level field case", `{"Tokens": []}`, []string{`unknown field "Tokens"`}},
		{"top-level duplicate", `{"tokens": [], "tokens": []}`, []string{`"tokens" appears more than once`}},
		{"entry not object", `{"tokens": ["x"]}`, []string{"token 0: want a JSON object"}},
		{"created_by field case", edit(`"id": "tok_b",`, `"id": "tok_b", "created_by": {"Kind": "operator"},`),
			[]string{`token 1 (id "tok_b")`, `created_by`, `unknown field "Kind"`}},
		{"created_by unknown kind", edit(`"id": "tok_b",`, `"id": "tok_b", "created_by": {"kind": "root"},`),
			[]string{`token 1 (id "tok_b")`, `created_by: kind`}},
		{"created_by api_key without id", edit(`"id": "tok_b",`, `"id": "tok_b", "created_by": {"kind": "api_key"},`),
			[]string{`created_by: id`}},
		{"created_by not an object", edit(`"id": "tok_b",`, `"id": "tok_b", "created_by": "me",`),
			[]string{`created_by: got JSON string`}},
		{"unknown entry field", edit(`"id": "tok_b",`, `"id": "tok_b", "revoked": true,`),
			[]string{`token 1 (id "tok_b")`, `unknown field "revoked"`}},
		{"entry field case", edit(`"id": "tok_b",`, `"id": "tok_b", "Revoked_At": null,`),
			[]string{`token 1 (id "tok_b")`, `unknown field "Revoked_At"`}},
		{"entry duplicate field", edit(`"revoked_at": "2026-12-01T00:00:00Z"`,
			`"revoked_at": "2026-12-01T00:00:00Z", "revoked_at": null`),
			[]string{`token 1 (id "tok_b")`, `"revoked_at" appears more than once`}},
		{"duplicate id", edit(`"id": "tok_b"`, `"id": "tok_4kq9v2m8x1"`),
			[]string{`token 1 (id "tok_4kq9v2m8x1"): id: duplicate of token 0`}},
		{"duplicate hash", edit(hexB, hexA),
			[]string{`token 1 (id "tok_b"): hash: same hash as token 0`}},
		{"uppercase hex", edit(hexB, hexB[:7]+strings.ToUpper(hexB[7:])),
			[]string{`token 1 (id "tok_b"): hash: want "sha256:" followed by 64 lowercase hex characters`}},
		{"uppercase prefix", edit(hexB, "SHA256:"+hexB[7:]),
			[]string{`token 1 (id "tok_b"): hash: want "sha256:"`}},
		{"short hash", edit(hexB, hexB[:len(hexB)-1]),
			[]string{`token 1 (id "tok_b"): hash: want "sha256:"`}},
		{"long hash", edit(hexB, hexB+"0"),
			[]string{`token 1 (id "tok_b"): hash: want "sha256:"`}},
		{"hash without prefix", edit(hexB, hexB[7:]),
			[]string{`token 1 (id "tok_b"): hash: want "sha256:"`}},
		{"missing hash", edit(`"hash": "`+hexB+`",`, ``),
			[]string{`token 1 (id "tok_b"): hash: missing`}},
		{"hash not string", edit(`"`+hexB+`"`, `12`),
			[]string{`token 1 (id "tok_b"): hash: got JSON number, want a string`}},
		{"raw token as hash", edit(hexB, "sk_live_abcdefabcdefabcdefabcdefabcdef"),
			[]string{`token 1 (id "tok_b"): hash: want "sha256:"`}},
		{"missing workspace", edit(`"workspace": "ws_acme",
      "project": null`, `"project": null`),
			[]string{`token 1 (id "tok_b"): workspace: missing or empty`}},
		{"empty workspace", edit(`"workspace": "ws_acme",
      "project": null`, `"workspace": "", "project": null`),
			[]string{`token 1 (id "tok_b"): workspace: missing or empty`}},
		{"missing id", edit(`"id": "tok_b",`, ``), []string{`token 1: id: missing or empty`}},
		{"id not string", edit(`"id": "tok_b",`, `"id": 7,`), []string{`token 1: id: got JSON number, want a string`}},
		{"raw token as id", edit(`"id": "tok_b",`, `"id": "sk_live_abcdefabcdefabcdef0123",`),
			[]string{`token 1: id: looks like an API token`}},
		{"empty project", edit(`"project": null`, `"project": ""`),
			[]string{`token 1 (id "tok_b"): project: empty`}},
		{"bad time", edit(`"2026-12-01T00:00:00Z"`, `"2026-12-01 00:00:00"`),
			[]string{`token 1 (id "tok_b"): revoked_at: not an RFC 3339 time`}},
		{"time without zone", edit(`"expires_at": "2027-01-01T00:00:00Z"`, `"expires_at": "2027-01-01T00:00:00"`),
			[]string{`token 1 (id "tok_b"): expires_at: not an RFC 3339 time`}},
		{"time as number", edit(`"expires_at": "2027-01-01T00:00:00Z"`, `"expires_at": 1798761600`),
			[]string{`token 1 (id "tok_b"): expires_at: got JSON number, want an RFC 3339 time string or null`}},
		{"zero time", edit(`"2026-12-01T00:00:00Z"`, `"0001-01-01T00:00:00Z"`),
			[]string{`token 1 (id "tok_b"): revoked_at: the zero time`}},
		{"missing created_at", edit(`"created_at": "2026-11-26T10:00:00Z",`, ``),
			[]string{`token 0 (id "tok_4kq9v2m8x1"): created_at: missing`}},
		{"empty scope string", edit(`["read", "future-scope"]`, `["read", ""]`),
			[]string{`token 1 (id "tok_b"): scopes[1]: want a non-empty string`}},
		{"null scope", edit(`["read", "future-scope"]`, `[null, "read"]`),
			[]string{`token 1 (id "tok_b"): scopes[0]: want a non-empty string`}},
		{"scopes not array", edit(`["read", "future-scope"]`, `"read"`),
			[]string{`token 1 (id "tok_b"): scopes: got JSON string, want an array of strings`}},
		{"scope not string", edit(`["read", "future-scope"]`, `["read", 3]`),
			[]string{`token 1 (id "tok_b"): scopes: got JSON number`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kf, tokens, err := parseKeyFile("/etc/deplo/keys.json", []byte(tt.doc))
			if err == nil {
				t.Fatalf("no error; got %d tokens", len(tokens))
			}
			if kf != nil || tokens != nil {
				t.Error("returned contents with an error")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "keys file /etc/deplo/keys.json: ") {
				t.Errorf("error does not name the file: %s", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q\n does not contain %q", msg, w)
				}
			}
			if hexRun.MatchString(msg) || strings.Contains(msg, "sk_live") {
				t.Errorf("error echoes a hash or token: %s", msg)
			}
		})
	}
}

func TestParseTooBig(t *testing.T) {
	big := make([]byte, MaxFileSize+1)
	if _, _, err := parseKeyFile("/k", big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("err = %v", err)
	}
}

func TestActive(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	past, future := now.Add(-time.Second), now.Add(time.Second)
	tests := []struct {
		name             string
		expires, revoked time.Time
		want             bool
	}{
		{"no times", time.Time{}, time.Time{}, true},
		{"revoked in the past", time.Time{}, past, false},
		{"revoked now", time.Time{}, now, false},
		{"revocation scheduled", time.Time{}, future, true},
		{"expired", past, time.Time{}, false},
		{"expires now", now, time.Time{}, false},
		{"expires later", future, time.Time{}, true},
		{"both future", future, future, true},
		{"expires later, revoked", future, past, false},
		{"expired, revocation scheduled", past, future, false},
	}
	for _, tt := range tests {
		tok := &Token{ID: "tok_x", ExpiresAt: tt.expires, RevokedAt: tt.revoked}
		if got := tok.Status(now) == TokenActive; got != tt.want {
			t.Errorf("%s: Active = %v, want %v", tt.name, got, tt.want)
		}
	}
	if (*Token)(nil).Status(now) == TokenActive {
		t.Error("nil token is active")
	}
}

func TestHashForms(t *testing.T) {
	if s := FormatHash(hashA); s != hexA {
		t.Fatalf("FormatHash = %s, want %s", s, hexA)
	}
	h, err := ParseHash(hexA)
	if err != nil || h != hashA {
		t.Fatalf("ParseHash = %x, %v", h, err)
	}
	for _, bad := range []string{"", "sha256:", hexA[7:], strings.ToUpper(hexA), hexA[:70] + "g",
		hexA + " ", " " + hexA, "sha512:" + hexA[7:]} {
		if _, err := ParseHash(bad); err == nil {
			t.Errorf("ParseHash(%q) succeeded", bad)
		} else if hexRun.MatchString(err.Error()) {
			t.Errorf("error echoes the value: %v", err)
		}
	}
}

func TestNewTokenID(t *testing.T) {
	re := regexp.MustCompile(`^tok_[0-9a-z]{10}$`)
	seen := map[string]bool{}
	chars := map[rune]bool{}
	for range 2000 {
		id, err := NewTokenID()
		if err != nil {
			t.Fatal(err)
		}
		if !re.MatchString(id) {
			t.Fatalf("id %q", id)
		}
		if seen[id] {
			t.Fatalf("duplicate id %q", id)
		}
		seen[id] = true
		for _, c := range id[4:] {
			chars[c] = true
		}
	}
	if len(chars) != 36 {
		t.Errorf("ids use %d distinct characters, want 36", len(chars))
	}
}

func newEntry(id, name string) TokenEntry {
	_, h := testHash("sk_live_" + id)
	return TokenEntry{
		ID: id, Name: name, Hash: h, Workspace: "ws_acme", Scopes: []string{"deploy"},
		CreatedAt: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC),
	}
}

func TestReadKeyFileMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	kf, err := ReadKeyFile(path)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want fs.ErrNotExist", err)
	}
	if kf == nil || len(kf.Tokens) != 0 {
		t.Fatalf("kf = %+v, want empty", kf)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error does not name the file: %v", err)
	}
	if err := UpdateKeyFile(path, false, func(*KeyFile) error { return nil }); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("UpdateKeyFile without create on a missing file: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("file was created: %v", err)
	}
}

func TestUpdateKeyFileCreates(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.json")
	e := newEntry("tok_a", "Agent")
	expires := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	project := "weekly-report"
	e2 := newEntry("tok_b", "")
	e2.Project, e2.ExpiresAt, e2.Scopes = &project, &expires, nil
	err := UpdateKeyFile(path, true, func(kf *KeyFile) error {
		kf.Tokens = append(kf.Tokens, e, e2)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
	}
	data, _ := os.ReadFile(path)
	text := string(data)
	for _, want := range []string{`"expires_at": null`, `"revoked_at": null`, `"created_at": "2026-11-26T10:00:00Z"`,
		`"project": "weekly-report"`, `"scopes": []`, `"expires_at": "2027-01-01T00:00:00Z"`} {
		if !strings.Contains(text, want) {
			t.Errorf("written file lacks %s:\n%s", want, text)
		}
	}
	if strings.Count(text, `"project"`) != 1 {
		t.Errorf("workspace-scoped entry has a project field:\n%s", text)
	}
	kf, err := ReadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(kf.Tokens) != 2 || kf.Tokens[0].ID != "tok_a" || kf.Tokens[0].Project != nil ||
		*kf.Tokens[1].Project != project || !kf.Tokens[1].ExpiresAt.Equal(expires) {
		t.Errorf("read back %+v", kf.Tokens)
	}
	assertNoTemp(t, dir)
}

// The key file is written 0600 whatever its old mode, through the API's
// FileTokenManager as through UpdateKeyFile (the CLI).
func TestUpdateKeyFileWrites0600(t *testing.T) {
	for _, old := range []os.FileMode{0o644, 0o640, 0o666, 0o604, 0o600} {
		for _, via := range []string{"UpdateKeyFile", "FileTokenManager"} {
			path := filepath.Join(t.TempDir(), "keys.json")
			if err := os.WriteFile(path, []byte(`{"tokens": []}`), old); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, old); err != nil {
				t.Fatal(err)
			}
			var err error
			if via == "UpdateKeyFile" {
				err = UpdateKeyFile(path, false, func(kf *KeyFile) error {
					kf.Tokens = append(kf.Tokens, newEntry("tok_a", ""))
					return nil
				})
			} else {
				err = (&FileTokenManager{Path: path}).CreateToken(context.Background(), newEntry("tok_a", ""))
			}
			if err != nil {
				t.Fatal(err)
			}
			if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
				t.Errorf("%s over a %v file: mode %v, want 0600", via, old, fi.Mode().Perm())
			}
		}
	}
}

func TestUpdateKeyFileFollowsSymlink(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real.json")
	link := filepath.Join(dir, "keys.json")
	if err := os.WriteFile(real, []byte(`{"tokens": []}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real.json", link); err != nil {
		t.Skip("no symlinks:", err)
	}
	err := UpdateKeyFile(link, false, func(kf *KeyFile) error {
		kf.Tokens = append(kf.Tokens, newEntry("tok_a", ""))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Fatalf("link replaced: %v %v", fi, err)
	}
	if kf, err := ReadKeyFile(real); err != nil || len(kf.Tokens) != 1 {
		t.Fatalf("target: %v %v", kf, err)
	}
}

func TestUpdateKeyFileFailureWritesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.json")
	if err := UpdateKeyFile(path, true, func(kf *KeyFile) error {
		kf.Tokens = append(kf.Tokens, newEntry("tok_a", "a"))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	fiBefore, _ := os.Stat(path)

	errBoom := errors.New("boom")
	err := UpdateKeyFile(path, false, func(kf *KeyFile) error {
		kf.Tokens = append(kf.Tokens, newEntry("tok_b", "b"))
		kf.Tokens[0].Name = "changed"
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("err = %v, want the fn error", err)
	}

	invalid := map[string]func(*KeyFile){
		"duplicate id":    func(kf *KeyFile) { kf.Tokens = append(kf.Tokens, newEntry("tok_a", "again")) },
		"bad hash":        func(kf *KeyFile) { kf.Tokens[0].Hash = strings.ToUpper(kf.Tokens[0].Hash) },
		"no workspace":    func(kf *KeyFile) { kf.Tokens[0].Workspace = "" },
		"empty project":   func(kf *KeyFile) { p := ""; kf.Tokens[0].Project = &p },
		"empty scope":     func(kf *KeyFile) { kf.Tokens[0].Scopes = []string{""} },
		"zero revoked_at": func(kf *KeyFile) { kf.Tokens[0].RevokedAt = &time.Time{} },
	}
	for name, mod := range invalid {
		err := UpdateKeyFile(path, false, func(kf *KeyFile) error { mod(kf); return nil })
		if err == nil {
			t.Errorf("%s: written", name)
		} else if !strings.Contains(err.Error(), "token 0") && !strings.Contains(err.Error(), "token 1") {
			t.Errorf("%s: error does not name the entry: %v", name, err)
		}
	}

	after, _ := os.ReadFile(path)
	fiAfter, _ := os.Stat(path)
	if string(after) != string(before) || !os.SameFile(fiBefore, fiAfter) {
		t.Errorf("file changed:\n%s\n->\n%s", before, after)
	}
	assertNoTemp(t, dir)
}

func TestUpdateKeyFileConcurrent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.json")
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			errs <- UpdateKeyFile(path, true, func(kf *KeyFile) error {
				// Widen the read-modify-write window so a missing lock
				// loses updates.
				time.Sleep(2 * time.Millisecond)
				kf.Tokens = append(kf.Tokens, newEntry(fmt.Sprintf("tok_%02d", i), ""))
				return nil
			})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	kf, err := ReadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(kf.Tokens) != n {
		t.Fatalf("%d tokens, want %d", len(kf.Tokens), n)
	}
	for i := range n {
		if kf.Find(fmt.Sprintf("tok_%02d", i)) == nil {
			t.Errorf("tok_%02d missing", i)
		}
	}
	assertNoTemp(t, dir)
}

// assertNoTemp fails if a temporary file was left in dir.
func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
}

// TestEntrySchemaNamesTheFields: entrySchema, the names the strict checks
// allow, is the field list of TokenEntry (written) and of rawEntry (read),
// in order, so a field added to one and not the others fails here.
func TestEntrySchemaNamesTheFields(t *testing.T) {
	tags := func(v any) []string {
		var names []string
		rt := reflect.TypeOf(v)
		for i := range rt.NumField() {
			name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
			names = append(names, name)
		}
		return names
	}
	for _, typ := range []any{TokenEntry{}, rawEntry{}} {
		if got := tags(typ); !slices.Equal(got, entryFields) {
			t.Errorf("%T fields %q, entrySchema %q", typ, got, entryFields)
		}
	}
	for _, f := range entrySchema {
		if fieldWant(f.name) != f.want || f.want == "" {
			t.Errorf("field %q: want %q", f.name, fieldWant(f.name))
		}
	}
}
