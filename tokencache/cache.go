// Package tokencache resolves API-token hashes to stored tokens through a
// bounded ristretto cache in front of a key store. Positive and negative
// answers live in separate caches, so a flood of unknown tokens cannot evict
// the real ones; concurrent misses for one hash make a single store lookup.
package tokencache

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"golang.org/x/sync/singleflight"

	"github.com/deplo-sh/deplo-auth/grant"
	"github.com/deplo-sh/deplo-auth/keystore"
)

// Defaults for Config's zero values.
const (
	DefaultTTL         = 5 * time.Minute
	DefaultNegativeTTL = 30 * time.Second
	DefaultMaxEntries  = 100_000
	// DefaultLookupTimeout bounds one store lookup. It is shared by every
	// request waiting on that hash, so it does not follow any one request's
	// context.
	DefaultLookupTimeout = 5 * time.Second
)

// Config configures a Cache. Zero values take the defaults above.
type Config struct {
	TTL, NegativeTTL time.Duration
	MaxEntries       int64
	LookupTimeout    time.Duration
	// OnUnknownScopes is called, at most once per store lookup, with a token
	// id and the scope names it carries that are not scopes (never granted).
	OnUnknownScopes func(tokenID string, unknown []string)
	// OnStoreLookup is called after every store lookup with its error
	// (nil, keystore.ErrNotFound or a failure) and duration, for metrics.
	OnStoreLookup func(err error, d time.Duration)
	// StaleIfError keeps known tokens this long past TTL and serves them
	// when the store fails. Off (0) by default: during an outage a token
	// revoked meanwhile keeps working for up to this long.
	StaleIfError time.Duration
	// OnInvalidate is called for each change a watching store pushes
	// (all=true: every entry dropped), for metrics.
	OnInvalidate func(all bool)
	// OnEvict is called when a full cache evicts an entry to make room
	// (not when one expires), for metrics; negative says which cache.
	OnEvict func(negative bool)
}

// Entry is a resolved token: the stored record and the principal it stands
// for. Entries are shared between requests and must not be modified.
type Entry struct {
	Token     *keystore.Token
	Principal grant.Principal

	hash       keystore.Hash
	generation uint64
	freshUntil time.Time // only with StaleIfError
	checkedAt  time.Time // when the store gave this answer (see unwatched)
}

// Result says where an answer came from, for metrics.
type Result uint8

// Where an answer came from.
const (
	Hit Result = iota
	NegativeHit
	Miss
	// Stale is a known token served past its TTL because the store failed
	// (StaleIfError).
	Stale
)

// String returns the metric label value.
func (r Result) String() string {
	switch r {
	case Hit:
		return "hit"
	case NegativeHit:
		return "negative_hit"
	case Stale:
		return "stale"
	}
	return "miss"
}

// Cache is safe for concurrent use.
type Cache struct {
	store    keystore.Store
	cfg      Config
	positive *ristretto.Cache[uint64, *Entry]
	negative *ristretto.Cache[uint64, *Entry]
	flight   singleflight.Group
	counts   [4]atomic.Uint64 // by Result
	// closed is set by Close. ristretto's Close is not safe against a Get
	// or Set running at the same moment, and a lock around every Get would
	// cost every request; instead requests read this flag (a read-only
	// cache line) and the ristretto caches are closed after closeGrace.
	closed atomic.Bool

	// changes numbers what a watching store reports changed, so that an
	// answer read before a change is neither cached nor shared with
	// requests that arrived after it.
	changes changeLog
	// lookups counts the requests between deciding to ask the store and
	// having their answer (and cached it, or not): a change matters to the
	// change log only while one is (see Invalidate).
	lookups atomic.Int64
	// beforeCacheWrite, set by tests only, runs between a lookup's "did the
	// hash change?" check and its cache write.
	beforeCacheWrite func(h keystore.Hash)

	unwatched unwatched // re-checks while the store's listener is down
}

// Stats counts lookups by result since the cache was made, and the entries
// held now.
type Stats struct {
	Hits, NegativeHits, Misses, Stale uint64
	Entries, NegativeEntries          int64
}

