package tokencache

import (
	"testing"
	"time"

	"github.com/deplo-sh/deplo-auth/keystore"
)

// inShard returns a hash of the given change-log shard.
func inShard(shard int, b byte) keystore.Hash {
	h := hashOf(b)
	h[len(h)-1] = byte(shard)
	return h
}

// touchEveryShard makes every shard start a new window if its current one
// has ended, as any later lookup or change in that shard would.
func touchEveryShard(c *Cache) {
	for i := 0; i < changeShards; i++ {
		c.changes.last(inShard(i, 0xaa))
	}
}

// Remembered changes are forgotten two windows later, so a bulk revocation
// does not hold memory for ever, and a forgotten change still counts: the
// number a hash reports never goes down.
func TestChangesAreForgottenButStillCount(t *testing.T) {
	c := newCache(t, newStore(), Config{LookupTimeout: 100 * time.Millisecond}) // windows of 200ms
	hashes := numberedHashes(1000)
	for _, h := range hashes {
		c.changes.record(h) // as Invalidate does while a lookup is in flight
	}
	if n := c.changes.remembered(); n != len(hashes) {
		t.Fatalf("%d changes remembered, want %d", n, len(hashes))
	}
	last := c.changes.last(hashes[0])
	time.Sleep(3 * c.changes.window)
	touchEveryShard(c)
	if n := c.changes.remembered(); n != 0 {
		t.Errorf("%d changes still remembered after two windows", n)
	}
	if got := c.changes.last(hashes[0]); got < last {
		t.Errorf("after forgetting, the hash's latest change is %d, was %d", got, last)
	}
}

// A change is remembered for at least one window wherever in its shard's
// window it comes, while other changes to the shard keep starting new ones.
func TestChangeRememberedForAWindow(t *testing.T) {
	c := newCache(t, newStore(), Config{LookupTimeout: 5 * time.Millisecond}) // windows of 10ms
	const shard = 7
	s := &c.changes.shards[shard]
	remembered := func(h keystore.Hash) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		_, inCurrent := s.current[h]
		_, inPrevious := s.previous[h]
		return inCurrent || inPrevious
	}
	for round := 0; round < 20; round++ {
		h := inShard(shard, byte(round))
		time.Sleep(c.changes.window * time.Duration(round) / 20) // another point of the window
		recording := time.Now()
		c.changes.record(h)
		for checks := 0; ; checks++ {
			c.changes.record(inShard(shard, 0xff)) // may start a new window
			elapsed := time.Since(recording)
			if elapsed >= c.changes.window {
				break
			}
			if !remembered(h) {
				t.Fatalf("round %d: a change %v old is forgotten (window %v)", round, elapsed, c.changes.window)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// A lookup that began before a change that has since been forgotten (a
// store that overran its timeout) still does not cache what it read.
func TestLookupOlderThanForgottenChangeIsNotCached(t *testing.T) {
	h := hashOf(22)
	s := newGatedStore()
	s.set(h, activeToken("tok_22"))
	c := newCache(t, s, Config{TTL: time.Hour, LookupTimeout: 5 * time.Millisecond})
	done := lookupAsync(c, h)
	held := <-s.started
	s.set(h, revokedToken("tok_22"))
	c.Invalidate(h)
	time.Sleep(3 * c.changes.window)
	touchEveryShard(c)
	if n := c.changes.remembered(); n != 0 {
		t.Fatalf("%d changes still remembered", n)
	}
	close(held.release)
	<-done
	s.gated.Store(false)
	if r := <-lookupAsync(c, h); r.err != nil || r.allowed() {
		t.Fatalf("revoked token allowed (%s): the answer read before a forgotten change was cached", r.res)
	}
}

// remembered counts the hashes whose latest change is remembered.
func (l *changeLog) remembered() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.current) + len(s.previous)
		s.mu.Unlock()
	}
	return n
}
