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

// Watch subscribes fn to changes (see Watcher): fn(hash, false) for each
// change-log entry, fn(_, true) when every token may have changed (a
// TRUNCATE, a log pruned past this instance's position). Notifications are
// JSON payloads on the store's channel:
//
//	{"table": "tokens", "from": 7, "to": 9, "hashes": [...]}  the change log grew: the listed hashes at once; unless they are the whole range, which follows this instance's position, the range is read (one row of deplo_change_ranges for a bulk change, else the log), over the listener's connection
//	{"table": "tokens", "hash": "<64 hex chars>"}            fn(hash, false) (a schema without a change log, custom triggers)
//	{"table": "tokens", "all": true}                         fn(_, true)
//	{"table": "sessions", ...}                               the session set is reloaded
//
// A payload that is not one of these is logged (not its contents) and
// treated as "everything may have changed": Generation is bumped and fn is
// called with all=true. Without a change log, so it is when the listener
// connection was lost, once it listens again; OnReconnect is then called
// too.
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
	for _, fn := range s.subscribers() {
		fn(h, all)
	}
}

// broadcastEach tells every subscriber of each of hs (a bulk change: the
// subscribers are listed once, not once per hash).
func (s *Store) broadcastEach(hs []keystore.Hash) {
	for _, fn := range s.subscribers() {
		for _, h := range hs {
			fn(h, false)
		}
	}
}

func (s *Store) subscribers() []func(keystore.Hash, bool) {
	s.subsMu.Lock()
	defer s.subsMu.Unlock()
	fns := make([]func(keystore.Hash, bool), 0, len(s.subs))
	for _, fn := range s.subs {
		fns = append(fns, fn)
	}
	return fns
}

// invalidateAll says every token may have changed.
func (s *Store) invalidateAll() {
	s.gen.Add(1)
	s.broadcast(keystore.Hash{}, true)
}

// connectListener opens the dedicated listener connection and LISTENs on
// the store's channel and the heartbeat channel.
func (s *Store) connectListener(ctx context.Context) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, backgroundTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, s.listenCfg)
	if err != nil {
		return nil, err
	}
	for _, ch := range []string{s.channel, HeartbeatChannel} {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			closeConn(conn)
			return nil, err
		}
	}
	return conn, nil
}

// closeConn closes a connection, waiting at most a second for the server.
func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}

// errDeaf ends a listener connection that did not hear its own heartbeat.
var errDeaf = errors.New("the listener did not receive its own notification in time: LISTEN is deaf (through pgbouncer in transaction mode?)")

// deafReportEvery is how often a listener that stays deaf is reported again
// at ERROR.
const deafReportEvery = 5 * time.Minute