// Stats returns the lookup counts and entry counts. The entry counts take
// the caches' policy locks: call it for status and metrics, not per request.
func (c *Cache) Stats() Stats {
	st := Stats{Hits: c.counts[Hit].Load(), NegativeHits: c.counts[NegativeHit].Load(),
		Misses: c.counts[Miss].Load(), Stale: c.counts[Stale].Load()}
	if !c.closed.Load() {
		st.Entries = c.positive.MaxCost() - c.positive.RemainingCost()
		st.NegativeEntries = c.negative.MaxCost() - c.negative.RemainingCost()
	}
	return st
}

// New returns a cache in front of store.
func New(store keystore.Store, cfg Config) (*Cache, error) {
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.NegativeTTL <= 0 {
		cfg.NegativeTTL = DefaultNegativeTTL
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	if cfg.LookupTimeout <= 0 {
		cfg.LookupTimeout = DefaultLookupTimeout
	}
	c := &Cache{store: store, cfg: cfg}
	// Long enough that a lookup never outlives the changes it must see.
	c.changes.window = 2 * cfg.LookupTimeout
	c.unwatched.init(store)
	var err error
	if c.positive, err = newRistretto(cfg.MaxEntries, cfg.OnEvict, false); err != nil {
		return nil, fmt.Errorf("token cache: %w", err)
	}
	if c.negative, err = newRistretto(cfg.MaxEntries, cfg.OnEvict, true); err != nil {
		c.positive.Close()
		return nil, fmt.Errorf("negative token cache: %w", err)
	}
	return c, nil
}

func newRistretto(maxEntries int64, onEvict func(negative bool), negative bool) (*ristretto.Cache[uint64, *Entry], error) {
	cfg := &ristretto.Config[uint64, *Entry]{
		NumCounters:        10 * maxEntries,
		MaxCost:            maxEntries, // every entry costs 1
		BufferItems:        64,
		IgnoreInternalCost: true,
	}
	if onEvict != nil {
		// Every entry is set with a TTL, so an evicted item without an
		// expiration is a capacity victim, not an expired entry.
		cfg.OnEvict = func(it *ristretto.Item[*Entry]) {
			if it.Expiration.IsZero() {
				onEvict(negative)
			}
		}
	}
	return ristretto.NewCache(cfg)
}

// key is the first 8 bytes of the SHA-256; the entry keeps the whole hash
// and a hit is only a hit when all 32 bytes agree.
func key(h keystore.Hash) uint64 { return binary.LittleEndian.Uint64(h[:8]) }

// Lookup resolves h. It returns a nil entry and nil error for a token the
// store does not know, and an error only for a technical failure, which is
// never cached. The caller checks Entry.Token.Active at request time, so a
// scheduled revocation or expiry takes effect at its instant.
func (c *Cache) Lookup(ctx context.Context, h keystore.Hash) (*Entry, Result, error) {
	if c.closed.Load() {
		return c.lookupClosed(ctx, h)
	}
	gen := c.store.Generation()
	k := key(h)
	var stale, unchecked *Entry
	if e, ok := c.positive.Get(k); ok && e.hash == h {
		switch {
		case c.cfg.StaleIfError > 0 && !time.Now().Before(e.freshUntil):
			stale = e // past TTL: only for when the store fails
		case e.generation == gen && c.unwatched.mustRecheck(e):
			unchecked = e // served only if the store cannot re-check it
		case e.generation == gen:
			c.counts[Hit].Add(1)
			return e, Hit, nil
		case c.cfg.StaleIfError > 0:
			stale = e
		}
	}
	if e, ok := c.negative.Get(k); ok && e.hash == h && e.generation == gen {
		c.counts[NegativeHit].Add(1)
		return nil, NegativeHit, nil
	}
	// Requests share a store lookup only while h has not changed and the
	// store has not reloaded: one that arrives after a change starts its
	// own lookup instead of joining one that may have read the row (or the
	// key file) before the change.
	c.lookups.Add(1)
	v, err, _ := c.flight.Do(flightKey(h, c.changes.last(h), gen), func() (any, error) {
		return c.fill(ctx, h)
	})
	c.lookups.Add(-1)
	if err != nil {
		if unchecked != nil {
			c.unwatched.recheckFailed()
			c.counts[Hit].Add(1)
			return unchecked, Hit, nil
		}
		if stale != nil {
			c.counts[Stale].Add(1)
			return stale, Stale, nil
		}
		c.counts[Miss].Add(1)
		return nil, Miss, err
	}
	c.counts[Miss].Add(1)
	e := v.(*Entry)
	if e.Token == nil {
		return nil, Miss, nil
	}
	return e, Miss, nil
}

// Watch subscribes the cache to the changes a watching store pushes (a
// PostgreSQL NOTIFY): each changed hash is dropped at once, and everything
// when changes may have been lost. It returns nil for a store that does not
// push changes (its Generation covers reloads).
func (c *Cache) Watch() (stop func()) {
	w, ok := c.store.(keystore.Watcher)
	if !ok {
		return nil
	}
	return w.Watch(func(h keystore.Hash, all bool) {
		if all {
			c.PurgeAll()
		} else {
			c.Invalidate(h)
		}
		if c.cfg.OnInvalidate != nil {
			c.cfg.OnInvalidate(all)
		}
	})
}

// flightKey names the shared store lookup for h as of its change numbered
// change and the store's generation gen.
func flightKey(h keystore.Hash, change, gen uint64) string {
	var k [len(h) + 16]byte
	copy(k[:], h[:])
	binary.LittleEndian.PutUint64(k[len(h):], change)
	binary.LittleEndian.PutUint64(k[len(h)+8:], gen)
	return string(k[:])
}

// Invalidate drops h now, keeps any lookup already in flight for h from
// caching what it read before the change, and makes requests arriving from
// now on look h up afresh. It costs the same however many changes are
// remembered.
//
// The change is recorded in the change log only while some request is
// between deciding to ask the store and having its answer (lookups): the
// record is what keeps such a lookup from caching, or sharing with later
// requests, what it read before the change. With none, no lookup began
// before the change (a lookup's flight is registered only while its
// leader is counted), and every later one reads the store after it
// (the store reports a change once it is committed), so dropping a held
// entry is all there is to do; a bulk revocation of thousands of tokens
// this instance never saw then costs a look in each cache per hash.
func (c *Cache) Invalidate(h keystore.Hash) {
	if c.lookups.Load() != 0 {
		c.changes.record(h)
	}
	c.drop(h)
}

// fill asks the store and caches the answer under the generation read before
// asking, so an answer that raced with a reload is never served afterwards,
// and only if h did not change while it asked.
func (c *Cache) fill(ctx context.Context, h keystore.Hash) (*Entry, error) {
	gen := c.store.Generation()
	since := c.changes.latest()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.LookupTimeout)
	defer cancel()
	start := time.Now()
	tok, err := c.store.Lookup(ctx, h)
	if c.cfg.OnStoreLookup != nil {
		c.cfg.OnStoreLookup(err, time.Since(start))
	}
	switch {
	case errors.Is(err, keystore.ErrNotFound):
		e := &Entry{hash: h, generation: gen}
		c.cacheUnlessChanged(c.negative, e, c.cfg.NegativeTTL, since)
		return e, nil
	case err != nil:
		return nil, err
	}
	e := c.newEntry(tok, h, gen)
	if c.closed.Load() {
		return e, nil
	}
	c.negative.Del(key(h))
	ttl := c.cfg.TTL
	if c.cfg.StaleIfError > 0 {
		e.freshUntil = time.Now().Add(c.cfg.TTL)
		ttl += c.cfg.StaleIfError
	}
	c.cacheUnlessChanged(c.positive, e, ttl, since)
	return e, nil
}

