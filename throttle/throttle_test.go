package throttle

import (
	"fmt"
	"hash/maphash"
	"reflect"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func newT(t testing.TB, cfg Config) *Limiter {
	t.Helper()
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func wantAllow(t *testing.T, l *Limiter, client string, now time.Time) {
	t.Helper()
	if ok, ra := l.Allow(client, now); !ok || ra != 0 {
		t.Fatalf("Allow(%q, t0+%v) = %v, %v; want true, 0", client, now.Sub(t0), ok, ra)
	}
}

func wantRefuse(t *testing.T, l *Limiter, client string, now time.Time, retry time.Duration) {
	t.Helper()
	if ok, ra := l.Allow(client, now); ok || ra != retry {
		t.Fatalf("Allow(%q, t0+%v) = %v, %v; want false, %v", client, now.Sub(t0), ok, ra, retry)
	}
}

func TestNewValidates(t *testing.T) {
	bad := []Config{
		{Failures: -1},
		{Failures: MaxFailures + 1},
		{Window: time.Second - 1},
		{Window: -time.Minute},
		{Window: MaxWindow + 1},
		{MaxClients: -1},
	}
	for _, cfg := range bad {
		if l, err := New(cfg); err == nil || l != nil {
			t.Errorf("New(%+v) = %v, %v; want an error", cfg, l, err)
		}
	}
	good := []Config{{}, DefaultConfig(), {Failures: 1, Window: time.Second, MaxClients: 1},
		{Failures: MaxFailures, Window: MaxWindow, MaxClients: 1 << 20}, {Failures: MaxFailures, Window: time.Second}}
	for _, cfg := range good {
		if _, err := New(cfg); err != nil {
			t.Errorf("New(%+v): %v", cfg, err)
		}
	}
	l := newT(t, Config{})
	if l.interval != int64(time.Second) || l.tolerance != int64(59*time.Second) || len(l.shards) != maxShards {
		t.Errorf("defaults: interval %v tolerance %v shards %d", time.Duration(l.interval), time.Duration(l.tolerance), len(l.shards))
	}
}

// TestBurstAndRecovery checks the documented GCRA semantics precisely:
// Failures in a burst, then one more per T = Window/Failures, full recovery
// after Window.
func TestBurstAndRecovery(t *testing.T) {
	l := newT(t, Config{Failures: 5, Window: 10 * time.Second}) // T = 2s
	const c = "192.0.2.1"
	for range 5 {
		wantAllow(t, l, c, t0)
		l.Fail(c, t0)
	}
	wantRefuse(t, l, c, t0, 2*time.Second)
	wantRefuse(t, l, c, t0.Add(time.Second), time.Second)
	wantRefuse(t, l, c, t0.Add(1500*time.Millisecond), time.Second) // 0.5s rounded up
	wantRefuse(t, l, c, t0.Add(2*time.Second-1), time.Second)       // 1ns rounded up
	wantAllow(t, l, c, t0.Add(2*time.Second))                       // one failure has leaked out

	// Failing while allowed puts it back to refused for another T.
	l.Fail(c, t0.Add(2*time.Second))
	wantRefuse(t, l, c, t0.Add(2*time.Second), 2*time.Second)

	// Waiting k·T gives k attempts back.
	now := t0.Add(8 * time.Second) // debt was 10s at t0+2s, now 4s: 3 attempts
	for range 3 {
		wantAllow(t, l, c, now)
		l.Fail(c, now)
	}
	wantRefuse(t, l, c, now, 2*time.Second)

	// Window after the last failure the client is fully recovered and
	// forgotten, and gets a whole burst again.
	now = now.Add(10 * time.Second)
	wantAllow(t, l, c, now)
	if n := l.Len(); n != 0 {
		t.Fatalf("Len after recovery = %d, want 0 (dropped lazily)", n)
	}
	for range 5 {
		wantAllow(t, l, c, now)
		l.Fail(c, now)
	}
	wantRefuse(t, l, c, now, 2*time.Second)
}

// TestSpreadFailures: failures spaced exactly T apart never throttle; spaced
// a little closer, they do after about Failures of them.
func TestSpreadFailures(t *testing.T) {
	l := newT(t, Config{Failures: 60, Window: time.Minute})
	now := t0
	for i := range 1000 {
		if ok, _ := l.Allow("a", now); !ok {
			t.Fatalf("failure %d spaced by T refused", i)
		}
		l.Fail("a", now)
		now = now.Add(time.Second)
	}
	now = t0.Add(time.Hour)
	n := 0
	for ; n < 10000; n++ {
		if ok, _ := l.Allow("b", now); !ok {
			break
		}
		l.Fail("b", now)
		now = now.Add(900 * time.Millisecond) // 0.1s of debt per failure
	}
	// The debt after n failures is 1s + (n-1)·0.1s; refused once that is
	// more than 60s: n-1 > 590.
	if n != 591 {
		t.Fatalf("refused after %d failures at 0.9s spacing, want 591", n)
	}
}

// TestUnevenWindow: Window not a multiple of Failures still allows exactly
// Failures in a burst, and never more than Failures per Window.
func TestUnevenWindow(t *testing.T) {
	for _, f := range []int{1, 3, 7, 13, 1000, 99991} {
		l := newT(t, Config{Failures: f, Window: time.Minute})
		for i := range f {
			if ok, _ := l.Allow("c", t0); !ok {
				t.Fatalf("Failures %d: refused after %d", f, i)
			}
			l.Fail("c", t0)
		}
		if ok, ra := l.Allow("c", t0); ok || ra < time.Second {
			t.Fatalf("Failures %d: allowed after the burst (%v, %v)", f, ok, ra)
		}
		// Just before a Window has passed, less than a whole burst is
		// back: no half-open Window holds more than 2·Failures-1.
		if n := burst(l, "c", t0.Add(time.Minute-1), f+1); n > f-1 {
			t.Fatalf("Failures %d: %d more failures allowed 1ns before the end of the window", f, n)
		}
		// Failures·T after its last failure, a client is fully recovered.
		T := (time.Minute + time.Duration(f) - 1) / time.Duration(f)
		last := t0.Add(time.Minute - 1)
		if n := burst(l, "c", last.Add(time.Duration(f)*T), f+1); n != f {
			t.Fatalf("Failures %d: burst of %d after recovery, want %d", f, n, f)
		}
	}
}

// burst counts the failures client is allowed at now, up to most.
func burst(l *Limiter, client string, now time.Time, most int) int {
	n := 0
	for ; n < most; n++ {
		if ok, _ := l.Allow(client, now); !ok {
			break
		}
		l.Fail(client, now)
	}
	return n
}

// TestLazyDrop: a recovered client is forgotten when next seen, between
// sweeps.
func TestLazyDrop(t *testing.T) {
	l := newLimiter(Config{Failures: 2, Window: 10 * time.Second, MaxClients: 100}, 1)
	l.Fail("a", t0)
	l.Fail("b", t0.Add(time.Second))
	l.shards[0].lastSweep = l.clock(t0.Add(5 * time.Second)) // next sweep at t0+15s
	wantAllow(t, l, "a", t0.Add(12*time.Second))
	if n := l.Len(); n != 1 {
		t.Fatalf("Len = %d, want 1: a recovered and was seen", n)
	}
	l.Fail("a", t0.Add(12*time.Second)) // a fresh entry, not the old debt
	wantAllow(t, l, "a", t0.Add(12*time.Second))
	l.Fail("a", t0.Add(12*time.Second))
	wantRefuse(t, l, "a", t0.Add(12*time.Second), 5*time.Second)
}

func TestOneFailurePerWindow(t *testing.T) {
	l := newT(t, Config{Failures: 1, Window: time.Hour})
	wantAllow(t, l, "x", t0)
	l.Fail("x", t0)
	wantRefuse(t, l, "x", t0, time.Hour)
	wantRefuse(t, l, "x", t0.Add(59*time.Minute+30*time.Second), 30*time.Second)
	wantAllow(t, l, "x", t0.Add(time.Hour))
}

func TestOtherClientsUnaffected(t *testing.T) {
	l := newT(t, Config{Failures: 3, Window: time.Minute})
	for range 100 {
		l.Fail("attacker", t0)
	}
	if ok, _ := l.Allow("attacker", t0); ok {
		t.Fatal("attacker allowed")
	}
	for i := range 1000 {
		wantAllow(t, l, "198.51.100."+strconv.Itoa(i), t0)
	}
	// Another client's own failures are counted on its own.
	for range 2 {
		l.Fail("neighbour", t0)
	}
	wantAllow(t, l, "neighbour", t0)
}

func TestIPv6Grouping(t *testing.T) {
	l := newT(t, Config{Failures: 2, Window: time.Minute})
	l.Fail(ClientKey("2001:db8:1:2::1"), t0)
	l.Fail(ClientKey("2001:db8:1:2:ffff:ffff:ffff:ffff"), t0)
	wantRefuse(t, l, ClientKey("2001:db8:1:2:dead:beef::"), t0, 30*time.Second)
	wantAllow(t, l, ClientKey("2001:db8:1:3::1"), t0)

	l.Fail(ClientKey("192.0.2.7"), t0)
	l.Fail(ClientKey("::ffff:192.0.2.7"), t0)
	wantRefuse(t, l, ClientKey("192.0.2.7"), t0, 30*time.Second)
	wantAllow(t, l, ClientKey("192.0.2.8"), t0)
}

func TestNilLimiter(t *testing.T) {
	var l *Limiter
	l.Fail("a", t0)
	if ok, ra := l.Allow("a", t0); !ok || ra != 0 || l.Len() != 0 {
		t.Fatal("nil Limiter must allow everything")
	}
}

// TestMemoryBound: a million distinct clients failing once each, with a
// heavy attacker among them, keep at most MaxClients entries, and the
// attacker stays throttled throughout.
func TestMemoryBound(t *testing.T) {
	const (
		maxClients = 10_000
		flood      = 1_000_000
		step       = 100 * time.Microsecond // the flood lasts 100s
	)
	l := newT(t, Config{Failures: 60, Window: time.Minute, MaxClients: maxClients})
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	attacker := ClientKey("2001:db8:bad::1")
	allowed := 0
	now := t0
	var buf []byte
	for i := range flood {
		buf = strconv.AppendInt(buf[:0], int64(i), 10)
		l.Fail(string(buf), now)
		if i%10 == 0 { // the attacker tries as fast as it is let
			if ok, _ := l.Allow(attacker, now); ok {
				allowed++
				l.Fail(attacker, now)
			}
		}
		if n := l.Len(); i%1000 == 0 && n > maxClients {
			t.Fatalf("after %d clients Len = %d > %d", i, n, maxClients)
		}
		now = now.Add(step)
	}
	if n := l.Len(); n > maxClients {
		t.Fatalf("Len = %d > %d", n, maxClients)
	}
	// 60 in the burst, then one per second for 100s.
	elapsed := now.Sub(t0)
	if limit := 60 + int(elapsed/time.Second) + 1; allowed > limit {
		t.Fatalf("attacker made %d attempts in %v, want at most %d: eviction forgave it", allowed, elapsed, limit)
	}
	if allowed < 60+int(elapsed/time.Second)-1 {
		t.Fatalf("attacker made only %d attempts in %v", allowed, elapsed)
	}
	// It is due exactly one attempt now, its debt being back to 59s.
	if ok, _ := l.Allow(attacker, now); ok {
		l.Fail(attacker, now)
	}
	if ok, ra := l.Allow(attacker, now); ok || ra != time.Second {
		t.Fatalf("attacker not throttled at the end of the flood: %v, %v", ok, ra)
	}

	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 4<<20 {
		t.Errorf("heap grew by %d bytes for %d tracked clients", grew, l.Len())
	}

	// Once everybody has recovered, touching the shards sweeps them and
	// rebuilds their maps.
	maps := make([]unsafe.Pointer, len(l.shards))
	for i := range l.shards {
		maps[i] = reflect.ValueOf(l.shards[i].m).UnsafePointer()
	}
	now = now.Add(2 * time.Minute)
	for i := range 40 * maxShards { // every shard, all but surely
		l.Allow("probe"+strconv.Itoa(i), now)
	}
	if n := l.Len(); n != 0 {
		t.Fatalf("Len after recovery and sweep = %d, want 0", n)
	}
	for i := range l.shards {
		if reflect.ValueOf(l.shards[i].m).UnsafePointer() == maps[i] {
			t.Fatalf("shard %d: map not rebuilt after the sweep emptied it", i)
		}
	}
}

// TestLenNeverExceedsSmallMax covers MaxClients smaller than the number of
// shards.
func TestLenNeverExceedsSmallMax(t *testing.T) {
	for _, m := range []int{1, 2, 3, 63, 64, 65, 100} {
		l := newT(t, Config{MaxClients: m})
		for i := range 5000 {
			l.Fail(strconv.Itoa(i), t0)
			if n := l.Len(); n > m {
				t.Fatalf("MaxClients %d: Len %d", m, n)
			}
		}
		if n := l.Len(); n != m {
			t.Fatalf("MaxClients %d: Len %d after a flood, want it full", m, n)
		}
	}
}

// TestEvictionPolicy uses a single shard so that every entry is sampled.
func TestEvictionPolicy(t *testing.T) {
	cfg := Config{Failures: 10, Window: 10 * time.Second, MaxClients: 8} // T = 1s
	t.Run("recovered first", func(t *testing.T) {
		l := newLimiter(cfg, 1)
		l.Fail("heavy", t0)
		for i := range 7 {
			l.Fail("light"+strconv.Itoa(i), t0.Add(-5*time.Second)) // recovered by t0
		}
		for range 5 {
			l.Fail("heavy", t0)
		}
		// heavy has 6s of debt; new clients replace the recovered ones.
		for i := range 7 {
			l.Fail("new"+strconv.Itoa(i), t0)
			if _, ok := l.shards[0].m[maphashOf(l, "heavy")]; !ok {
				t.Fatal("heavy evicted while recovered entries remained")
			}
		}
		if n := l.Len(); n != 8 {
			t.Fatalf("Len %d", n)
		}
	})
	t.Run("smallest debt", func(t *testing.T) {
		l := newLimiter(cfg, 1)
		for range 10 {
			l.Fail("heavy", t0)
		}
		for i := range 7 {
			l.Fail("light"+strconv.Itoa(i), t0)
		}
		for i := range 1000 {
			l.Fail("flood"+strconv.Itoa(i), t0.Add(time.Duration(i)*time.Millisecond))
			if ok, _ := l.Allow("heavy", t0); ok {
				t.Fatalf("heavy forgiven after %d new clients", i)
			}
			if n := l.Len(); n > 8 {
				t.Fatalf("Len %d", n)
			}
		}
	})
}

func maphashOf(l *Limiter, s string) uint64 { return maphash.String(l.seed, s) }

// TestClockBackwards: a clock that goes back neither panics nor forgives.
func TestClockBackwards(t *testing.T) {
	l := newT(t, Config{Failures: 2, Window: time.Minute})
	l.Fail("a", t0)
	l.Fail("a", t0)
	wantRefuse(t, l, "a", t0.Add(-time.Hour), time.Hour+time.Minute-30*time.Second)
	// Extreme times are clamped, not overflowed.
	for _, now := range []time.Time{{}, time.Unix(1<<62, 0), time.Unix(-1<<62, 0), t0} {
		l.Fail("b", now)
		l.Allow("b", now)
		l.Allow("a", now)
	}
}

// TestConcurrent hammers one shared key and many distinct ones from many
// goroutines at a fixed time; every failure of the shared key must be
// counted.
func TestConcurrent(t *testing.T) {
	const (
		goroutines = 16
		perG       = 2000
	)
	l := newT(t, Config{Failures: 50, Window: 50 * time.Second, MaxClients: 1000}) // T = 1s
	var wg sync.WaitGroup
	var sharedFails [goroutines]int
	var over atomic.Int64
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perG {
				own := fmt.Sprintf("g%d-%d", g, i%300)
				l.Allow(own, t0)
				l.Fail(own, t0)
				if i%3 == 0 {
					l.Allow("shared", t0)
					l.Fail("shared", t0)
					sharedFails[g]++
				}
				if n := l.Len(); n > 1000 {
					over.Store(int64(n))
				}
			}
		}()
	}
	wg.Wait()
	total := 0
	for _, n := range sharedFails {
		total += n
	}
	if n := over.Load(); n != 0 {
		t.Fatalf("Len reached %d > MaxClients", n)
	}
	// Every failure of the shared key counted (it carries by far the largest
	// debt, so it was never evicted): debt = total·T, refused for
	// debt - (Failures-1)·T.
	wantRefuse(t, l, "shared", t0, time.Duration(total-49)*time.Second)

	// The same with the real clock (monotonic readings).
	l = newT(t, Config{Failures: 5, Window: time.Hour, MaxClients: 100})
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				l.Allow("shared", time.Now())
				l.Fail("shared", time.Now())
				l.Fail(strconv.Itoa(g*1000+i), time.Now())
				l.Allow(strconv.Itoa(g*1000+i), time.Now())
			}
		}()
	}
	wg.Wait()
	if ok, ra := l.Allow("shared", time.Now()); ok || ra < time.Hour {
		t.Fatalf("shared after %d failures: %v, %v", goroutines*500, ok, ra)
	}
	if n := l.Len(); n > 100 {
		t.Fatalf("Len %d", n)
	}
}

