package keystore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// parseCorpus holds documents on both sides of the rules, many of them meant
// to fool a one-pass parse: names spelled with escapes or in another case,
// repeated names, entries that are not objects, strings holding braces.
func parseCorpus() []string {
	entry := func(fields string) string {
		return `{"tokens": [{"id": "tok_a", "hash": "` + hexA + `", "workspace": "ws", "scopes": ["read"], ` +
			`"created_at": "2026-11-26T10:00:00Z"` + fields + `}]}`
	}
	return []string{
		validDoc(),
		docWithSessions(`[{"id": "sess_1", "revoked_at": "2026-11-26T10:00:00Z", "expires_at": null}]`),
		docWithSessions(`null`),
		docWithSessions(`[]`),
		docWithSessions(`[null]`),
		docWithSessions(`[{"\u0069d": "sess_1", "revoked_at": "2026-11-26T10:00:00Z"}]`),
		docWithSessions(`[{"id": "sess_1", "revoked_at": "2026-11-26T10:00:00Z", "ID": "sess_2"}]`),
		entry(``),
		entry(`, "name": "a}\"{,[]\\\"", "project": "p"`),
		entry(`, "revoked_at": null, "expires_at": "2027-01-01T00:00:00.123456789+02:00"`),
		entry(`, "\u0069d": "tok_b"`),
		entry(`, "ID": "tok_b"`),
		entry(`, "id": "tok_b"`),
		entry(`, "name": null`),
		entry(`, "project": null`),
		entry(`, "project": ""`),
		entry(`, "project": {"a": [1, {"b": "}"}]}`),
		entry(`, "scopes": null`),
		entry(`, "expires_at": "0001-01-01T00:00:00Z"`),
		entry(`, "created_by": {"kind": "api_key", "id": "tok_p"}, "rotated_from": "tok_o"`),
		entry(`, "created_by": {"kind": "jwt", "subject": "user_1", "session": "sid_1"}`),
		entry(`, "created_by": {"kind": "operator"}`),
		entry(`, "created_by": null`),
		entry(`, "created_by": {"Kind": "operator"}`),
		entry(`, "created_by": {"kind": "operator", "kind": "api_key", "id": "tok_p"}`),
		entry(`, "created_by": {"kind": "operator", "extra": 1}`),
		entry(`, "created_by": {"k\u0069nd": "operator"}`),
		entry(`, "created_by": {"kind": "api_key"}`),
		entry(`, "created_by": {"kind": "root"}`),
		entry(`, "created_by": "operator"`),
		entry(`, "rotated_from": "sk_live_x"`),
		`{"tokens": [null]}`,
		`{"tokens": [[]]}`,
		`{"tokens": [], "tokens": []}`,
		`{"tokens": [], "Tokens": []}`,
		`{"tok\u0065ns": []}`,
		`{"tokens": null}`,
		`{"tokens": []} {}`,
		`{"tokens": []}` + "\n",
		` {"tokens": [] , "revoked_sessions" : null } `,
		`null`,
		`{}`,
		`[]`,
		`"tokens"`,
		`{"tokens": [{}]}`,
		`{"tokens": [{"id": "tok_a", "id": "tok_a"}]}`,
	}
}

// TestParseFastAgreesWithSlow checks that the one-pass parse gives the
// entry-by-entry parse's answer whenever it answers, and that it answers
// for the documents a store meets every day.
func TestParseFastAgreesWithSlow(t *testing.T) {
	for _, doc := range parseCorpus() {
		assertFastAgrees(t, []byte(doc))
	}
	for _, doc := range []string{validDoc(), parseCorpus()[1], `{"tokens": []}`} {
		if _, _, _, ok := parseFast([]byte(doc)); !ok {
			t.Errorf("the one-pass parse gives up on a valid document:\n%s", doc)
		}
	}
	if _, _, err, ok := parseFast([]byte(`{"tokens": [{"id": "tok_a", "ID": "x"}]}`)); ok {
		t.Errorf("the one-pass parse answered (%v) for a name in another case", err)
	}
}

