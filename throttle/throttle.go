// Package throttle is the brute-force guard of deplo-auth: it limits how many
// failed authentications each client may make per window.
//
// # Use
//
// At the very start of every request that needs a credential, call
// [Limiter.Allow] with the client's key (see [ClientKey]); when it refuses,
// answer 429 with the Retry-After it returns, before any hash, cache or store
// work. After a failed authentication (bad, unknown or revoked token,
// malformed credential), call [Limiter.Fail]. Successful authentications are
// not recorded, so a client that never fails never has state. Pass
// time.Now() as now: its monotonic reading makes the limiter immune to wall
// clock steps. A nil *Limiter allows everything (throttle off).
//
// # Algorithm
//
// Each client is a GCRA (generic cell rate algorithm, the "virtual
// scheduling" form of a leaky bucket) that stores a single timestamp, its
// theoretical arrival time (TAT). Every failure costs an interval
// T = ceil(Window/Failures): Fail sets TAT = max(TAT, now) + T. A client may
// try while its debt TAT-now is at most (Failures-1)·T, that is while one
// more failure would keep the debt within Failures·T. Hence, exactly:
//
//   - from rest, a burst of Failures failures is allowed and the next attempt
//     is refused;
//   - a refused client may try again once its debt is back to
//     (Failures-1)·T: one more attempt every T while it keeps failing;
//   - a client whose failures stop is fully recovered (TAT ≤ now, no state)
//     Failures·T ≈ Window after its last failure.
//
// So over any span D a client makes at most Failures + D/T failures: the
// long-run rate is Failures per Window, and one sliding Window holds at most
// 2·Failures-1 (a full burst, then the steady rate), as with any token
// bucket. Rounding T up keeps the rate at or below Failures per Window (by
// under Failures nanoseconds per window).
//
// Failures are not capped: concurrent requests that all passed Allow before
// any of them failed are each charged, so the client waits longer and its
// long-run rate stays within the limit.
//
// # Memory
//
// Clients are spread over up to 64 shards by a seeded hash of the key, each
// with its own mutex and a map from that 64-bit hash to the TAT (the key
// string itself is not kept; two clients would share a budget only on a
// 64-bit hash collision under a secret per-process seed). A shard holds at
// most its share of MaxClients entries, so memory is O(MaxClients) whatever
// the number of distinct addresses.
//
// When a new client fails in a full shard, 8 of its entries are sampled (map
// iteration starts at a random place): recovered entries among them are
// dropped; if there are none, the sampled entry with the smallest debt (the
// earliest TAT: fewest recent failures, least recently failed) is evicted.
// Evicting a client forgives its debt, so it may try again as if new; by
// evicting the smallest debt, forgiving a debt of D requires filling the
// shard with entries that each carry more than D, i.e. more failures than are
// forgiven, and under a flood of distinct addresses every address is new
// anyway. An entry is evicted only if it has the smallest debt of its sample,
// so a client that keeps failing, hence carries a large debt, outlives floods
// of clients that fail less.
//
// Recovered entries are also dropped lazily when their client is seen, and
// each shard sweeps all of its recovered entries at most once per Window
// (when it is next used), rebuilding its map when it has shrunk to a quarter
// of its peak so that the memory itself is returned.
package throttle