// A small table must not let new clients push out the one with the largest
// debt: with one entry per shard, any newcomer in its shard would reset an
// attacker's count (as a flake of TestConcurrent showed).
func TestHeavyDebtorSurvivesNewcomersInASmallTable(t *testing.T) {
	l := newT(t, Config{Failures: 5, Window: time.Hour, MaxClients: 100})
	t0 := time.Now()
	for range 50 {
		l.Fail("attacker", t0)
	}
	for i := range 1000 {
		l.Fail("newcomer-"+strconv.Itoa(i), t0)
	}
	if ok, _ := l.Allow("attacker", t0); ok {
		t.Fatal("the attacker's debt was evicted by newcomers; its guesses are allowed again")
	}
	if n := l.Len(); n > 100 {
		t.Fatalf("Len %d > MaxClients", n)
	}
}

// TestTake: a budget of 3 per 3s is taken at once, the fourth waits 1s;
// after it the client may take one more; another client is not affected;
// concurrent takers never overshoot.
func TestTake(t *testing.T) {
	l := newT(t, Config{Failures: 3, Window: 3 * time.Second})
	for i := range 3 {
		if ok, _ := l.Take("a", t0); !ok {
			t.Fatalf("take %d refused", i+1)
		}
	}
	ok, wait := l.Take("a", t0)
	if ok || wait != time.Second {
		t.Fatalf("fourth take: %v, retry after %v; want refused, 1s", ok, wait)
	}
	if ok, _ := l.Take("b", t0); !ok {
		t.Fatal("another client refused")
	}
	if ok, _ := l.Take("a", t0.Add(time.Second)); !ok {
		t.Fatal("refused after the wait")
	}
	if ok, _ := l.Take("a", t0.Add(time.Second)); ok {
		t.Fatal("a second take after one interval")
	}
	par := newT(t, Config{Failures: 50, Window: time.Hour})
	var wg sync.WaitGroup
	var taken atomic.Int64
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ok, _ := par.Take("c", t0); ok {
				taken.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := taken.Load(); n != 50 {
		t.Fatalf("200 concurrent takes with a budget of 50: %d taken", n)
	}
}