func FuzzParseFastAgreesWithSlow(f *testing.F) {
	for _, doc := range parseCorpus() {
		f.Add([]byte(doc))
	}
	f.Fuzz(func(t *testing.T, data []byte) { assertFastAgrees(t, data) })
}

func assertFastAgrees(t *testing.T, data []byte) {
	t.Helper()
	kf, tokens, err, ok := parseFast(data)
	if !ok {
		return
	}
	wantKF, wantTokens, wantErr := parseSlow(data)
	if (err == nil) != (wantErr == nil) || (err != nil && err.Error() != wantErr.Error()) {
		t.Fatalf("%s\none-pass parse: %v\nentry by entry: %v", data, err, wantErr)
	}
	if !reflect.DeepEqual(kf, wantKF) || !reflect.DeepEqual(tokens, wantTokens) {
		t.Fatalf("%s\none-pass parse: %+v\nentry by entry: %+v", data, kf, wantKF)
	}
}

// TestMarshalKeyFileAsEncodingJSON checks the hand-written encoder against
// encoding/json, which wrote the file before it.
func TestMarshalKeyFileAsEncodingJSON(t *testing.T) {
	project := "weekly-report"
	nano := time.Date(2026, 11, 26, 10, 0, 0, 123456789, time.FixedZone("", 90*60))
	past := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	odd := newEntry("tok_odd", "quote \" backslash \\ <html> & \b\f\n\r\t\x00\x1f é \u2028\u2029 bad \xff\xfe end")
	odd.Scopes = []string{"deploy", "\x7f", "日本"}
	odd.Project = &project
	odd.ExpiresAt, odd.RevokedAt = &nano, &past
	noScopes := newEntry("tok_none", "")
	noScopes.Scopes = nil
	odd.CreatedBy = &Creator{Kind: CreatorAPIKey, ID: "tok_\"p"}
	odd.RotatedFrom = "tok_<old>"
	noScopes.CreatedBy = &Creator{Kind: CreatorJWT, Subject: "user_1", Session: "sid\n1"}
	jwtOnly := newEntry("tok_j", "j")
	jwtOnly.CreatedBy = &Creator{Kind: CreatorJWT, Subject: "user_2"}
	for _, kf := range []*KeyFile{
		{},
		{Tokens: []TokenEntry{newEntry("tok_a", "a")}},
		{Tokens: []TokenEntry{odd, noScopes, jwtOnly, {ID: "tok_e", Scopes: []string{}}}},
		{Tokens: []TokenEntry{newEntry("tok_a", "a")}, RevokedSessions: []RevokedSession{
			{ID: "sess_1", RevokedAt: past}, {ID: "sess_\"2", RevokedAt: nano, ExpiresAt: &nano}}},
		{RevokedSessions: []RevokedSession{}},
	} {
		got, err := marshalKeyFile(kf)
		if err != nil {
			t.Fatal(err)
		}
		if want := encodeKeyFileReflect(t, kf); !bytes.Equal(got, want) {
			t.Errorf("marshalKeyFile:\n%s\nencoding/json:\n%s", got, want)
		}
	}
	year := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	e := newEntry("tok_y", "y")
	e.ExpiresAt = &year
	if _, err := marshalKeyFile(&KeyFile{Tokens: []TokenEntry{e}}); err == nil {
		t.Error("a time RFC 3339 cannot write was encoded")
	}
}

