package pgstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/deplo-sh/deplo-auth/keystore"
)

// Change-log timings.
const (
	// changeBatch caps the rows one poll reads; a full batch is followed
	// by the next at once.
	changeBatch = 10000
	// pruneEvery is how often an instance tries to prune the log (only one
	// instance at a time does: pg_try_advisory_xact_lock), with jitter.
	pruneEvery = 5 * time.Minute
	// DefaultRetention is how long change-log rows are kept at least; the
	// store keeps them longer when a cache asks (KeepChangesFor).
	DefaultRetention = time.Hour
	// pruneLockKey is the pg_try_advisory_xact_lock key of pruning
	// ("deplopru").
	pruneLockKey int64 = 0x6465706c6f707275
)

// pollSQL reads how far the log was pruned and the changes after $1, in one
// statement (one snapshot), as ONE row: the number of changes read, the
// last sequence, how many carry a hash (the others are NULL: every token),
// and their hashes packed end to end. A bulk revocation read by a whole
// fleet at once then costs each instance one row to decode, not thousands,
// and the server one aggregate, not thousands of rows to send. The pruned
// mark is a scalar subquery of its own: a join of the two tables, whose
// one-row table has no statistics, was estimated at millions of rows and
// JIT-compiled on every poll.
const pollSQL = `SELECT (SELECT through FROM deplo_changes_pruned), count(*), coalesce(max(seq), 0), count(hash),
	coalesce(string_agg(hash, ''::bytea), ''::bytea)
FROM (SELECT seq, hash FROM deplo_changes WHERE seq > $1 ORDER BY seq LIMIT 10000) AS c`

// changeFollower is the store's position in the change log.
type changeFollower struct {
	// enabled: the schema has a change log (deplo_changes); oid is its
	// table's, which notifications carry.
	// Both are set by baseline, which runs in the background when the
	// store starts without its server, so they are atomic.
	enabled atomic.Bool
	oid     atomic.Int64
	// ranges: the schema stores a bulk change's hashes as one row too
	// (deplo_change_ranges, version 5); set by baseline.
	ranges atomic.Bool
	// last is the sequence up to which every change is applied. Readers
	// (the poll, the listener's read of an announced change, a write's own
	// catch-up) take turns (reading), so that a change is read once, not
	// by the poll and the listener together; but a reader waits for its
	// turn at most one poll interval, so that a stalled connection does
	// not hold up the others (the poll is the bound). Each covers the
	// changes after the position it started from; mu serializes applying
	// and moving last, which only grows. A change applied twice costs a
	// second invalidation, nothing else.
	reading chan struct{}
	mu      sync.Mutex
	last    atomic.Int64
	// polledAt is when a poll last succeeded (Unix ns; see Following).
	polledAt atomic.Int64
	// now (capacity 1) asks the follower to read the log at once.
	now chan struct{}
	// retention: see KeepChangesFor.
	retention atomic.Int64
	// polls counts the reads of the log, listenerReads the announced
	// ranges read over the listener's connection (tests).
	polls, listenerReads atomic.Uint64
}

func (f *changeFollower) init() {
	f.now = make(chan struct{}, 1)
	f.reading = make(chan struct{}, 1)
	f.retention.Store(int64(DefaultRetention))
}

// baseline reads the log's last sequence (a new store's caches are empty:
// what came before does not concern them). A schema without the log leaves
// the follower disabled.
func (f *changeFollower) baseline(ctx context.Context, pool *pgxpool.Pool) error {
	var oid, last int64
	var ranges bool
	err := pool.QueryRow(ctx, `SELECT 'deplo_changes'::regclass::oid::bigint, (SELECT coalesce(max(seq), 0) FROM deplo_changes),
	to_regclass('deplo_change_ranges') IS NOT NULL`).Scan(&oid, &last, &ranges)
	switch {
	case isUndefinedTable(err):
		f.enabled.Store(false)
		return nil
	case err != nil:
		return err
	}
	f.oid.Store(oid)
	f.ranges.Store(ranges)
	f.enabled.Store(true)
	f.last.Store(last)
	f.polledAt.Store(time.Now().UnixNano())
	return nil
}