// cacheUnlessChanged caches e unless its hash changed after the change
// numbered since: an answer read before a change is returned to the
// requests that shared the lookup (they arrived before the change) and not
// kept. The check and the write hold the hash's change-log lock, which
// Invalidate and PurgeAll take to record a change, so a change is either
// seen here or recorded after the write, which it then deletes.
func (c *Cache) cacheUnlessChanged(cache *ristretto.Cache[uint64, *Entry], e *Entry, ttl time.Duration, since uint64) {
	s := c.changes.shard(e.hash)
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.changes.lastLocked(s, e.hash) > since || c.closed.Load() {
		return
	}
	if c.beforeCacheWrite != nil {
		c.beforeCacheWrite(e.hash)
	}
	cache.SetWithTTL(key(e.hash), e, 1, ttl)
	// ristretto applies sets asynchronously. Waiting under the lock means
	// the entry is in place before a change recorded after this write
	// deletes it; and (on the miss path only) that the requests sharing
	// this lookup return with the entry findable, so a stampede makes
	// exactly one query.
	cache.Wait()
}

func (c *Cache) newEntry(tok *keystore.Token, h keystore.Hash, gen uint64) *Entry {
	scopes, unknown := grant.ParseScopeNames(tok.Scopes)
	if len(unknown) > 0 && c.cfg.OnUnknownScopes != nil {
		c.cfg.OnUnknownScopes(tok.ID, unknown)
	}
	return &Entry{
		Token: tok,
		Principal: grant.Principal{
			Kind:      grant.KindAPIKey,
			Subject:   tok.ID,
			Workspace: tok.Workspace,
			Project:   tok.Project,
			Scopes:    scopes,
		},
		hash:       h,
		generation: gen,
		checkedAt:  time.Now(),
	}
}