// encodeKeyFileReflect is the encoding marshalKeyFile replaced.
func encodeKeyFileReflect(t *testing.T, kf *KeyFile) []byte {
	out := KeyFile{Tokens: make([]TokenEntry, len(kf.Tokens)), RevokedSessions: kf.RevokedSessions}
	for i, e := range kf.Tokens {
		if e.Scopes == nil {
			e.Scopes = []string{}
		}
		out.Tokens[i] = e
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestCheckKeyFileAsParse checks that a document built in memory is refused
// exactly when its written form would be, with the same message.
func TestCheckKeyFileAsParse(t *testing.T) {
	zero := time.Time{}
	empty := ""
	for name, mod := range map[string]func(*KeyFile){
		"valid":               func(*KeyFile) {},
		"duplicate id":        func(kf *KeyFile) { kf.Tokens[1].ID = kf.Tokens[0].ID },
		"duplicate hash":      func(kf *KeyFile) { kf.Tokens[1].Hash = kf.Tokens[0].Hash },
		"secret id":           func(kf *KeyFile) { kf.Tokens[1].ID = "sk_live_x" },
		"no id":               func(kf *KeyFile) { kf.Tokens[1].ID = "" },
		"bad hash":            func(kf *KeyFile) { kf.Tokens[1].Hash = strings.ToUpper(kf.Tokens[1].Hash) },
		"no hash":             func(kf *KeyFile) { kf.Tokens[1].Hash = "" },
		"no workspace":        func(kf *KeyFile) { kf.Tokens[1].Workspace = "" },
		"empty project":       func(kf *KeyFile) { kf.Tokens[1].Project = &empty },
		"empty scope":         func(kf *KeyFile) { kf.Tokens[1].Scopes = []string{"read", ""} },
		"zero created_at":     func(kf *KeyFile) { kf.Tokens[1].CreatedAt = zero },
		"zero expires_at":     func(kf *KeyFile) { kf.Tokens[1].ExpiresAt = &zero },
		"zero revoked_at":     func(kf *KeyFile) { kf.Tokens[1].RevokedAt = &zero },
		"no session id":       func(kf *KeyFile) { kf.RevokedSessions[1].ID = "" },
		"duplicate session":   func(kf *KeyFile) { kf.RevokedSessions[1].ID = kf.RevokedSessions[0].ID },
		"zero session time":   func(kf *KeyFile) { kf.RevokedSessions[1].RevokedAt = zero },
		"zero session expiry": func(kf *KeyFile) { kf.RevokedSessions[1].ExpiresAt = &zero },
	} {
		kf := &KeyFile{
			Tokens: []TokenEntry{newEntry("tok_a", "a"), newEntry("tok_b", "b")},
			RevokedSessions: []RevokedSession{{ID: "sess_1", RevokedAt: time.Now()},
				{ID: "sess_2", RevokedAt: time.Now()}},
		}
		mod(kf)
		tokens, err := checkKeyFile(kf)
		data, merr := marshalKeyFile(kf)
		if merr != nil {
			t.Fatal(merr)
		}
		_, wantTokens, wantErr := parse(data)
		if (err == nil) != (wantErr == nil) || (err != nil && err.Error() != wantErr.Error()) {
			t.Errorf("%s: in memory: %v; written and parsed: %v", name, err, wantErr)
		}
		if len(tokens) != len(wantTokens) {
			t.Errorf("%s: %d tokens in memory, %d parsed", name, len(tokens), len(wantTokens))
		}
	}
}

// BenchmarkParseKeyFile times one strict parse of a file of 10,000 tokens
// (at start, after a change made by hand or by another process): the
// one-pass parse, and the entry-by-entry one it falls back on to explain a
// refusal.
func BenchmarkParseKeyFile(b *testing.B) {
	kf := &KeyFile{}
	for i := range 10000 {
		kf.Tokens = append(kf.Tokens, newEntry(fmt.Sprintf("tok_seed%06d", i), "seeded"))
	}
	data, err := marshalKeyFile(kf)
	if err != nil {
		b.Fatal(err)
	}
	for _, p := range []struct {
		name  string
		parse func([]byte) (*KeyFile, map[Hash]*Token, error)
	}{{"one-pass", parse}, {"entry-by-entry", parseSlow}} {
		b.Run(p.name, func(b *testing.B) {
			for b.Loop() {
				if _, _, err := p.parse(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