// takeTurn waits for the turn to read the change log, at most wait, and
// returns what ends it. Past wait (another reader stalled) the caller reads
// anyway, out of turn.
func (f *changeFollower) takeTurn(ctx context.Context, wait time.Duration) (done func()) {
	select {
	case f.reading <- struct{}{}:
		return func() { <-f.reading }
	default:
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case f.reading <- struct{}{}:
		return func() { <-f.reading }
	case <-t.C:
	case <-ctx.Done():
	}
	return func() {}
}

// wake asks the follower to read the log now.
func (f *changeFollower) wake() {
	select {
	case f.now <- struct{}{}:
	default: // a read is already pending
	}
}

// KeepChangesFor asks that change-log rows be kept at least d (a cache's
// TTL: an instance that was cut off for less than that catches up from the
// log instead of dropping its cache). The store keeps the longest asked,
// DefaultRetention at least.
func (s *Store) KeepChangesFor(d time.Duration) {
	for {
		old := s.changes.retention.Load()
		if int64(d) <= old || s.changes.retention.CompareAndSwap(old, int64(d)) {
			return
		}
	}
}

// Following reports whether the store follows changes now: a read of the
// change log succeeded within about two poll intervals, or, on a schema
// without one, the listener hears. While it is true a change reaches this
// instance's caches within Poll (see keystore.ListenerHealth).
func (s *Store) Following() bool {
	if !s.changes.enabled.Load() {
		return s.Hearing()
	}
	if !s.ready.Load() {
		return false
	}
	return time.Since(time.Unix(0, s.changes.polledAt.Load())) < 2*s.poll+s.timeout
}

// Listening reports whether changes reach this instance (Following), so
// that a cache may trust its answers (see keystore.ListenerHealth). While it
// is false a cache must re-check old answers: changes may be missed.
func (s *Store) Listening() bool { return s.Following() }

// LastChange returns the sequence of the latest change-log entry applied
// (0 without a change log).
func (s *Store) LastChange() int64 { return s.changes.last.Load() }

// follow is the change-log goroutine: it reads the log every poll interval,
// and at once when a notification, a reconnect or a write asks, and prunes
// it now and then.
func (s *Store) follow() {
	defer s.wg.Done()
	tick := time.NewTicker(s.poll)
	defer tick.Stop()
	prune := time.NewTimer(pruneEvery/2 + rand.N(pruneEvery))
	defer prune.Stop()
	var failing bool
	var sessionsAt time.Time
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		case <-s.changes.now:
		case <-prune.C:
			s.prune()
			prune.Reset(pruneEvery/2 + rand.N(pruneEvery))
			continue
		}
		err := s.catchUp(s.ctx)
		if s.sessionsEnabled && !s.Hearing() && time.Since(sessionsAt) >= s.poll/2 {
			// Session revocations have no change log: while notifications
			// are not heard, the set (sessions revoked within their 15
			// minutes: small) is reloaded every poll, the same bound as a
			// token's.
			sessionsAt = time.Now()
			s.triggerSessionReload()
		}
		switch {
		case err == nil && failing:
			failing = false
			s.log.Info("postgres key store: reading the change log again", zap.Int64("last_change", s.LastChange()))
		case err != nil && !failing && s.ctx.Err() == nil:
			failing = true
			s.log.Warn("postgres key store: reading the change log failed; retrying every poll interval",
				zap.Duration("poll", s.poll), zap.Error(scrub(err, s.secrets)))
		}
	}
}

// catchUp reads and applies every change after the last one applied,
// through the pool. When the log was pruned past it (the instance was away
// longer than the retention) every cached entry is dropped instead.
func (s *Store) catchUp(ctx context.Context) error { return s.catchUpVia(ctx, s.pool) }

// catchUpVia is catchUp over q. The listener reads what a notification
// announced over its own connection, so that a bulk change read by a whole
// fleet at once does not queue for the pool (through pgbouncer, a few
// server connections shared by every instance).
func (s *Store) catchUpVia(ctx context.Context, q querier) error {
	f := &s.changes
	defer f.takeTurn(ctx, s.poll)()
	for {
		last := f.last.Load()
		var (
			through, read, newest, hashed int64
			packed                        []byte
		)
		qctx, cancel := context.WithTimeout(ctx, backgroundTimeout)
		err := q.QueryRow(qctx, pollSQL, last).Scan(&through, &read, &newest, &hashed, &packed)
		cancel()
		if err != nil {
			return err
		}
		f.polls.Add(1)
		f.polledAt.Store(time.Now().UnixNano())
		f.mu.Lock()
		switch {
		case through > last:
			s.log.Warn("postgres key store: the change log was pruned past this instance's last change; dropping every cached token",
				zap.Int64("last_change", last), zap.Int64("pruned_through", through))
			f.advance(max(through, newest))
			s.invalidateAll()
		case read > 0:
			s.applyChanges(read, hashed, packed)
			f.advance(newest)
		}
		f.mu.Unlock()
		if read < changeBatch {
			return nil
		}
	}
}