import (
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Defaults, used for Config's zero values.
const (
	DefaultFailures   = 60
	DefaultWindow     = time.Minute
	DefaultMaxClients = 100_000
)

// Upper bounds accepted by New (they keep the arithmetic far from overflow).
const (
	MaxFailures = 1_000_000_000
	MaxWindow   = 366 * 24 * time.Hour
)

const (
	maxShards  = 64
	sampleSize = 8 // entries examined per eviction
	// minPerShard is the smallest shard New makes (unless MaxClients is
	// smaller than that altogether).
	minPerShard = 2 * sampleSize
	shrinkMin   = 64 // maps smaller than this at their peak are never rebuilt

	// Times are nanoseconds since the Limiter's epoch, clamped to ±clockBound
	// (about ±73 years); TATs are capped at tatBound. Differences of such
	// values never overflow.
	clockBound = int64(1) << 61
	tatBound   = int64(1) << 62
)

// Config configures a Limiter. Zero values take the defaults; negative values
// are errors.
type Config struct {
	// Failures is the number of failed authentications allowed per Window
	// per client, and the burst allowed from rest (default 60, at least 1).
	Failures int
	// Window is the period over which Failures are allowed (default 1m, at
	// least 1s).
	Window time.Duration
	// MaxClients bounds the number of clients tracked at once (default
	// 100,000, at least 1); Len never exceeds it.
	MaxClients int
}

// DefaultConfig returns the configuration of `throttle 60 1m`.
func DefaultConfig() Config {
	return Config{Failures: DefaultFailures, Window: DefaultWindow, MaxClients: DefaultMaxClients}
}

// Limiter tracks failed authentications per client. It is safe for
// concurrent use. A nil *Limiter allows everything (throttle off).
type Limiter struct {
	seed      maphash.Seed
	epoch     time.Time // times are measured from here (monotonic when now comes from time.Now)
	interval  int64     // T: the cost of one failure, ns
	tolerance int64     // (Failures-1)·T: the debt up to which a client may try, ns
	sweep     int64     // how often a shard sweeps recovered entries, ns
	shift     uint      // shard index = hash >> shift
	shards    []shard
}

type shardState struct {
	mu        sync.Mutex
	n         atomic.Int64     // len(m), readable without mu
	m         map[uint64]int64 // key hash → TAT
	capacity  int              // most entries m may hold
	peak      int              // largest len(m) since m was made
	lastSweep int64
}

// shard pads shardState to its own cache lines (two, for adjacent-line
// prefetch) so that shards do not contend through false sharing.
type shard struct {
	shardState
	_ [128 - unsafe.Sizeof(shardState{})%128]byte
}

// withDefaults returns c with its zero fields set to the defaults.
func (cfg Config) withDefaults() Config {
	if cfg.Failures == 0 {
		cfg.Failures = DefaultFailures
	}
	if cfg.Window == 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.MaxClients == 0 {
		cfg.MaxClients = DefaultMaxClients
	}
	return cfg
}

// Check reports what New refuses in cfg (a zero field takes its default).
func (cfg Config) Check() error {
	cfg = cfg.withDefaults()
	var errs []error
	if cfg.Failures < 1 || cfg.Failures > MaxFailures {
		errs = append(errs, fmt.Errorf("throttle: failures %d out of range [1, %d]", cfg.Failures, MaxFailures))
	}
	if cfg.Window < time.Second || cfg.Window > MaxWindow {
		errs = append(errs, fmt.Errorf("throttle: window %v out of range [1s, %v]", cfg.Window, MaxWindow))
	}
	if cfg.MaxClients < 1 {
		errs = append(errs, fmt.Errorf("throttle: max clients %d must be at least 1", cfg.MaxClients))
	}
	return errors.Join(errs...)
}

// New returns a Limiter for cfg.
func New(cfg Config) (*Limiter, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	// As many shards as possible up to maxShards, each able to hold at
	// least minPerShard entries: eviction drops the lightest debtor of a
	// sample, and in a shard of one or two entries the client with the
	// largest debt would be the only candidate, so any new client would
	// reset its count.
	nshards := maxShards
	for nshards > 1 && cfg.MaxClients/nshards < minPerShard {
		nshards /= 2
	}
	return newLimiter(cfg, nshards), nil
}

// newLimiter builds a Limiter with nshards shards (a power of two, at most
// cfg.MaxClients) from a validated cfg.
func newLimiter(cfg Config, nshards int) *Limiter {
	w, f := int64(cfg.Window), int64(cfg.Failures)
	interval := (w + f - 1) / f
	l := &Limiter{
		seed:      maphash.MakeSeed(),
		epoch:     time.Now(),
		interval:  interval,
		tolerance: (f - 1) * interval,
		sweep:     w,
		shift:     uint(64 - bits.TrailingZeros(uint(nshards))),
		shards:    make([]shard, nshards),
	}
	per, extra := cfg.MaxClients/nshards, cfg.MaxClients%nshards
	for i := range l.shards {
		s := &l.shards[i]
		s.capacity = per
		if i < extra {
			s.capacity++
		}
		s.m = make(map[uint64]int64)
	}
	return l
}

// Allow reports whether client may try to authenticate at now. When it may
// not, retryAfter is how long until it may, rounded up to whole seconds (at
// least 1s) for a Retry-After header. A client with no recorded failures
// costs a hash and, unless its shard is empty, one uncontended map lookup.
func (l *Limiter) Allow(client string, now time.Time) (ok bool, retryAfter time.Duration) {
	if l == nil {
		return true, 0
	}
	h := maphash.String(l.seed, client)
	s := &l.shards[h>>l.shift]
	if s.n.Load() == 0 {
		return true, 0
	}
	t := l.clock(now)
	s.mu.Lock()
	s.maybeSweep(t, l.sweep)
	tat, found := s.m[h]
	if !found {
		s.mu.Unlock()
		return true, 0
	}
	if tat <= t { // recovered: forget it
		delete(s.m, h)
		s.n.Store(int64(len(s.m)))
		s.mu.Unlock()
		return true, 0
	}
	s.mu.Unlock()
	wait := tat - t - l.tolerance
	if wait <= 0 {
		return true, 0
	}
	return false, roundUpSeconds(wait)
}

// Fail records one failed authentication of client at now. Call it only for
// attempts that Allow let through: failures recorded while refused extend
// the refusal.
func (l *Limiter) Fail(client string, now time.Time) {
	if l == nil {
		return
	}
	l.take(client, now, false)
}

// Take reports whether client may do one more thing at now and, when it
// may, records it: Allow and Fail as one step under the shard's lock, so
// that concurrent callers never overshoot the budget (a rate limit, where
// Allow-then-Fail suits a failure count). When it may not, retryAfter is
// as Allow's and nothing is recorded.
func (l *Limiter) Take(client string, now time.Time) (ok bool, retryAfter time.Duration) {
	if l == nil {
		return true, 0
	}
	return l.take(client, now, true)
}

// take records one event of client at now; with check, only when the
// client is within its budget (else it returns the wait).
func (l *Limiter) take(client string, now time.Time, check bool) (bool, time.Duration) {
	h := maphash.String(l.seed, client)
	s := &l.shards[h>>l.shift]
	t := l.clock(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maybeSweep(t, l.sweep)
	tat, found := s.m[h]
	switch {
	case found && check && tat-t-l.tolerance > 0:
		return false, roundUpSeconds(tat - t - l.tolerance)
	case !found:
		if len(s.m) >= s.capacity {
			s.evict(t)
		}
		tat = t
	}
	s.m[h] = min(max(tat, t)+l.interval, tatBound)
	if n := len(s.m); n > s.peak {
		s.peak = n
	}
	s.n.Store(int64(len(s.m)))
	return true, 0
}

// Len returns the number of clients tracked, recovered ones not yet dropped
// included; it is at most MaxClients.
func (l *Limiter) Len() int {
	if l == nil {
		return 0
	}
	n := int64(0)
	for i := range l.shards {
		n += l.shards[i].n.Load()
	}
	return int(n)
}

// clock converts now to nanoseconds since the epoch, clamped to ±clockBound.
func (l *Limiter) clock(now time.Time) int64 {
	return min(max(int64(now.Sub(l.epoch)), -clockBound), clockBound)
}

// evict makes room for one entry in a full shard: it drops the recovered
// entries among a sample, or else the sampled entry with the earliest TAT
// (the smallest debt). Called with s.mu held and len(s.m) ≥ 1.
func (s *shard) evict(t int64) {
	var (
		victim    uint64
		victimTAT = int64(math.MaxInt64)
		seen      int
		freed     bool
	)
	for k, tat := range s.m { // starts at a random place
		if tat <= t {
			delete(s.m, k)
			freed = true
		} else if tat < victimTAT {
			victim, victimTAT = k, tat
		}
		if seen++; seen == sampleSize {
			break
		}
	}
	if !freed {
		delete(s.m, victim)
	}
}

// maybeSweep drops every recovered entry if the last sweep was at least
// every ago, and rebuilds the map once it has shrunk well below its peak, so
// that its memory is returned. Called with s.mu held.
func (s *shard) maybeSweep(t, every int64) {
	if t < s.lastSweep { // the caller's clock went back
		s.lastSweep = t
		return
	}
	if t-s.lastSweep < every {
		return
	}
	s.lastSweep = t
	for k, tat := range s.m {
		if tat <= t {
			delete(s.m, k)
		}
	}
	if s.peak >= shrinkMin && len(s.m)*4 <= s.peak {
		m := make(map[uint64]int64, len(s.m))
		for k, tat := range s.m {
			m[k] = tat
		}
		s.m, s.peak = m, len(m)
	}
	s.n.Store(int64(len(s.m)))
}

// roundUpSeconds rounds a positive number of nanoseconds up to whole seconds.
func roundUpSeconds(ns int64) time.Duration {
	secs := ns / int64(time.Second)
	if ns%int64(time.Second) != 0 {
		secs++
	}
	return time.Duration(max(secs, 1)) * time.Second
}