// lookupClosed answers a request still running on a closed cache (a config
// being unloaded) from the store, caching nothing.
func (c *Cache) lookupClosed(ctx context.Context, h keystore.Hash) (*Entry, Result, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.LookupTimeout)
	defer cancel()
	tok, err := c.store.Lookup(ctx, h)
	switch {
	case errors.Is(err, keystore.ErrNotFound):
		return nil, Miss, nil
	case err != nil:
		return nil, Miss, err
	}
	return c.newEntry(tok, h, c.store.Generation()), Miss, nil
}

// drop removes h from both caches. Only a held entry is deleted: a
// deletion costs a trip through ristretto's buffer and its policy
// goroutine, and a bulk revocation tells every instance of thousands of
// hashes it never cached. Looking first is safe because the one write to
// the caches (cacheUnlessChanged) finishes (Wait) within a counted lookup
// and under the change-log lock that Invalidate's record then takes before
// calling drop: an entry written before the change is visible here, and
// one written after it was read after the change.
func (c *Cache) drop(h keystore.Hash) {
	if c.closed.Load() {
		return
	}
	k := key(h)
	if _, held := c.positive.GetTTL(k); held {
		c.positive.Del(k)
	}
	if _, held := c.negative.GetTTL(k); held {
		c.negative.Del(k)
	}
}

// PurgeAll drops every entry, and keeps lookups already in flight from
// caching what they read before.
func (c *Cache) PurgeAll() {
	c.changes.purge()
	if c.closed.Load() {
		return
	}
	c.positive.Clear()
	c.negative.Clear()
}

// closeGrace is how long after Close the ristretto caches are released:
// longer than a request that read the closed flag just before Close can
// take to reach its Get or Set (a store lookup is bounded by LookupTimeout,
// which is added to it).
const closeGrace = 10 * time.Second

// Close stops caching at once; later lookups go to the store. The caches'
// goroutines and memory are released closeGrace plus LookupTimeout later.
func (c *Cache) Close() {
	if c.closed.Swap(true) {
		return
	}
	time.AfterFunc(closeGrace+c.cfg.LookupTimeout, func() {
		c.positive.Close()
		c.negative.Close()
	})
}

// Cached returns h's entry only when the cache already holds it as a
// known, current token (what Lookup would answer as a Hit): no store
// lookup, no single-flight, no count. The brute-force guard uses it to let
// a throttled client through with a credential already known to be valid.
func (c *Cache) Cached(h keystore.Hash) *Entry {
	if c.closed.Load() {
		return nil
	}
	e, ok := c.positive.Get(key(h))
	switch {
	case !ok || e.hash != h || e.generation != c.store.Generation() || c.unwatched.mustRecheck(e):
		return nil
	case c.cfg.StaleIfError > 0 && !time.Now().Before(e.freshUntil):
		return nil
	}
	return e
}
