package pgstore

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/deplo-sh/deplo-auth/keystore"
)

// Watch subscribes fn to changes (see Watcher). Notifications are JSON
// payloads on the store's channel:
//
//	{"table": "tokens", "hash": "<64 hex chars>"}   fn(hash, false)
//	{"table": "tokens", "all": true}                fn(_, true)
//	{"table": "sessions", ...}                      the session set is reloaded
//
// A payload that is not one of these is logged (not its contents) and
// treated as "everything may have changed": Generation is bumped and fn is
// called with all=true. So it is when the listener connection was lost, once
// it listens again; OnReconnect is then called too.
func (s *Store) Watch(fn func(h keystore.Hash, all bool)) (stop func()) {
	s.subsMu.Lock()
	id := s.subSeq
	s.subSeq++
	s.subs[id] = fn
	s.subsMu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.subsMu.Lock()
			delete(s.subs, id)
			s.subsMu.Unlock()
		})
	}
}

// broadcast calls every subscriber.
func (s *Store) broadcast(h keystore.Hash, all bool) {
	s.subsMu.Lock()
	fns := make([]func(keystore.Hash, bool), 0, len(s.subs))
	for _, fn := range s.subs {
		fns = append(fns, fn)
	}
	s.subsMu.Unlock()
	for _, fn := range fns {
		fn(h, all)
	}
}

// invalidateAll says every token may have changed.
func (s *Store) invalidateAll() {
	s.gen.Add(1)
	s.broadcast(keystore.Hash{}, true)
}

// connectListener opens the dedicated listener connection and LISTENs.
func (s *Store) connectListener(ctx context.Context) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, backgroundTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, s.listenCfg)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.channel}.Sanitize()); err != nil {
		closeConn(conn)
		return nil, err
	}
	return conn, nil
}

// closeConn closes a connection, waiting at most a second for the server.
func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}

// listen is the listener goroutine: it receives notifications on conn and,
// when the connection is lost, reconnects with backoff.
func (s *Store) listen(conn *pgx.Conn) {
	defer s.wg.Done()
	for {
		err := s.receive(conn)
		s.listening.Store(false)
		closeConn(conn)
		if s.ctx.Err() != nil {
			return
		}
		s.log.Warn("postgres key store: listener connection lost; reconnecting",
			zap.String("channel", s.channel), zap.Error(scrub(err, s.secrets)))
		if conn = s.reconnect(); conn == nil {
			return // closing
		}
		// Changes made while nobody listened were not announced. Listening
		// turns true only after the caches are dropped, so a cache never
		// trusts an entry from before the outage without re-checking it.
		s.triggerSessionReload()
		s.invalidateAll()
		s.listening.Store(true)
		s.log.Info("postgres key store: listener reconnected; cached tokens dropped",
			zap.String("channel", s.channel), zap.Uint64("generation", s.Generation()))
		if s.onReconnect != nil {
			s.onReconnect()
		}
	}
}

// receive handles notifications on conn until the connection fails or the
// store closes. After s.health without a notification it pings the server.
func (s *Store) receive(conn *pgx.Conn) error {
	for {
		wctx, cancel := context.WithTimeout(s.ctx, s.health)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if n != nil {
			s.handle(n)
		}
		if err == nil {
			continue
		}
		if s.ctx.Err() != nil {
			return s.ctx.Err()
		}
		if errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed() {
			// Idle: a timed-out wait leaves the connection usable.
			pctx, pcancel := context.WithTimeout(s.ctx, backgroundTimeout)
			err = conn.Ping(pctx)
			pcancel()
			if err == nil {
				continue
			}
			if s.ctx.Err() != nil {
				return s.ctx.Err()
			}
		}
		return err
	}
}

// Listening reports whether the listener connection is up and listening, so
// that every change is announced (see keystore.ListenerHealth). While it is
// false a cache must not trust old answers: changes are being missed.
func (s *Store) Listening() bool { return s.listening.Load() }

