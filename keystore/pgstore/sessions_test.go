package pgstore

import (
	"context"
	"testing"
	"time"

	"github.com/deplo-sh/deplo-auth/internal/testwait"
)

func TestPostgresSessions(t *testing.T) {
	e := newPGEnv(t, true)
	e.exec(t, `INSERT INTO deplo_revoked_sessions (session_id, expires_at) VALUES
		('sess_before', NULL), ('sess_expired', now() - interval '1 minute')`)
	s := e.open(t, Options{})
	admin := e.open(t, Options{})
	if !s.SessionRevoked("sess_before") {
		t.Error("session revoked before open not loaded")
	}
	if s.SessionRevoked("sess_expired") || s.SessionRevoked("sess_other") {
		t.Error("expired or unknown session reported revoked")
	}

	// Revoked through another store: this one learns it by notification.
	start := time.Now()
	if err := admin.RevokeSession(context.Background(), "sess_1", time.Now().Add(15*time.Minute)); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, time.Second, "session revoked", func() bool { return s.SessionRevoked("sess_1") })
	t.Logf("session revocation seen after %v", time.Since(start))

	// Revoking again keeps it revoked.
	if err := admin.RevokeSession(context.Background(), "sess_1", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := admin.RevokeSession(context.Background(), "", time.Time{}); err == nil {
		t.Error("empty session id accepted")
	}

	// A future revoked_at schedules it.
	e.exec(t, `INSERT INTO deplo_revoked_sessions (session_id, revoked_at) VALUES ('sess_later', now() + interval '400 milliseconds')`)
	e.exec(t, `INSERT INTO deplo_revoked_sessions (session_id) VALUES ('sess_marker')`)
	testwait.For(t, time.Second, "marker session loaded", func() bool { return s.SessionRevoked("sess_marker") })
	if s.SessionRevoked("sess_later") {
		t.Error("session revoked before its revoked_at")
	}
	testwait.For(t, 2*time.Second, "scheduled revocation", func() bool { return s.SessionRevoked("sess_later") })

	// Deleted: no longer revoked.
	e.exec(t, `DELETE FROM deplo_revoked_sessions WHERE session_id = 'sess_1'`)
	testwait.For(t, time.Second, "deleted session dropped", func() bool { return !s.SessionRevoked("sess_1") })
}

// TestPostgresSessionsDeaf: while the listener hears nothing, a session
// revoked elsewhere is in force within the poll interval, as a token is.
func TestPostgresSessionsDeaf(t *testing.T) {
	e := newPGEnv(t, true)
	const poll = 200 * time.Millisecond
	s := e.open(t, Options{Poll: poll, deafen: func() bool { return true }})
	admin := e.open(t, Options{AdminOnly: true})
	for i := range 3 {
		start := time.Now()
		id := "sess_deaf_" + string(rune('a'+i))
		if err := admin.RevokeSession(context.Background(), id, time.Now().Add(15*time.Minute)); err != nil {
			t.Fatal(err)
		}
		// Ten polls: room for a loaded machine, and far below the old
		// five-second reload.
		testwait.For(t, 10*poll, "session revoked with a deaf listener", func() bool { return s.SessionRevoked(id) })
		t.Logf("in force after %v", time.Since(start).Round(time.Millisecond))
	}
}
