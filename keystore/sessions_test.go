package keystore

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deplo-sh/deplo-auth/internal/testwait"
)

// docWithSessions returns a key file with one token and the given
// "revoked_sessions" value (raw JSON), or without the field if empty.
func docWithSessions(sessions string) string {
	doc := `{"tokens": [{"id": "tok_a", "hash": "` + hexA + `", "workspace": "ws", "scopes": ["read"],
		"created_at": "2026-11-26T10:00:00Z", "expires_at": null, "revoked_at": null}]`
	if sessions != "" {
		doc += `, "revoked_sessions": ` + sessions
	}
	return doc + "}"
}

func TestParseRevokedSessions(t *testing.T) {
	kf, _, err := parseKeyFile("/k", []byte(docWithSessions(`[
		{"id": "sess_1", "revoked_at": "2026-11-26T10:00:00Z", "expires_at": null},
		{"id": "sess_2", "revoked_at": "2026-11-26T11:00:00+01:00", "expires_at": "2026-11-26T10:15:00Z"},
		{"id": "sess_3", "revoked_at": "2026-11-26T10:00:00Z"}
	]`)))
	if err != nil {
		t.Fatal(err)
	}
	rs := kf.RevokedSessions
	if len(rs) != 3 || rs[0].ID != "sess_1" || rs[0].ExpiresAt != nil ||
		!rs[1].RevokedAt.Equal(time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)) ||
		rs[1].ExpiresAt == nil || !rs[1].ExpiresAt.Equal(time.Date(2026, 11, 26, 10, 15, 0, 0, time.UTC)) ||
		rs[2].ExpiresAt != nil {
		t.Errorf("parsed %+v", rs)
	}
	for _, s := range []string{"", "null", "[]"} {
		kf, _, err := parseKeyFile("/k", []byte(docWithSessions(s)))
		if err != nil || len(kf.RevokedSessions) != 0 {
			t.Errorf("revoked_sessions %q: %v, %v", s, kf, err)
		}
	}
}

func TestParseRevokedSessionsInvalid(t *testing.T) {
	const ok = `"revoked_at": "2026-11-26T10:00:00Z"`
	for _, tt := range []struct{ sessions, want string }{
		{`{}`, "revoked_sessions: want an array"},
		{`"sess_1"`, "revoked_sessions: want an array"},
		{`[1]`, "revoked session 0: want a JSON object"},
		{`[{"id": "sess_1", ` + ok + `, "reason": "x"}]`, `revoked session 0 (id "sess_1"): unknown field "reason"`},
		{`[{"id": "sess_1", ` + ok + `, "ID": "x"}]`, `unknown field "ID"`},
		{`[{"id": "sess_1", "id": "sess_2", ` + ok + `}]`, `field "id" appears more than once`},
		{`[{` + ok + `}]`, "revoked session 0: id: missing or empty"},
		{`[{"id": "", ` + ok + `}]`, "revoked session 0: id: missing or empty"},
		{`[{"id": 7, ` + ok + `}]`, "revoked session 0: id: got JSON number, want a string"},
		{`[{"id": "a", ` + ok + `}, {"id": "b", ` + ok + `}, {"id": "a", ` + ok + `}]`,
			`revoked session 2 (id "a"): id: duplicate of revoked session 0`},
		{`[{"id": "sess_1"}]`, `revoked session 0 (id "sess_1"): revoked_at: missing or null`},
		{`[{"id": "sess_1", "revoked_at": null}]`, `revoked_at: missing or null`},
		{`[{"id": "sess_1", "revoked_at": "yesterday"}]`, `revoked_at: not an RFC 3339 time`},
		{`[{"id": "sess_1", "revoked_at": 5}]`, `revoked_at: got JSON number`},
		{`[{"id": "sess_1", ` + ok + `, "expires_at": "soon"}]`, `expires_at: not an RFC 3339 time`},
		{`[{"id": "sess_1", ` + ok + `, "expires_at": "0001-01-01T00:00:00Z"}]`, `expires_at: the zero time`},
		{`[{"id": "sk_live_abc", ` + ok + `, "x": 1}]`, `revoked session 0: unknown field`},
	} {
		_, _, err := parseKeyFile("/k", []byte(docWithSessions(tt.sessions)))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("revoked_sessions %s: err = %v, want it to contain %q", tt.sessions, err, tt.want)
		}
	}
}