// lookupAnswered is called after each lookup the server answered: while the
// listener is down, that means the server is back, and the reconnect loop
// is told to try now instead of at the end of its backoff.
func (s *Store) lookupAnswered() {
	if s.listening.Load() {
		return
	}
	select {
	case s.kick <- struct{}{}:
	default: // a kick is already pending
	}
}

// reconnect re-establishes the listener, retrying with exponential backoff
// and jitter, or at once when a lookup shows the server answers again (see
// lookupAnswered), though never sooner than listenMinBackoff after the
// previous attempt. It returns nil when the store is closing.
func (s *Store) reconnect() *pgx.Conn {
	delay := listenMinBackoff
	var last time.Time // previous attempt
	for attempt := 1; ; attempt++ {
		// Half to all of delay: listeners of many instances do not retry
		// in step.
		wait := delay/2 + rand.N(delay/2+1)
		if !s.waitToReconnect(wait, last) {
			return nil
		}
		last = time.Now()
		var err error
		if s.beforeReconnect != nil {
			err = s.beforeReconnect()
		}
		var conn *pgx.Conn
		if err == nil {
			conn, err = s.connectListener(s.ctx)
		}
		if err == nil {
			select {
			case <-s.kick: // the server answers: that is known now
			default:
			}
			return conn
		}
		if s.ctx.Err() != nil {
			return nil
		}
		delay = min(2*delay, listenMaxBackoff)
		s.log.Warn("postgres key store: listener reconnect failed",
			zap.Int("attempt", attempt), zap.Duration("next_in_at_most", delay),
			zap.Error(scrub(err, s.secrets)))
	}
}

// waitToReconnect waits wait, or less when kicked (but until at least
// listenMinBackoff after last). It returns false when the store is closing.
func (s *Store) waitToReconnect(wait time.Duration, last time.Time) bool {
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-s.ctx.Done():
		return false
	case <-t.C:
		return true
	case <-s.kick:
	}
	if d := listenMinBackoff - time.Since(last); d > 0 {
		t.Reset(d)
		select {
		case <-s.ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}

// notification is the JSON payload of a change notification.
type notification struct {
	Table string  `json:"table"`
	Hash  *string `json:"hash"`
	ID    *string `json:"id"`
	All   bool    `json:"all"`
}

// handle acts on one notification.
func (s *Store) handle(n *pgconn.Notification) {
	if n.Channel != s.channel {
		return
	}
	var p notification
	if err := json.Unmarshal([]byte(n.Payload), &p); err != nil {
		s.malformed(n, "not a JSON object")
		return
	}
	switch p.Table {
	case "tokens":
		if p.All {
			s.invalidateAll()
			return
		}
		if p.Hash == nil {
			s.malformed(n, `"hash" missing`)
			return
		}
		h, ok := parseHexHash(*p.Hash)
		if !ok {
			s.malformed(n, `"hash" is not 64 hex characters`)
			return
		}
		s.broadcast(h, false)
	case "sessions":
		s.triggerSessionReload()
	default:
		s.malformed(n, `"table" is neither "tokens" nor "sessions"`)
	}
}

// malformed handles a payload that cannot be understood: the safe side is to
// assume everything changed.
func (s *Store) malformed(n *pgconn.Notification, why string) {
	s.log.Warn("postgres key store: malformed notification; dropping every cached token",
		zap.String("channel", n.Channel), zap.Uint32("sender_pid", n.PID),
		zap.Int("payload_bytes", len(n.Payload)), zap.String("problem", why))
	s.triggerSessionReload()
	s.invalidateAll()
}

// parseHexHash parses 64 hex characters (either case).
func parseHexHash(s string) (keystore.Hash, bool) {
	var h keystore.Hash
	if len(s) != 2*len(h) {
		return h, false
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return keystore.Hash{}, false
	}
	return h, true
}
