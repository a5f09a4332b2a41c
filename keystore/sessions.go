package keystore

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/deplo-sh/deplo-auth/internal/redact"
)

// SessionDenylist reports whether a dashboard session has been revoked, so
// that its JWTs are refused before they expire. SessionRevoked is an
// in-memory check (an atomic load and a map lookup): it never blocks on I/O
// and is safe for concurrent use.
//
// FileStore serves the key file's "revoked_sessions" list; pgstore.Store
// serves the deplo_revoked_sessions table, kept current by notifications.
type SessionDenylist interface {
	SessionRevoked(id string) bool
}

var _ SessionDenylist = (*FileStore)(nil)

// RevokedSession is one entry of the key file's "revoked_sessions" list.
// A session is revoked from RevokedAt on (a time in the future schedules
// the revocation). ExpiresAt, if set, is when the session would have
// expired anyway: after it the entry may be removed; it is written as null
// when nil.
type RevokedSession struct {
	ID        string     `json:"id"`
	RevokedAt time.Time  `json:"revoked_at"`
	ExpiresAt *time.Time `json:"expires_at"`
}

// SessionSet is an immutable set of revoked session ids, each with the
// instant its revocation takes effect (the zero time: always). The stores
// swap a new set in on each reload; a nil set revokes nothing.
type SessionSet struct {
	revokedAt map[string]time.Time
}

// NoSessions is the set with no revoked session.
var NoSessions = &SessionSet{}

// NewSessionSet returns the set of the given sessions, each revoked from its
// instant on. The set keeps revokedAt; the caller must not modify it after.
func NewSessionSet(revokedAt map[string]time.Time) *SessionSet {
	if len(revokedAt) == 0 {
		return NoSessions
	}
	return &SessionSet{revokedAt: revokedAt}
}

// Revoked reports whether id is revoked at now.
func (s *SessionSet) Revoked(id string, now time.Time) bool {
	if s == nil || len(s.revokedAt) == 0 {
		return false
	}
	at, ok := s.revokedAt[id]
	return ok && !now.Before(at)
}

// Len returns the number of sessions in the set.
func (s *SessionSet) Len() int {
	if s == nil {
		return 0
	}
	return len(s.revokedAt)
}

// newSessionSet builds the set of a key file's revoked sessions. Entries
// past their expires_at are kept: such a session's tokens have expired
// anyway, and answering "revoked" for them is the safe side.
func newSessionSet(list []RevokedSession) *SessionSet {
	m := make(map[string]time.Time, len(list))
	for _, r := range list {
		m[r.ID] = r.RevokedAt
	}
	return NewSessionSet(m)
}

// SessionRevoked reports whether the dashboard session id is listed in the
// key file's "revoked_sessions" with a revoked_at at or before now. It
// follows hot reloads of the file.
func (s *FileStore) SessionRevoked(id string) bool {
	return s.snap.Load().sessions.Revoked(id, time.Now())
}

// sessionFields are the JSON field names of one revoked_sessions entry.
var sessionFields = []string{"id", "revoked_at", "expires_at"}

// parseRevokedSessions validates the key file's "revoked_sessions" entries
// with the strictness of the token entries: exactly spelled, known fields
// only, each once; a non-empty id, unique in the list; revoked_at an RFC
// 3339 time; expires_at an RFC 3339 time or null.
func parseRevokedSessions(raws []json.RawMessage) ([]RevokedSession, error) {
	if len(raws) == 0 {
		return nil, nil
	}
	out := make([]RevokedSession, 0, len(raws))
	ids := make(map[string]int, len(raws))
	for i, raw := range raws {
		fail := func(id, field, msg string) ([]RevokedSession, error) {
			return nil, &entryError{"revoked session", i, redact.ID(id), field, msg}
		}
		var probe struct {
			ID any `json:"id"`
		}
		_ = json.Unmarshal(raw, &probe)
		probeID, _ := probe.ID.(string)

		if err := checkKeys(raw, sessionFields, false); err != nil {
			return fail(probeID, "", err.Error())
		}
		var r rawSession
		if err := decodeStrict(raw, &r); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				want := "an RFC 3339 time string"
				switch te.Field {
				case "id":
					want = "a string"
				case "expires_at":
					want = "an RFC 3339 time string or null"
				}
				return fail(probeID, te.Field, fmt.Sprintf("got JSON %s, want %s", te.Value, want))
			}
			return fail(probeID, "", err.Error())
		}
		e, err := sessionFromRaw(i, &r, ids)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// rawSession is what one revoked_sessions entry is decoded into (see
// rawEntry).
type rawSession struct {
	ID        string  `json:"id"`
	RevokedAt *string `json:"revoked_at"`
	ExpiresAt *string `json:"expires_at"`
}

// sessionFromRaw applies the rules to decoded revoked session i; ids holds
// the index of each id seen before it.
func sessionFromRaw(i int, r *rawSession, ids map[string]int) (RevokedSession, error) {
	fail := func(id, field, msg string) (RevokedSession, error) {
		return RevokedSession{}, &entryError{"revoked session", i, redact.ID(id), field, msg}
	}
	if r.ID == "" {
		return fail("", "id", "missing or empty")
	}
	if j, dup := ids[r.ID]; dup {
		return fail(r.ID, "id", fmt.Sprintf("duplicate of revoked session %d", j))
	}
	ids[r.ID] = i
	revoked, err := parseTime(r.RevokedAt, true)
	if err != nil {
		return fail(r.ID, "revoked_at", err.Error())
	}
	e := RevokedSession{ID: r.ID, RevokedAt: revoked}
	if r.ExpiresAt != nil {
		expires, err := parseTime(r.ExpiresAt, false)
		if err != nil {
			return fail(r.ID, "expires_at", err.Error())
		}
		e.ExpiresAt = &expires
	}
	return e, nil
}

// checkSessions applies the rules of revoked_sessions to a list built in
// memory.
func checkSessions(list []RevokedSession) error {
	ids := make(map[string]int, len(list))
	for i, rs := range list {
		fail := func(field, msg string) error {
			return &entryError{"revoked session", i, redact.ID(rs.ID), field, msg}
		}
		if rs.ID == "" {
			return fail("id", "missing or empty")
		}
		if j, dup := ids[rs.ID]; dup {
			return fail("id", fmt.Sprintf("duplicate of revoked session %d", j))
		}
		ids[rs.ID] = i
		if rs.RevokedAt.IsZero() {
			return fail("revoked_at", errZeroTime.Error())
		}
		if rs.ExpiresAt != nil && rs.ExpiresAt.IsZero() {
			return fail("expires_at", errZeroTime.Error())
		}
	}
	return nil
}
