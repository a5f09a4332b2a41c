package pgstore

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/deplo-sh/deplo-auth/keystore"
)

// Defaults for the last-used writer.
const (
	DefaultTouchInterval  = 5 * time.Second
	DefaultTouchQueueSize = 10_000
)

// lastUsedPeriod is the shortest time between two writes of one token's
// last_used_at.
const lastUsedPeriod = time.Minute

// closeFlushTimeout bounds the last write at Close, so that closing a store
// whose database is gone does not hold up a config reload for long.
const closeFlushTimeout = 2 * time.Second

// touchSQL writes last_used_at for a batch of hashes, skipping tokens
// written less than a minute ago (by this or any other instance). The
// shipped trigger ignores updates of last_used_at alone, so this never sets
// off a notification.
const touchSQL = `UPDATE deplo_tokens SET last_used_at = now()
WHERE hash = ANY($1) AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')`

// lastUsedWriter collects touched hashes for the background writer.
type lastUsedWriter struct {
	enabled  bool
	interval time.Duration
	max      int

	mu      sync.Mutex
	pending map[keystore.Hash]struct{}

	dropped atomic.Uint64
	writes  atomic.Uint64 // UPDATE statements sent
	rows    atomic.Uint64 // rows they changed

	// Owned by the writer goroutine.
	recent    map[keystore.Hash]time.Time // written at, within lastUsedPeriod
	lastError string                      // last logged failure, logged once until it changes
}

func (w *lastUsedWriter) init(opts Options) {
	w.enabled = opts.RecordLastUsed
	w.interval = opts.TouchInterval
	if w.interval <= 0 {
		w.interval = DefaultTouchInterval
	}
	w.max = opts.TouchQueueSize
	if w.max <= 0 {
		w.max = DefaultTouchQueueSize
	}
	w.pending = make(map[keystore.Hash]struct{})
	w.recent = make(map[keystore.Hash]time.Time)
}

// Touch records that the token with hash h was just used. It never blocks
// on I/O: the hash joins a bounded set that a background writer turns into
// one UPDATE every TouchInterval, writing each token at most once a minute.
// When the set is full (TouchQueueSize distinct tokens waiting) the touch is
// dropped and counted (DroppedTouches). Without RecordLastUsed it does
// nothing.
func (s *Store) Touch(h keystore.Hash) {
	w := &s.lastUsed
	if !w.enabled {
		return
	}
	w.mu.Lock()
	if _, ok := w.pending[h]; !ok {
		if len(w.pending) >= w.max {
			w.mu.Unlock()
			w.dropped.Add(1)
			return
		}
		w.pending[h] = struct{}{}
	}
	w.mu.Unlock()
}

// DroppedTouches returns how many Touch calls were dropped because the set
// of tokens waiting to be written was full.
func (s *Store) DroppedTouches() uint64 { return s.lastUsed.dropped.Load() }

// lastUsedLoop is the writer goroutine. On Close it writes what is pending
// before returning.
func (s *Store) lastUsedLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.lastUsed.interval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			s.flushTouches(closeFlushTimeout)
			return
		case <-t.C:
			s.flushTouches(backgroundTimeout)
		}
	}
}

// flushTouches writes the pending hashes in one statement, bounded by
// timeout. It is not tied to the store's context, so a Close during a write
// lets it finish. A failed batch is dropped: last use is best effort.
func (s *Store) flushTouches(timeout time.Duration) {
	w := &s.lastUsed
	w.mu.Lock()
	if len(w.pending) == 0 {
		w.mu.Unlock()
		return
	}
	batch := w.pending
	w.pending = make(map[keystore.Hash]struct{}, len(batch))
	w.mu.Unlock()

	now := time.Now()
	for h, at := range w.recent {
		if now.Sub(at) >= lastUsedPeriod {
			delete(w.recent, h)
		}
	}
	hashes := make([][]byte, 0, len(batch))
	sent := make([]keystore.Hash, 0, len(batch))
	for h := range batch {
		if _, ok := w.recent[h]; ok {
			continue
		}
		b := make([]byte, len(h))
		copy(b, h[:])
		hashes = append(hashes, b)
		sent = append(sent, h)
	}
	if len(hashes) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tag, err := s.pool.Exec(ctx, touchSQL, hashes)
	w.writes.Add(1)
	if err != nil {
		err = scrub(err, s.secrets)
		if msg := err.Error(); msg != w.lastError {
			w.lastError = msg
			s.log.Warn("postgres key store: writing last_used_at failed; those uses are not recorded",
				zap.Int("tokens", len(hashes)), zap.Error(err))
		}
		return
	}
	w.lastError = ""
	w.rows.Add(uint64(tag.RowsAffected()))
	for _, h := range sent {
		w.recent[h] = now
	}
}
