package tokencache

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"testing"

	"github.com/deplo-sh/deplo-auth/keystore"
)

// bulkRevoked is how many recently changed hashes the invalidation
// benchmarks keep remembered, as just after a bulk revocation (issue 15
// item 8).
const bulkRevoked = 50_000

// numberedHashes returns n distinct hashes spread like real ones.
func numberedHashes(n int) []keystore.Hash {
	hashes := make([]keystore.Hash, n)
	for i := range hashes {
		hashes[i] = sha256.Sum256(binary.LittleEndian.AppendUint64(nil, uint64(i)))
	}
	return hashes
}

// newBulkRevokedCache returns a cache that has just been told of
// bulkRevoked changed hashes, and those hashes.
func newBulkRevokedCache(b *testing.B) (*Cache, []keystore.Hash) {
	b.Helper()
	c, err := New(newStore(), Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	hashes := numberedHashes(bulkRevoked)
	for _, h := range hashes {
		c.changes.record(h) // as Invalidate does while a lookup is in flight
	}
	return c, hashes
}

// BenchmarkInvalidate measures pushed changes per second while 50,000
// recently changed hashes are remembered; each iteration changes one of them
// again, so the number remembered stays the same. idle: no lookup in flight
// (nothing to record, the common case for a bulk revocation's hashes);
// lookup_in_flight: every change is recorded.
func BenchmarkInvalidate(b *testing.B) {
	for _, inFlight := range []bool{false, true} {
		name := "idle"
		if inFlight {
			name = "lookup_in_flight"
		}
		b.Run(name, func(b *testing.B) {
			c, hashes := newBulkRevokedCache(b)
			if inFlight {
				c.lookups.Add(1) // as a request asking the store would
				defer c.lookups.Add(-1)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				c.Invalidate(hashes[i%len(hashes)])
				i++
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "invalidations/s")
		})
	}
}

// BenchmarkLookupMiss measures a cache miss: an unknown token, answered by
// the store. While invalidating, another goroutine applies a stream of
// changes with 50,000 remembered, and a miss must not wait for them; its
// allocations then include that goroutine's.
func BenchmarkLookupMiss(b *testing.B) {
	for _, invalidating := range []bool{false, true} {
		b.Run(map[bool]string{false: "quiet", true: "invalidating"}[invalidating], func(b *testing.B) {
			c, hashes := newBulkRevokedCache(b)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			if invalidating {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						c.Invalidate(hashes[i%len(hashes)])
					}
				}()
			}
			b.ReportAllocs()
			var unknown keystore.Hash // never the same twice: every lookup misses
			for i := uint64(0); b.Loop(); i++ {
				binary.LittleEndian.PutUint64(unknown[:], i)
				unknown[len(unknown)-1] = byte(i) // all change-log shards
				c.Lookup(context.Background(), unknown)
			}
			b.StopTimer()
			close(stop)
			wg.Wait()
		})
	}
}

// benchmarkCachedLookup measures a lookup answered from the cache: the
// positive one for a token the store knows, the negative one otherwise.
func benchmarkCachedLookup(b *testing.B, known bool) {
	s := newStore()
	h := hashOf(9)
	if known {
		s.put(h, &keystore.Token{ID: "tok_9", Workspace: "ws"})
	}
	c, _ := New(s, Config{})
	defer c.Close()
	for i := 0; i < 100; i++ {
		c.Lookup(context.Background(), h)
		c.positive.Wait()
		c.negative.Wait()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.Lookup(context.Background(), h)
	}
}

func BenchmarkLookupHit(b *testing.B)         { benchmarkCachedLookup(b, true) }
func BenchmarkLookupNegativeHit(b *testing.B) { benchmarkCachedLookup(b, false) }