// advance moves the position to seq unless it is there already; the
// caller holds mu.
func (f *changeFollower) advance(seq int64) {
	if seq > f.last.Load() {
		f.last.Store(seq)
	}
}

// applyChanges tells the caches of read change-log rows, hashed of which
// carry a hash, packed end to end.
func (s *Store) applyChanges(read, hashed int64, packed []byte) {
	switch {
	case hashed < read: // a TRUNCATE: every token may have changed
		s.invalidateAll()
		return
	case int64(len(packed)) != hashed*int64(len(keystore.Hash{})):
		s.log.Warn("postgres key store: a change-log row has a malformed hash; dropping every cached token",
			zap.Int64("rows", read), zap.Int("bytes", len(packed)))
		s.invalidateAll()
		return
	}
	hs := make([]keystore.Hash, hashed)
	for i := range hs {
		copy(hs[i][:], packed[i*len(hs[i]):])
	}
	s.broadcastEach(hs)
}

// rangeSQL reads a bulk change's hashes, packed, from its one row.
const rangeSQL = `SELECT hashes FROM deplo_change_ranges WHERE first_seq = $1 AND last_seq = $2`

// packedRangeMin and packedRangeMax bound the changes stored as one row of
// deplo_change_ranges: deplo_record_changes lists up to 64 hashes in the
// notification instead, and leaves a change of more than 100,000 to the log
// (read in batches).
const (
	packedRangeMin = 65
	packedRangeMax = 100_000
)

// changeRange is a range of the log a notification announced and this
// instance must read.
type changeRange struct {
	from, to int64
	// packed: announced without hashes and long enough to have one row of
	// deplo_change_ranges.
	packed bool
}

// announcedRange is the range [from, to] a notification listing listed
// hashes announced.
func announcedRange(from, to int64, listed int) *changeRange {
	n := to - from + 1
	return &changeRange{from: from, to: to, packed: listed == 0 && n >= packedRangeMin && n <= packedRangeMax}
}

