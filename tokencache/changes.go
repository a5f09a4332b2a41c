package tokencache

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/deplo-sh/deplo-auth/keystore"
)

// changeShards is how many locks the change log is spread over: a change or
// a lookup of one hash never waits behind those of most others, and no lock
// is held for more than a few map operations (or one cache write). One per
// value of a hash's last byte.
const changeShards = 256

// changeLog numbers the changes a watching store pushes (Invalidate) and the
// purges, and remembers the number of each changed hash's latest change for
// a while.
//
// A lookup notes the latest number before asking the store and caches the
// answer only if the hash has not changed since (Cache.cacheUnlessChanged).
// The number of a hash's latest change is also part of the key under which
// requests share a store lookup, so that one arriving after a change never
// joins a lookup begun before it.
//
// Changes are forgotten by generation, not by a scan: each shard keeps the
// changes of its current window and of the one before, and drops the older
// map whole when a window ends. A dropped map leaves its highest number in
// forgotten, the number of the latest change any hash not remembered may
// have had, so forgetting only makes the checks more cautious, never wrong.
type changeLog struct {
	seq    atomic.Uint64 // number of the latest change or purge
	purged atomic.Uint64 // number of the latest purge
	// window is how long a shard's current map takes changes. A change is
	// remembered at least that long, and dropped by the first change or
	// lookup in its shard once about twice as long has passed.
	window time.Duration
	shards [changeShards]changeShard
}

type changeShard struct {
	mu sync.Mutex
	// current and previous map the hashes changed in this window and in
	// the one before to the number of their latest change; currentMax and
	// previousMax are their highest numbers.
	current, previous       map[keystore.Hash]uint64
	currentMax, previousMax uint64
	forgotten               uint64
	windowStart             time.Time
}

func (l *changeLog) shard(h keystore.Hash) *changeShard {
	return &l.shards[h[len(h)-1]]
}

// latest is the number a lookup notes before asking the store.
func (l *changeLog) latest() uint64 { return l.seq.Load() }

// record numbers a change to h.
func (l *changeLog) record(h keystore.Hash) {
	s := l.shard(h)
	s.mu.Lock()
	s.rotate(time.Now(), l.window)
	n := l.seq.Add(1) // taken under the lock, so a shard's numbers only grow
	if s.current == nil {
		s.current = make(map[keystore.Hash]uint64)
	}
	s.current[h] = n
	s.currentMax = n
	s.mu.Unlock()
}

// purge numbers a change to every hash. It holds every shard lock meanwhile,
// so no lookup is between its check and its cache write.
func (l *changeLog) purge() {
	for i := range l.shards {
		l.shards[i].mu.Lock()
	}
	l.purged.Store(l.seq.Add(1))
	for i := range l.shards {
		l.shards[i].mu.Unlock()
	}
}

// last returns the number of the latest change that may have touched h.
func (l *changeLog) last(h keystore.Hash) uint64 {
	s := l.shard(h)
	s.mu.Lock()
	s.rotate(time.Now(), l.window) // frees memory when no more changes come
	n := l.lastLocked(s, h)
	s.mu.Unlock()
	return n
}

// lastLocked is last for a caller that holds s, h's shard, locked.
func (l *changeLog) lastLocked(s *changeShard, h keystore.Hash) uint64 {
	n, ok := s.current[h]
	if !ok {
		if n, ok = s.previous[h]; !ok {
			n = s.forgotten
		}
	}
	return max(n, l.purged.Load())
}

// rotate starts a new window once the current one has lasted window: the
// previous map is dropped and the current one becomes previous. If the
// current window had itself ended a whole window ago, its map is dropped
// too: every change in it is at least window old.
func (s *changeShard) rotate(now time.Time, window time.Duration) {
	elapsed := now.Sub(s.windowStart)
	if elapsed < window {
		return
	}
	if s.previous != nil {
		s.forgotten = s.previousMax
	}
	s.previous, s.previousMax = s.current, s.currentMax
	s.current, s.currentMax = nil, 0
	if elapsed >= 2*window && s.previous != nil {
		s.forgotten = s.previousMax
		s.previous, s.previousMax = nil, 0
	}
	s.windowStart = now
}
