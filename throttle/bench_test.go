package throttle

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// populated returns a default Limiter tracking n failing clients, so that
// every shard is non-empty (the situation under attack).
func populated(b *testing.B, n int) *Limiter {
	l := newT(b, DefaultConfig())
	for i := range n {
		l.Fail("203.0.113."+strconv.Itoa(i), t0)
	}
	return l
}

// BenchmarkAllowUnknownEmpty: the common case, no client has failed.
func BenchmarkAllowUnknownEmpty(b *testing.B) {
	l := newT(b, DefaultConfig())
	b.ReportAllocs()
	for b.Loop() {
		l.Allow("198.51.100.7", t0)
	}
}

// BenchmarkAllowUnknown: a client with no failures while others are tracked.
func BenchmarkAllowUnknown(b *testing.B) {
	l := populated(b, 10_000)
	b.ReportAllocs()
	for b.Loop() {
		if ok, _ := l.Allow("198.51.100.7", t0); !ok {
			b.Fatal("refused")
		}
	}
}

// BenchmarkAllowFail: a failing client (Allow then Fail), throttled most of
// the time.
func BenchmarkAllowFail(b *testing.B) {
	l := populated(b, 10_000)
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		if ok, _ := l.Allow("192.0.2.66", now); ok {
			l.Fail("192.0.2.66", now)
		}
		now = now.Add(time.Millisecond)
	}
}

// BenchmarkFailDistinct: every failure from a new address with the shards
// full (a flood: eviction on every call).
func BenchmarkFailDistinct(b *testing.B) {
	l := newT(b, Config{MaxClients: 10_000})
	keys := make([]string, 1<<16)
	for i := range keys {
		keys[i] = "c" + strconv.Itoa(i)
	}
	for _, k := range keys {
		l.Fail(k, t0)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		l.Fail(keys[i&(len(keys)-1)], t0)
		i++
	}
}

func BenchmarkAllowUnknownParallel(b *testing.B) {
	l := populated(b, 10_000)
	var id atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		c := "198.51.100." + strconv.Itoa(int(id.Add(1)))
		for pb.Next() {
			l.Allow(c, t0)
		}
	})
}

// BenchmarkAllowFailParallel: each goroutine a different failing client.
func BenchmarkAllowFailParallel(b *testing.B) {
	l := populated(b, 10_000)
	var id atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		c := "192.0.2." + strconv.Itoa(int(id.Add(1)))
		now := t0
		for pb.Next() {
			if ok, _ := l.Allow(c, now); ok {
				l.Fail(c, now)
			}
			now = now.Add(time.Millisecond)
		}
	})
}

// BenchmarkAllowFailParallelSameKey: every goroutine is the same client (the
// worst contention: one shard).
func BenchmarkAllowFailParallelSameKey(b *testing.B) {
	l := populated(b, 10_000)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Allow("192.0.2.66", t0)
			l.Fail("192.0.2.66", t0)
		}
	})
}

func BenchmarkClientKeyIPv4(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		ClientKey("203.0.113.9")
	}
}

func BenchmarkClientKeyIPv6(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		ClientKey("2001:db8:1:2:3:4:5:6")
	}
}
