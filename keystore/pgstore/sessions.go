package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"go.uber.org/zap"

	"github.com/deplo-sh/deplo-auth/keystore"
)

// SessionRevoked reports whether the dashboard session id is in
// deplo_revoked_sessions with revoked_at at or before now (and expires_at
// null or in the future as of the last reload). It is an in-memory check;
// the set is reloaded on each "sessions" notification, after a listener
// reconnect, and every few minutes.
func (s *Store) SessionRevoked(id string) bool {
	return s.sessions.Load().Revoked(id, time.Now())
}

// RevokeSession revokes a dashboard session now. expiresAt, if not zero, is
// when the session would expire anyway; the row is not needed after it.
// Revoking a revoked session keeps the earlier revoked_at and sets
// expires_at. The change reaches every store on the database by
// notification.
func (s *Store) RevokeSession(ctx context.Context, id string, expiresAt time.Time) error {
	if id == "" {
		return errors.New("keystore: revoke session: empty session id")
	}
	var exp *time.Time
	if !expiresAt.IsZero() {
		exp = &expiresAt
	}
	// The session's lock (see sessionLockKey) orders this against a token
	// being created by the session: that create sees the revocation, or
	// commits before it.
	err := s.inTx(ctx, "revoke session", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, sessionLockKey, id); err != nil {
			return fmt.Errorf("keystore: revoke session: %w", err)
		}
		_, err := tx.Exec(ctx, `INSERT INTO deplo_revoked_sessions (session_id, expires_at) VALUES ($1, $2)
ON CONFLICT (session_id) DO UPDATE SET
	revoked_at = LEAST(deplo_revoked_sessions.revoked_at, EXCLUDED.revoked_at),
	expires_at = EXCLUDED.expires_at`, id, exp)
		if err != nil {
			return fmt.Errorf("keystore: revoke session: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.triggerSessionReload()
	return nil
}

// triggerSessionReload asks the session goroutine to reload the set.
func (s *Store) triggerSessionReload() {
	if !s.sessionsEnabled {
		return
	}
	select {
	case s.sessionsReload <- struct{}{}:
	default: // one is already pending; it will read the latest rows
	}
}

// sessionLoop reloads the revoked-session set when asked, every
// sessionRefresh, and after a failure with backoff.
func (s *Store) sessionLoop() {
	defer s.wg.Done()
	refresh := time.NewTicker(sessionRefresh)
	defer refresh.Stop()
	var retry <-chan time.Time
	delay := time.Second
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.sessionsReload:
		case <-refresh.C:
		case <-retry:
		}
		err := s.loadSessions(s.ctx)
		if err == nil {
			retry, delay = nil, time.Second
			continue
		}
		if s.ctx.Err() != nil {
			return
		}
		s.log.Warn("postgres key store: reloading revoked sessions failed; keeping the last set",
			zap.Duration("retry_in", delay), zap.Error(scrub(err, s.secrets)))
		retry = time.After(delay)
		delay = min(2*delay, listenMaxBackoff)
	}
}

// loadSessions reads the revoked sessions still in force and swaps them in.
func (s *Store) loadSessions(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, backgroundTimeout)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT session_id, revoked_at FROM deplo_revoked_sessions
WHERE expires_at IS NULL OR expires_at > now()`)
	if err != nil {
		return err
	}
	m := make(map[string]time.Time)
	var (
		id string
		at pgtype.Timestamptz
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &at}, func() error {
		if at.Valid && at.InfinityModifier == pgtype.Infinity {
			return nil // revoked at +infinity: never
		}
		m[id] = pgTime(at) // NULL (custom tables) and -infinity: always
		return nil
	})
	if err != nil {
		return err
	}
	s.sessions.Store(keystore.NewSessionSet(m))
	return nil
}
