package pgstore

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap/zaptest"

	"github.com/deplo-sh/deplo-auth/internal/testwait"
)

func TestPostgresTouch(t *testing.T) {
	e := newPGEnv(t, true)
	s := e.open(t, Options{RecordLastUsed: true, TouchInterval: 50 * time.Millisecond})
	events := watch(t, s)
	h := e.insertToken(t, "tok_touch")
	waitEvent(t, events, time.Second, "notification of the INSERT", forHash(h))
	ctx := context.Background()
	state := func() (lastUsed *time.Time, xmin string) {
		t.Helper()
		if err := e.admin.QueryRow(ctx, `SELECT last_used_at, xmin::text FROM deplo_tokens WHERE hash = $1`, h[:]).
			Scan(&lastUsed, &xmin); err != nil {
			t.Fatal(err)
		}
		return
	}
	_, xmin0 := state()

	for range 1000 {
		s.Touch(h)
	}
	testwait.For(t, 2*time.Second, "last_used_at set", func() bool { lu, _ := state(); return lu != nil })
	time.Sleep(200 * time.Millisecond) // a few more flush intervals
	lu1, xmin1 := state()
	if xmin1 == xmin0 {
		t.Fatal("row not updated")
	}
	if rows, writes := s.lastUsed.rows.Load(), s.lastUsed.writes.Load(); rows != 1 || writes != 1 {
		t.Errorf("1000 touches: %d rows updated by %d statements, want 1 and 1", rows, writes)
	}

	// Touched again within the minute: no write, from this store (it
	// remembers) nor from another one (the UPDATE's condition).
	for range 1000 {
		s.Touch(h)
	}
	s2 := e.open(t, Options{RecordLastUsed: true, TouchInterval: 50 * time.Millisecond})
	s2.Touch(h)
	time.Sleep(300 * time.Millisecond)
	if s2.lastUsed.writes.Load() != 1 || s2.lastUsed.rows.Load() != 0 {
		t.Errorf("second store: %d statements, %d rows; want 1 and 0", s2.lastUsed.writes.Load(), s2.lastUsed.rows.Load())
	}
	lu2, xmin2 := state()
	if xmin2 != xmin1 || !lu2.Equal(*lu1) {
		t.Errorf("row rewritten within the minute (xmin %s → %s)", xmin1, xmin2)
	}
	if s.DroppedTouches() != 0 {
		t.Errorf("dropped %d touches", s.DroppedTouches())
	}

	// A minute later (simulated), the next touch writes again.
	e.exec(t, `UPDATE deplo_tokens SET last_used_at = now() - interval '2 minutes' WHERE hash = $1`, h[:])
	s3 := e.open(t, Options{RecordLastUsed: true, TouchInterval: 50 * time.Millisecond})
	s3.Touch(h)
	testwait.For(t, 2*time.Second, "second write", func() bool { return s3.lastUsed.rows.Load() == 1 })

	// None of it was notified.
	select {
	case ev := <-events:
		if !ev.all && ev.h == h {
			t.Error("last_used_at writes were notified")
		}
	case <-time.After(100 * time.Millisecond):
	}
}

func TestPostgresTouchQueueFull(t *testing.T) {
	e := newPGEnv(t, true)
	s, err := Open(context.Background(), Options{DSN: e.nextDSN(t), RecordLastUsed: true,
		TouchQueueSize: 2, TouchInterval: time.Hour, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a, b, c := e.insertToken(t, "tok_a"), e.insertToken(t, "tok_b"), e.insertToken(t, "tok_c")
	s.Touch(a)
	s.Touch(b)
	s.Touch(a) // already waiting: not dropped
	s.Touch(c) // full: dropped
	s.Touch(c)
	if got := s.DroppedTouches(); got != 2 {
		t.Errorf("DroppedTouches = %d, want 2", got)
	}
	// Close flushes what is waiting.
	s.Close()
	var ids []string
	rows, err := e.admin.Query(context.Background(), `SELECT id FROM deplo_tokens WHERE last_used_at IS NOT NULL ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	if ids, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids, []string{"tok_a", "tok_b"}) {
		t.Errorf("written at Close: %v, want [tok_a tok_b]", ids)
	}

	// Without RecordLastUsed, Touch does nothing.
	s3 := e.open(t, Options{})
	s3.Touch(c)
	if s3.DroppedTouches() != 0 || len(s3.lastUsed.pending) != 0 {
		t.Error("Touch recorded without RecordLastUsed")
	}
}
