package pgstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"go.uber.org/zap"
)

// prepare reaches the server and checks what the store needs: ping,
// migrations (if asked), the lookup query, the change log's last sequence,
// the revoked sessions. reachable reports whether the server answered the
// ping: an error after it is a configuration error, not an outage.
func (s *Store) prepare(ctx context.Context) (reachable bool, err error) {
	if err := s.pool.Ping(ctx); err != nil {
		return false, fmt.Errorf("keystore: postgres: connecting: %w", err)
	}
	if s.opts.Migrate {
		res, err := Migrate(ctx, s.pool)
		if err != nil {
			return true, err
		}
		if len(res.Applied) > 0 {
			s.log.Info("postgres key store: schema migrated", zap.Int("version", res.Version), zap.Ints("applied", res.Applied))
		}
	}
	if s.opts.AdminOnly {
		return true, nil
	}
	if err := s.checkLookupQuery(ctx); err != nil {
		return true, err
	}
	if err := s.changes.baseline(ctx, s.pool); err != nil {
		return true, fmt.Errorf("keystore: postgres: reading the change log: %w", err)
	}
	if !s.changes.enabled.Load() {
		s.log.Info("postgres key store: no deplo_changes table (schema version 1 or a custom one); changes arrive by notification only")
	}
	switch err := s.loadSessions(ctx); {
	case err == nil:
		s.sessionsEnabled = true
	case isUndefinedTable(err):
		s.log.Info("postgres key store: no deplo_revoked_sessions table; the session denylist is empty")
	default:
		return true, fmt.Errorf("keystore: postgres: loading revoked sessions: %w", err)
	}
	return true, nil
}

// startLoop retries prepare with jittered backoff until the server answers,
// then runs the store. A configuration error found once the server answers
// is logged and retried too: the gateway is up, and says not ready.
func (s *Store) startLoop() {
	defer s.wg.Done()
	delay := listenMinBackoff
	for {
		wait := delay/2 + rand.N(delay/2+1)
		t := time.NewTimer(wait)
		select {
		case <-s.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(s.ctx, backgroundTimeout)
		reachable, err := s.prepare(ctx)
		cancel()
		if err == nil {
			s.log.Info("postgres key store: the server answers; the store is ready", zap.String("database", s.Name()))
			s.run()
			return
		}
		if s.ctx.Err() != nil {
			return
		}
		delay = min(2*delay, listenMaxBackoff)
		level := zap.WarnLevel
		if reachable {
			level = zap.ErrorLevel
		}
		s.log.Log(level, "postgres key store: not ready; retrying", zap.Duration("next_in_at_most", delay),
			zap.Error(scrub(err, s.secrets)))
	}
}

// run starts the background work of a prepared store and marks it ready.
func (s *Store) run() {
	if !s.opts.AdminOnly {
		s.wg.Add(1)
		go s.listen()
		if s.changes.enabled.Load() {
			s.wg.Add(1)
			go s.follow()
		}
		if s.sessionsEnabled {
			s.wg.Add(1)
			go s.sessionLoop()
		}
		if s.lastUsed.enabled {
			s.wg.Add(1)
			go s.lastUsedLoop()
		}
	}
	s.ready.Store(true)
	close(s.started)
	s.log.Info("postgres key store ready", zap.String("channel", s.channel),
		zap.Int32("max_conns", s.pool.Config().MaxConns), zap.Int("revoked_sessions", s.sessions.Load().Len()),
		zap.Bool("change_log", s.changes.enabled.Load()), zap.Duration("poll", s.poll),
		zap.Bool("record_last_used", s.lastUsed.enabled))
}

// Ready reports whether the store has reached its server and runs (see
// Options.StartWithoutServer). It does not turn false again: a later outage
// shows in lookups and in Following.
func (s *Store) Ready() bool { return s.ready.Load() }

// checkLookupQuery describes the lookup query on the server and checks its
// shape: one parameter, eight columns.
func (s *Store) checkLookupQuery(ctx context.Context) error {
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("keystore: postgres: connecting: %w", err)
	}
	defer c.Release()
	sd, err := c.Conn().PgConn().Prepare(ctx, "", s.lookupSQL, nil)
	if err != nil {
		if isUndefinedColumn(err) && s.lookupSQL == defaultLookupQuery {
			// A schema from before 004_conditions.sql: its tokens keep
			// working (none can have allowed_ips) until it is migrated.
			if s.log != nil {
				s.log.Warn("the deplo_tokens table predates allowed_ips; run caddy deplo-auth migrate (or the migrate option)")
			}
			s.lookupSQL = unmigratedLookupQuery
			return s.checkLookupQuery(ctx)
		}
		if isUndefinedTable(err) && s.lookupSQL == defaultLookupQuery {
			return fmt.Errorf("keystore: postgres: lookup query: %w (apply the schema: pgstore.Migrate, or the migrate option)", err)
		}
		return fmt.Errorf("keystore: postgres: lookup query: %w", err)
	}
	if n := len(sd.ParamOIDs); n != 1 {
		return fmt.Errorf("keystore: postgres: lookup query: takes %d parameters; want exactly one, $1, the 32-byte token hash", n)
	}
	if n := len(sd.Fields); n != 8 && n != 9 {
		return fmt.Errorf("keystore: postgres: lookup query: returns %d columns; want 8 or 9: %s", n, lookupColumns)
	}
	return nil
}