// listen is the listener goroutine: it connects, receives notifications
// and proves it hears them (heartbeat); when the connection is lost or deaf
// it reconnects with jittered backoff. While the listener is down or deaf
// the change-log poll carries every change.
func (s *Store) listen() {
	defer s.wg.Done()
	delay := listenMinBackoff
	var last time.Time // previous attempt
	var deafSince, deafReported time.Time
	for attempt := 1; ; attempt++ {
		if attempt > 1 {
			// Half to all of delay: listeners of many instances do not
			// retry in step.
			if !s.waitToReconnect(delay/2+rand.N(delay/2+1), last) {
				return
			}
		}
		last = time.Now()
		var err error
		if attempt > 1 && s.beforeReconnect != nil {
			err = s.beforeReconnect()
		}
		var conn *pgx.Conn
		if err == nil {
			conn, err = s.connectListener(s.ctx)
		}
		if attempt == 1 {
			close(s.listenTried)
		}
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			delay = min(2*delay, listenMaxBackoff)
			s.log.Warn("postgres key store: listener connection failed; the change-log poll carries changes meanwhile",
				zap.Int("attempt", attempt), zap.Duration("next_in_at_most", delay),
				zap.Error(scrub(err, s.secrets)))
			continue
		}
		select {
		case <-s.kick: // the server answers: that is known now
		default:
		}
		s.listenUp.Store(true)
		if attempt > 1 {
			// Changes made while nobody listened were not announced: the
			// change log has them; without one, every cache is dropped.
			s.triggerSessionReload()
			if s.changes.enabled.Load() {
				s.changes.wake()
				s.log.Info("postgres key store: listener reconnected; catching up from the change log",
					zap.String("channel", s.channel), zap.Int64("last_change", s.LastChange()))
			} else {
				s.invalidateAll()
				s.log.Info("postgres key store: listener reconnected; cached tokens dropped",
					zap.String("channel", s.channel), zap.Uint64("generation", s.Generation()))
			}
			if s.onReconnect != nil {
				s.onReconnect()
			}
		}
		err = s.receive(conn)
		s.listenUp.Store(false)
		s.setHearing(false)
		closeConn(conn)
		if s.ctx.Err() != nil {
			return
		}
		if errors.Is(err, errDeaf) {
			now := time.Now()
			if deafSince.IsZero() {
				deafSince = now
			}
			if now.Sub(deafReported) >= deafReportEvery {
				deafReported = now
				s.log.Error("postgres key store: NOT LISTENING: the listener did not receive its own notification; changes arrive by the change-log poll only, within the poll interval",
					zap.String("channel", s.channel), zap.Duration("heartbeat", s.heartbeat),
					zap.Duration("deaf_for", now.Sub(deafSince).Round(time.Second)), zap.Duration("poll", s.poll),
					zap.String("hint", "LISTEN needs a session: set listen_dsn to a direct connection or to pgbouncer in session mode"))
			}
			delay = min(2*delay, listenMaxBackoff)
			continue
		}
		deafSince, deafReported = time.Time{}, time.Time{}
		delay = listenMinBackoff
		s.log.Warn("postgres key store: listener connection lost; reconnecting",
			zap.String("channel", s.channel), zap.Error(scrub(err, s.secrets)))
	}
}

// receive handles notifications on conn until the connection fails, is
// found deaf, or the store closes. A listener that has heard nothing for
// a quarter to a half of its heartbeat (drawn anew each time) notifies
// itself; if nothing arrives within another half, it is deaf. Any
// notification proves it hears (another instance's heartbeat too), and the
// draw keeps a fleet's listeners, which all heard the same last
// notification, from probing together: a fleet sends about one heartbeat per
// quarter period, not one per instance (each is delivered to every listener
// of the database).
func (s *Store) receive(conn *pgx.Conn) error {
	half := s.heartbeat / 2
	quiet := func() time.Duration { return half/2 + rand.N(half/2+1) }
	lastHeard, allowed := time.Now(), quiet()
	var probeAt time.Time // zero: no probe pending
	probe := func() {
		probeAt = time.Now()
		if err := s.sendHeartbeat(); err != nil && s.ctx.Err() == nil {
			s.log.Warn("postgres key store: sending the listener heartbeat failed", zap.Error(scrub(err, s.secrets)))
		}
	}
	probe() // prove at once that the new connection hears
	for {
		deadline := lastHeard.Add(allowed)
		if !probeAt.IsZero() {
			deadline = probeAt.Add(half)
		}
		wctx, cancel := context.WithDeadline(s.ctx, deadline)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if n != nil && (s.deafen == nil || !s.deafen()) {
			lastHeard, allowed, probeAt = time.Now(), quiet(), time.Time{}
			s.setHearing(true)
			if n.Channel == s.channel {
				if r := s.handle(n); r != nil {
					s.readAnnounced(conn, *r)
				}
			}
		}
		if err == nil {
			continue
		}
		if s.ctx.Err() != nil {
			return s.ctx.Err()
		}
		if !errors.Is(err, context.DeadlineExceeded) || conn.IsClosed() {
			return err
		}
		// A timed-out wait leaves the connection usable.
		if probeAt.IsZero() {
			probe()
			continue
		}
		pctx, pcancel := context.WithTimeout(s.ctx, backgroundTimeout)
		err = conn.Ping(pctx)
		pcancel()
		if err != nil {
			return err // a dead connection, not a deaf one
		}
		return errDeaf
	}
}