func TestKeyFileSessionsRoundTrip(t *testing.T) {
	// Without sessions the file has no such field (backwards compatible).
	data, err := marshalKeyFile(&KeyFile{Tokens: []TokenEntry{newEntry("tok_a", "")}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "revoked_sessions") {
		t.Errorf("empty list written:\n%s", data)
	}

	exp := time.Date(2026, 11, 26, 10, 15, 0, 0, time.UTC)
	in := []RevokedSession{
		{ID: "sess_1", RevokedAt: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)},
		{ID: "sess_2", RevokedAt: time.Date(2026, 11, 26, 10, 1, 0, 0, time.UTC), ExpiresAt: &exp},
	}
	path := filepath.Join(t.TempDir(), "keys.json")
	if err := UpdateKeyFile(path, true, func(kf *KeyFile) error {
		kf.RevokedSessions = in
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	if !strings.Contains(string(raw), `"expires_at": null`) {
		t.Errorf("a nil expires_at is not written as null:\n%s", raw)
	}
	// Another edit keeps them.
	if err := UpdateKeyFile(path, false, func(kf *KeyFile) error {
		kf.Tokens = append(kf.Tokens, newEntry("tok_b", ""))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	kf, err := ReadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(kf.RevokedSessions) != 2 || kf.RevokedSessions[1].ExpiresAt == nil || !kf.RevokedSessions[1].ExpiresAt.Equal(exp) ||
		!kf.RevokedSessions[0].RevokedAt.Equal(in[0].RevokedAt) {
		t.Errorf("round trip: %+v", kf.RevokedSessions)
	}
	// Invalid sessions are refused at write time, nothing written.
	err = UpdateKeyFile(path, false, func(kf *KeyFile) error {
		kf.RevokedSessions = append(kf.RevokedSessions, RevokedSession{ID: "sess_1", RevokedAt: time.Now()})
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "duplicate") {
		t.Errorf("duplicate session written: %v", err)
	}
}

func TestFileStoreSessionRevoked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	write := func(sessions ...RevokedSession) {
		t.Helper()
		data, err := marshalKeyFile(&KeyFile{Tokens: []TokenEntry{newEntry("tok_a", "")}, RevokedSessions: sessions})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-time.Hour).Truncate(time.Second)
	write(RevokedSession{ID: "sess_1", RevokedAt: past})
	s, err := OpenFile(path, FileOptions{PollInterval: testPoll})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var dl SessionDenylist = s
	if !dl.SessionRevoked("sess_1") || dl.SessionRevoked("sess_2") || dl.SessionRevoked("") {
		t.Error("initial set wrong")
	}

	// Hot reload: added, and one scheduled a moment ahead.
	later := time.Now().Add(1500 * time.Millisecond).Truncate(time.Millisecond)
	write(RevokedSession{ID: "sess_1", RevokedAt: past}, RevokedSession{ID: "sess_2", RevokedAt: past},
		RevokedSession{ID: "sess_later", RevokedAt: later})
	testwait.For(t, 2*time.Second, "sess_2 revoked after reload", func() bool { return s.SessionRevoked("sess_2") })
	if time.Now().Before(later) && s.SessionRevoked("sess_later") {
		t.Error("revoked before its revoked_at")
	}
	testwait.For(t, 3*time.Second, "scheduled revocation", func() bool { return s.SessionRevoked("sess_later") })
	if time.Now().Before(later) {
		t.Error("revoked before its revoked_at")
	}

	// Removed from the file: no longer revoked.
	write(RevokedSession{ID: "sess_2", RevokedAt: past})
	testwait.For(t, 2*time.Second, "sess_1 dropped after reload", func() bool { return !s.SessionRevoked("sess_1") })
	if !s.SessionRevoked("sess_2") {
		t.Error("sess_2 lost")
	}

	// A bad file keeps the last good set.
	if err := os.WriteFile(path, []byte(docWithSessions(`[{"id": "sess_9"}]`)), 0o600); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 2*time.Second, "reload failure reported", func() bool { _, err := s.LastReload(); return err != nil })
	if !s.SessionRevoked("sess_2") || s.SessionRevoked("sess_9") {
		t.Error("a bad file changed the set")
	}
}

func TestSessionSetNil(t *testing.T) {
	var s *SessionSet
	if s.Revoked("x", time.Now()) || s.Len() != 0 || NoSessions.Revoked("x", time.Now()) {
		t.Error("empty sets revoke")
	}
	set := newSessionSet([]RevokedSession{{ID: "a"}}) // zero revoked_at: always
	if !set.Revoked("a", time.Time{}) {
		t.Error("zero revoked_at not in force")
	}
}