// applyRange applies the announced range r from its one row of
// deplo_change_ranges when this instance's position is just before it, over
// q. It reports whether the range is applied now (read already included);
// false means the log must be read.
func (s *Store) applyRange(ctx context.Context, q querier, r changeRange) bool {
	f := &s.changes
	if !r.packed || !f.ranges.Load() {
		return false
	}
	switch last := f.last.Load(); {
	case last >= r.to:
		return true
	case last < r.from-1:
		return false // changes before the range are missing: read the log
	}
	defer f.takeTurn(ctx, s.poll)()
	if f.last.Load() >= r.to {
		return true // read while this one waited for its turn
	}
	// Everything up to from-1 is applied and last only grows: applying the
	// range's rows, whatever was read meanwhile, leaves every change up to
	// r.to applied.
	var packed []byte
	qctx, cancel := context.WithTimeout(ctx, backgroundTimeout)
	err := q.QueryRow(qctx, rangeSQL, r.from, r.to).Scan(&packed)
	cancel()
	n := r.to - r.from + 1
	if err != nil || int64(len(packed)) != n*int64(len(keystore.Hash{})) {
		return false // no such row (another writer took a sequence within it): read the log
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s.applyChanges(n, n, packed)
	f.advance(r.to)
	return true
}

// announced applies a notification of the log's range [from, to] with its
// hashes: when it follows the last change applied and lists every entry of
// the range, it is applied as the poll would (no read of the log);
// otherwise the listed hashes are dropped at once and it returns true: the
// log must be read.
func (s *Store) announced(from, to int64, hashes []string) (read bool) {
	f := &s.changes
	f.mu.Lock()
	last := f.last.Load()
	if to <= last {
		f.mu.Unlock()
		return false // read already
	}
	complete := from == last+1 && int64(len(hashes)) == to-from+1
	hs := make([]keystore.Hash, 0, len(hashes))
	for _, x := range hashes {
		if h, ok := parseHexHash(x); ok {
			hs = append(hs, h)
		} else {
			complete = false
		}
	}
	s.broadcastEach(hs)
	if complete {
		f.advance(to)
	}
	f.mu.Unlock()
	return !complete
}

// prune deletes change-log rows older than the retention, recording how far
// it went; one instance at a time (the others skip).
func (s *Store) prune() {
	ctx, cancel := context.WithTimeout(s.ctx, backgroundTimeout)
	defer cancel()
	keep := time.Duration(s.changes.retention.Load())
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var got bool
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, pruneLockKey).Scan(&got); err != nil || !got {
			return err
		}
		_, err := tx.Exec(ctx, `WITH gone AS (
	DELETE FROM deplo_changes WHERE changed_at < now() - make_interval(secs => $1) RETURNING seq
) UPDATE deplo_changes_pruned SET through = greatest(through, (SELECT max(seq) FROM gone))
WHERE EXISTS (SELECT 1 FROM gone)`, keep.Seconds())
		if err != nil || !s.changes.ranges.Load() {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM deplo_change_ranges WHERE changed_at < now() - make_interval(secs => $1)`, keep.Seconds())
		return err
	})
	if err != nil && s.ctx.Err() == nil {
		s.log.Warn("postgres key store: pruning the change log failed", zap.Error(scrub(err, s.secrets)))
	}
}

// errNoChangeLog is Write's error for extra changes on a schema without a
// change log.
var errNoChangeLog = errors.New("the schema has no change log (deplo_changes); apply the migrations")

// Write is the one way a write that can change the answer for a token goes
// to the database, so that every instance learns of it: the CLI's and the
// token API's creates and revocations, and any later write path (cascades,
// leak revocations, token conditions) go through it. It runs fn in one
// transaction and records the change in the change log (deplo_changes) in
// that same transaction, then brings this instance's caches up to date
// before it returns:
//
//   - Rows of deplo_tokens that fn inserts, updates (any column but
//     last_used_at), deletes or truncates are recorded by the table's
//     triggers, so fn need not return them (an operator's own SQL on the
//     table is recorded as well).
//   - A change made elsewhere that alters the answer for tokens (a row of
//     another table the lookup reads) is recorded by returning those
//     tokens' hashes from fn: Write passes them to the database function
//     deplo_record_changes, the single writer of the log, in the
//     transaction.
//
// Every other instance learns of the commit by notification (one per
// statement, carrying the range of sequences, whatever the number of rows)
// within milliseconds, and by its poll within Options.Poll at worst. If fn
// fails nothing is written and its error is returned as is; what names the
// operation in the errors of the transaction itself.
func (s *Store) Write(ctx context.Context, what string, fn func(tx pgx.Tx) (changed []keystore.Hash, err error)) error {
	return s.write(ctx, what, fn, true)
}

// write is Write; record false leaves recording to the deplo_tokens
// triggers, the hashes fn returns serving only this instance's caches on a
// schema without a change log.
func (s *Store) write(ctx context.Context, what string, fn func(tx pgx.Tx) ([]keystore.Hash, error), record bool) error {
	var (
		changed []keystore.Hash
		fnErr   error
	)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if changed, fnErr = fn(tx); fnErr != nil || !record || len(changed) == 0 {
			return fnErr
		}
		hs := make([][]byte, len(changed))
		for i := range changed {
			hs[i] = changed[i][:]
		}
		if _, err := tx.Exec(ctx, `SELECT deplo_record_changes($1::bytea[])`, hs); err != nil {
			if isUndefinedFunction(err) {
				return errNoChangeLog
			}
			return err
		}
		return nil
	})
	switch {
	case fnErr != nil:
		return fnErr
	case err != nil:
		return fmt.Errorf("keystore: %s: %w", what, err)
	}
	s.afterWrite(ctx, changed)
	return nil
}

// afterWrite brings this instance's caches up to date after a committed
// write: from the change log when there is one (the write's own rows
// included), else by broadcasting what the caller knows changed.
func (s *Store) afterWrite(ctx context.Context, changed []keystore.Hash) {
	if s.opts.AdminOnly || !s.ready.Load() {
		return
	}
	if s.changes.enabled.Load() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
		err := s.catchUp(cctx)
		cancel()
		if err == nil {
			return
		}
		s.changes.wake() // the follower retries
	}
	for _, h := range changed {
		s.broadcast(h, false)
	}
}