// readAnnounced reads the announced range r over the listener's own
// connection: from its one row when it is a bulk change that follows this
// instance's position, else from the change log. Every instance of a fleet
// reads a bulk change at the same moment, and through the pool they would
// queue for pgbouncer's few server connections. If it fails (a listen_dsn
// that reaches no change log), the follower reads through the pool; a
// broken connection is found by the next wait.
func (s *Store) readAnnounced(conn *pgx.Conn, r changeRange) {
	var q querier = conn
	if s.stallRead != nil {
		q = stalledQuerier{conn, s.stallRead}
	}
	if s.applyRange(s.ctx, q, r) {
		s.changes.listenerReads.Add(1)
		return
	}
	err := s.catchUpVia(s.ctx, q)
	if err == nil {
		s.changes.listenerReads.Add(1)
	} else if s.ctx.Err() == nil {
		s.log.Debug("postgres key store: reading the change log over the listener connection failed; reading it through the pool",
			zap.Error(scrub(err, s.secrets)))
		s.changes.wake()
	}
}

// stalledQuerier calls stall before each query (tests).
type stalledQuerier struct {
	querier
	stall func()
}

func (q stalledQuerier) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	q.stall()
	return q.querier.QueryRow(ctx, sql, args...)
}

// sendHeartbeat notifies the heartbeat channel through the pool (the path
// every write takes, so the notification is sent as a write's would be).
func (s *Store) sendHeartbeat() error {
	ctx, cancel := context.WithTimeout(s.ctx, s.timeout)
	defer cancel()
	_, err := s.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, HeartbeatChannel, s.listenName)
	return err
}

// setHearing records whether the listener hears, and reports a change.
func (s *Store) setHearing(v bool) {
	if s.hearing.Swap(v) == v {
		return
	}
	if v {
		s.log.Info("postgres key store: listening (the listener heard its heartbeat or a change)", zap.String("channel", s.channel))
	}
	if s.onHearing != nil {
		s.onHearing(v)
	}
}

// Hearing reports whether the listener has proven, within its heartbeat,
// that notifications reach it. False while it connects, after a loss, and
// when it is deaf (LISTEN through pgbouncer in transaction mode accepts the
// command and delivers nothing); the change-log poll carries changes then.
func (s *Store) Hearing() bool { return s.hearing.Load() }

// lookupAnswered is called after each lookup the server answered: while the
// listener is down, that means the server is back, and the reconnect loop
// is told to try now instead of at the end of its backoff.
func (s *Store) lookupAnswered() {
	if s.listenUp.Load() {
		return
	}
	select {
	case s.kick <- struct{}{}:
	default: // a kick is already pending
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
	Table  string   `json:"table"`
	Hash   *string  `json:"hash"`
	ID     *string  `json:"id"`
	All    bool     `json:"all"`
	Log    *int64   `json:"log"`
	From   *int64   `json:"from"`
	To     *int64   `json:"to"`
	Hashes []string `json:"hashes"`
}

// handle acts on one notification. It returns the range of the change log
// to read when the notification announced changes it did not list, nil
// otherwise.
func (s *Store) handle(n *pgconn.Notification) *changeRange {
	if n.Channel != s.channel {
		return nil
	}
	var p notification
	if err := json.Unmarshal([]byte(n.Payload), &p); err != nil {
		s.malformed(n, "not a JSON object")
		return nil
	}
	switch p.Table {
	case "tokens":
		if p.All {
			s.invalidateAll()
			return nil
		}
		if p.To != nil && p.From != nil {
			switch {
			case s.changes.enabled.Load() && p.Log != nil && *p.Log != s.changes.oid.Load():
				// Another schema's change log, on the same database.
			case s.changes.enabled.Load():
				if s.announced(*p.From, *p.To, p.Hashes) {
					return announcedRange(*p.From, *p.To, len(p.Hashes))
				}
			case len(p.Hashes) == 0:
				s.invalidateAll() // a range, and no log to read it from
			default:
				for _, x := range p.Hashes {
					if h, ok := parseHexHash(x); ok {
						s.broadcast(h, false)
					}
				}
			}
			return nil
		}
		if p.Hash == nil {
			s.malformed(n, `"hash" missing`)
			return nil
		}
		h, ok := parseHexHash(*p.Hash)
		if !ok {
			s.malformed(n, `"hash" is not 64 hex characters`)
			return nil
		}
		s.broadcast(h, false)
	case "sessions":
		s.triggerSessionReload()
	default:
		s.malformed(n, `"table" is neither "tokens" nor "sessions"`)
	}
	return nil
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
