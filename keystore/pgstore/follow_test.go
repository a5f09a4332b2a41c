package pgstore

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap/zaptest"

	"github.com/deplo-sh/deplo-auth/internal/tcpproxy"
	"github.com/deplo-sh/deplo-auth/internal/testwait"
	"github.com/deplo-sh/deplo-auth/keystore"
)

// listenRaw opens a connection of its own listening on the store channel.
func (e *pgEnv) listenRaw(t *testing.T) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(context.Background(), "LISTEN "+DefaultChannel); err != nil {
		t.Fatal(err)
	}
	return conn
}

// ownNotifications collects, for wait, the notifications of this schema's
// change log on conn.
func (e *pgEnv) ownNotifications(t *testing.T, conn *pgx.Conn, wait time.Duration) []notification {
	t.Helper()
	var oid int64
	if err := e.admin.QueryRow(context.Background(), `SELECT 'deplo_changes'::regclass::oid::bigint`).Scan(&oid); err != nil {
		t.Fatal(err)
	}
	var out []notification
	deadline := time.Now().Add(wait)
	for {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		n, err := conn.WaitForNotification(ctx)
		cancel()
		if err != nil {
			return out
		}
		var p notification
		if json.Unmarshal([]byte(n.Payload), &p) == nil && p.Log != nil && *p.Log == oid {
			out = append(out, p)
		}
	}
}

// TestPostgresBulkRevocation: 5,000 tokens revoked by one statement are one
// change-log notification carrying the range (no hashes), and every hash
// reaches the store's watchers, read over the listener's own connection
// (the poll is an hour away).
func TestPostgresBulkRevocation(t *testing.T) {
	e := newPGEnv(t, true)
	e.exec(t, `INSERT INTO deplo_tokens (hash, id, workspace, scopes)
SELECT sha256(('bulk' || i)::bytea), 'tok_bulk_' || i, 'ws_bulk', '{read}' FROM generate_series(1, 5000) i`)
	s := e.open(t, Options{Poll: time.Hour})
	testwait.For(t, time.Second, "hearing", s.Hearing)
	raw := e.listenRaw(t)
	got := make(chan keystore.Hash, 6000)
	stop := s.Watch(func(h keystore.Hash, all bool) {
		if !all {
			got <- h
		}
	})
	defer stop()
	polls := s.changes.polls.Load()
	start := time.Now()
	e.exec(t, `UPDATE deplo_tokens SET revoked_at = now() WHERE workspace = 'ws_bulk'`)
	seen := map[keystore.Hash]bool{}
	deadline := time.After(2 * time.Second)
	for len(seen) < 5000 {
		select {
		case h := <-got:
			seen[h] = true
		case <-deadline:
			t.Fatalf("%d of 5000 revoked hashes reached the watcher", len(seen))
		}
	}
	reads := s.changes.polls.Load() - polls
	t.Logf("5000 revocations reached the watcher in %v, %d log reads", time.Since(start).Round(time.Millisecond), reads)
	if s.changes.listenerReads.Load() == 0 {
		t.Error("the announced range was not read over the listener's connection")
	}
	if reads != 0 {
		t.Errorf("%d reads of the log rows for a bulk change that follows the position, want 0 (its one row of deplo_change_ranges)", reads)
	}
	ns := e.ownNotifications(t, raw, 300*time.Millisecond)
	if len(ns) != 1 {
		t.Fatalf("%d notifications for one bulk UPDATE, want 1", len(ns))
	}
	if n := ns[0]; *n.To-*n.From+1 != 5000 || len(n.Hashes) != 0 {
		t.Errorf("notification: range %d..%d with %d hashes, want 5000 entries and no hashes", *n.From, *n.To, len(n.Hashes))
	}
	var rows int64
	if err := e.admin.QueryRow(context.Background(), `SELECT count(*) FROM deplo_changes WHERE seq BETWEEN $1 AND $2`, *ns[0].From, *ns[0].To).Scan(&rows); err != nil || rows != 5000 {
		t.Errorf("change-log rows of the range: %d (%v), want 5000", rows, err)
	}
	if s.LastChange() < *ns[0].To {
		t.Errorf("last change %d, want at least %d", s.LastChange(), *ns[0].To)
	}
}

// TestPostgresRangeRowBounds: the schema writes a range row exactly for
// the changes the store reads one for (announcedRange): none for 64 hashes
// (the notification lists them), one for 65.
func TestPostgresRangeRowBounds(t *testing.T) {
	e := newPGEnv(t, true)
	for _, n := range []int{64, 65} {
		ws := "ws_bound_" + strconv.Itoa(n)
		e.exec(t, `INSERT INTO deplo_tokens (hash, id, workspace, scopes)
SELECT sha256(($1 || i)::bytea), $1 || '_' || i, $1, '{read}' FROM generate_series(1, $2) i`, ws, n)
		var first, last int64
		if err := e.admin.QueryRow(context.Background(), `SELECT min(seq), max(seq) FROM deplo_changes
WHERE seq > coalesce((SELECT max(seq) FROM deplo_changes) - $1, 0)`, n).Scan(&first, &last); err != nil {
			t.Fatal(err)
		}
		rows := e.exec(t, `SELECT 1 FROM deplo_change_ranges WHERE first_seq = $1 AND last_seq = $2`, first, last)
		if want := announcedRange(first, last, 0).packed; (rows == 1) != want {
			t.Errorf("%d hashes: %d range rows; the store reads one: %v", n, rows, want)
		}
	}
	if announcedRange(1, packedRangeMax+1, 0).packed {
		t.Error("a change over packedRangeMax is read from its range row")
	}
}

// TestPostgresBulkWithoutRangeRow: a bulk change whose one row is missing
// (as when another writer took a sequence within its range) is read from the
// log rows, whole.
func TestPostgresBulkWithoutRangeRow(t *testing.T) {
	e := newPGEnv(t, true)
	e.exec(t, `INSERT INTO deplo_tokens (hash, id, workspace, scopes)
SELECT sha256(('norow' || i)::bytea), 'tok_norow_' || i, 'ws_norow', '{read}' FROM generate_series(1, 300) i`)
	s := e.open(t, Options{Poll: time.Hour})
	testwait.For(t, time.Second, "hearing", s.Hearing)
	seen := make(map[keystore.Hash]bool)
	var mu sync.Mutex
	stop := s.Watch(func(h keystore.Hash, all bool) {
		mu.Lock()
		defer mu.Unlock()
		seen[h] = true
	})
	defer stop()
	polls := s.changes.polls.Load()
	tx, err := e.admin.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	for _, sql := range []string{
		`UPDATE deplo_tokens SET revoked_at = now() WHERE workspace = 'ws_norow'`,
		`DELETE FROM deplo_change_ranges`,
	} {
		if _, err := tx.Exec(context.Background(), sql); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 3*time.Second, "every revoked hash told", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == 300
	})
	if s.changes.polls.Load() == polls {
		t.Error("the log rows were not read")
	}
	if _, err := e.admin.Exec(context.Background(), `INSERT INTO deplo_change_ranges (first_seq, last_seq, hashes) VALUES (1, 2, '\x00')`); err == nil {
		t.Error("a range row of the wrong length was accepted")
	}
}

// TestPostgresStalledListenerRead: while the listener's read of an
// announced bulk change is stalled (its connection hangs), the poll goes on:
// a revocation made meanwhile reaches the caches within the poll interval,
// and the bulk change once the read returns.
func TestPostgresStalledListenerRead(t *testing.T) {
	e := newPGEnv(t, true)
	e.exec(t, `INSERT INTO deplo_tokens (hash, id, workspace, scopes)
SELECT sha256(('stall' || i)::bytea), 'tok_stall_' || i, 'ws_stall', '{read}' FROM generate_series(1, 100) i`)
	single := e.insertToken(t, "tok_during_stall")
	const poll = 100 * time.Millisecond
	release := make(chan struct{})
	var stalled atomic.Bool
	s := e.open(t, Options{Poll: poll, stallListenerRead: func() {
		if stalled.CompareAndSwap(false, true) {
			<-release // the first read hangs until released
		}
	}})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	testwait.For(t, time.Second, "hearing", s.Hearing)
	events := watch(t, s)
	e.exec(t, `UPDATE deplo_tokens SET revoked_at = now() WHERE workspace = 'ws_stall'`)
	testwait.For(t, 2*time.Second, "the listener's read stalled", stalled.Load)
	e.exec(t, `UPDATE deplo_tokens SET revoked_at = now() WHERE id = 'tok_during_stall'`)
	// The poll reads both changes while the listener hangs (within a few
	// polls; the bound is generous for a loaded machine, and a poll held
	// behind the stalled read would wait until the release below).
	waitEvent(t, events, 5*time.Second, "event for the revocation made while the listener's read hangs", forHash(single))
	close(release)
	var last int64
	if err := e.admin.QueryRow(context.Background(), `SELECT max(seq) FROM deplo_changes`).Scan(&last); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 2*time.Second, "the position at the log's end", func() bool { return s.LastChange() == last })
}

// TestPostgresBulkOverOneBatch: a change of more rows than one read of the
// log takes (changeBatch) reaches the watchers whole, by the poll alone, and
// the position ends at its last row.
func TestPostgresBulkOverOneBatch(t *testing.T) {
	e := newPGEnv(t, true)
	const n = changeBatch + 2500
	e.exec(t, `INSERT INTO deplo_tokens (hash, id, workspace, scopes)
SELECT sha256(('big' || i)::bytea), 'tok_big_' || i, 'ws_big', '{read}' FROM generate_series(1, $1) i`, n)
	// Deaf: the poll carries it.
	s := e.open(t, Options{Poll: 50 * time.Millisecond, deafen: func() bool { return true }})
	seen := make(map[keystore.Hash]bool, n)
	var mu sync.Mutex
	stop := s.Watch(func(h keystore.Hash, all bool) {
		mu.Lock()
		defer mu.Unlock()
		if all {
			t.Error("every token dropped for a change the log holds")
		}
		seen[h] = true
	})
	defer stop()
	e.exec(t, `UPDATE deplo_tokens SET revoked_at = now() WHERE workspace = 'ws_big'`)
	testwait.For(t, 5*time.Second, "every revoked hash told", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == n
	})
	for i := 1; i <= n; i += 997 {
		if h := keystore.Hash(sha256.Sum256([]byte("big" + strconv.Itoa(i)))); !seen[h] {
			t.Fatalf("the hash of big%d was not told", i)
		}
	}
	var last int64
	if err := e.admin.QueryRow(context.Background(), `SELECT max(seq) FROM deplo_changes`).Scan(&last); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, time.Second, "the position at the log's end", func() bool { return s.LastChange() == last })
}

// TestPostgresSingleChangeNoRead: a single change arrives with its hash and
// is applied without reading the log; a notification with a gap before it
// makes the store read the log.
func TestPostgresSingleChangeNoRead(t *testing.T) {
	e := newPGEnv(t, true)
	s := e.open(t, Options{Poll: time.Hour})
	events := watch(t, s)
	testwait.For(t, time.Second, "hearing", s.Hearing)
	polls := s.changes.polls.Load()
	h := e.insertToken(t, "tok_single")
	waitEvent(t, events, 3*time.Second, "the insert", forHash(h))
	testwait.For(t, time.Second, "position advanced", func() bool { return s.LastChange() > 0 })
	if n := s.changes.polls.Load() - polls; n != 0 {
		t.Errorf("%d log reads for one announced change, want 0", n)
	}
	// A sequence value used by a rolled-back transaction: a gap the
	// notification cannot account for.
	tx, err := e.admin.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(context.Background(), `INSERT INTO deplo_changes (hash) VALUES (NULL)`); err != nil {
		t.Fatal(err)
	}
	tx.Rollback(context.Background())
	h2 := e.insertToken(t, "tok_after_gap")
	waitEvent(t, events, 3*time.Second, "the insert after a gap", forHash(h2))
	testwait.For(t, time.Second, "the log read after a gap", func() bool { return s.changes.polls.Load() > polls })
}

// TestPostgresWrite: Write records the hashes fn returns in the change log,
// in fn's transaction; a failing fn records nothing.
func TestPostgresWrite(t *testing.T) {
	e := newPGEnv(t, true)
	s := e.open(t, Options{Poll: time.Hour})
	other := e.open(t, Options{Poll: 50 * time.Millisecond})
	events := watch(t, other)
	_, h := newToken("")
	if err := s.Write(context.Background(), "test change", func(pgx.Tx) ([]keystore.Hash, error) {
		return []keystore.Hash{h}, nil
	}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, events, 3*time.Second, "the recorded hash on another store", forHash(h))

	_, h2 := newToken("")
	boom := errors.New("boom")
	err := s.Write(context.Background(), "test change", func(tx pgx.Tx) ([]keystore.Hash, error) {
		if _, err := tx.Exec(context.Background(), `INSERT INTO deplo_tokens (hash, id, workspace, scopes) VALUES ($1, 'tok_rolled_back', 'ws', '{}')`, h2[:]); err != nil {
			return nil, err
		}
		return []keystore.Hash{h2}, boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Write: %v, want boom", err)
	}
	var n int
	if err := e.admin.QueryRow(context.Background(), `SELECT count(*) FROM deplo_changes WHERE hash = $1`, h2[:]).Scan(&n); err != nil || n != 0 {
		t.Errorf("a failed write left %d change-log rows (%v)", n, err)
	}
	if _, err := s.Token(context.Background(), "tok_rolled_back"); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("a failed write left its token: %v", err)
	}
}

// TestPostgresPrune: pruning deletes old rows and records how far it went;
// a store whose position is below that drops every cached token.
func TestPostgresPrune(t *testing.T) {
	e := newPGEnv(t, true)
	s := e.open(t, Options{Poll: 50 * time.Millisecond})
	events := watch(t, s)
	h := e.insertToken(t, "tok_prune")
	waitEvent(t, events, 3*time.Second, "the insert", forHash(h))
	e.exec(t, `INSERT INTO deplo_tokens (hash, id, workspace, scopes)
SELECT sha256(('prune' || i)::bytea), 'tok_prune_' || i, 'ws_prune', '{read}' FROM generate_series(1, 100) i`)
	if e.exec(t, `SELECT 1 FROM deplo_change_ranges`) != 1 {
		t.Fatal("a bulk insert of 100 tokens left no range row")
	}
	testwait.For(t, 3*time.Second, "the bulk insert read", func() bool { return s.LastChange() >= 101 })
	e.exec(t, `UPDATE deplo_changes SET changed_at = now() - interval '2 hours'`)
	e.exec(t, `UPDATE deplo_change_ranges SET changed_at = now() - interval '2 hours'`)
	s.prune()
	var left, leftRanges, through int64
	if err := e.admin.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM deplo_changes), (SELECT count(*) FROM deplo_change_ranges), through FROM deplo_changes_pruned`).Scan(&left, &leftRanges, &through); err != nil {
		t.Fatal(err)
	}
	if left != 0 || leftRanges != 0 || through < s.LastChange() {
		t.Fatalf("after pruning: %d rows and %d range rows left, pruned through %d (last change %d)", left, leftRanges, through, s.LastChange())
	}
	// Kept when younger than the retention asked for.
	s.KeepChangesFor(3 * time.Hour)
	h2 := e.insertToken(t, "tok_kept")
	waitEvent(t, events, 3*time.Second, "the second insert", forHash(h2))
	e.exec(t, `UPDATE deplo_changes SET changed_at = now() - interval '2 hours'`)
	s.prune()
	if e.exec(t, `SELECT 1 FROM deplo_changes`) != 1 {
		t.Error("a row younger than the retention was pruned")
	}
	// A position below the pruned one: everything is dropped.
	gen := s.Generation()
	e.exec(t, `UPDATE deplo_changes_pruned SET through = through + 1000000`)
	waitEvent(t, events, 3*time.Second, "every token dropped", isAll)
	if s.Generation() == gen {
		t.Error("generation not bumped")
	}
}

// TestPostgresRangeRowsPrunedByAnyRelease: a gateway older than schema 5
// prunes the log and advances deplo_changes_pruned but never touches
// deplo_change_ranges; the next bulk change deletes the range rows whose log
// rows are gone, so a mixed-release fleet does not grow the table, and keeps
// the ones still readable.
func TestPostgresRangeRowsPrunedByAnyRelease(t *testing.T) {
	e := newPGEnv(t, true)
	bulk := func(name string) {
		e.exec(t, `INSERT INTO deplo_tokens (hash, id, workspace, scopes)
SELECT sha256(($1 || i)::bytea), $1 || i, 'ws_ranges', '{read}' FROM generate_series(1, 100) i`, name)
	}
	bulk("old_")
	bulk("kept_")
	ranges := func() (firsts []int64) {
		t.Helper()
		rows, err := e.admin.Query(context.Background(), `SELECT first_seq FROM deplo_change_ranges ORDER BY first_seq`)
		if err != nil {
			t.Fatal(err)
		}
		firsts, err = pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			t.Fatal(err)
		}
		return firsts
	}
	if got := ranges(); len(got) != 2 || got[0] != 1 || got[1] != 101 {
		t.Fatalf("range rows after two bulk inserts: %v, want [1 101]", got)
	}
	// What an older gateway's prune does: the first bulk's log rows go.
	e.exec(t, `WITH gone AS (DELETE FROM deplo_changes WHERE seq <= 100 RETURNING seq)
UPDATE deplo_changes_pruned SET through = (SELECT max(seq) FROM gone)`)
	bulk("new_")
	if got := ranges(); len(got) != 2 || got[0] != 101 || got[1] != 201 {
		t.Errorf("range rows after the log was pruned through 100 and another bulk insert: %v, want [101 201]", got)
	}
}

// TestPostgresStartWithoutServer: a store whose server is unreachable opens
// (with StartWithoutServer), answers ErrNotReady, and becomes ready when
// the server answers; without the option, or with a DSN that does not
// parse, Open fails.
func TestPostgresStartWithoutServer(t *testing.T) {
	e := newPGEnv(t, true)
	u, err := url.Parse(e.dsn)
	if err != nil || u.Host == "" || strings.HasPrefix(u.Query().Get("host"), "/") {
		t.Skipf("%s is not a TCP URL; the test cuts a TCP proxy in front of the server", testPostgresEnv)
	}
	proxy, err := tcpproxy.New(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	proxy.Cut()
	defer proxy.Cut()
	u.Host = proxy.Addr
	dsn := u.String()

	if _, err := Open(context.Background(), Options{DSN: dsn, Logger: zaptest.NewLogger(t)}); err == nil {
		t.Fatal("Open without the server and without StartWithoutServer succeeded")
	}
	if _, err := Open(context.Background(), Options{DSN: "postgres://a:b@host:notaport/db", StartWithoutServer: true}); err == nil {
		t.Fatal("a DSN that does not parse opened")
	}
	s := e.open(t, Options{DSN: dsn, StartWithoutServer: true})
	h := e.insertToken(t, "tok_late")
	if s.Ready() || s.Following() {
		t.Fatal("ready without a server")
	}
	if _, err := s.Lookup(context.Background(), h); !errors.Is(err, ErrNotReady) {
		t.Fatalf("lookup before the server answers: %v, want ErrNotReady", err)
	}
	if err := proxy.Restore(); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 15*time.Second, "ready once the server answers", s.Ready)
	if tok, err := s.Lookup(context.Background(), h); err != nil || tok.ID != "tok_late" {
		t.Fatalf("lookup once ready: %v, %v", tok, err)
	}
	testwait.For(t, 5*time.Second, "hearing", s.Hearing)
}

// TestPostgresAdminOnly: the CLI's store holds one connection and no
// listener, and its writes reach the other stores.
func TestPostgresAdminOnly(t *testing.T) {
	e := newPGEnv(t, true)
	gw := e.open(t, Options{})
	events := watch(t, gw)
	cli := e.open(t, Options{AdminOnly: true})
	en, h := newToken("tok_cli")
	if err := cli.CreateToken(context.Background(), en); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, events, 3*time.Second, "the CLI's create on the gateway", forHash(h))
	if _, err := cli.RevokeToken(context.Background(), "tok_cli", time.Time{}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, events, 3*time.Second, "the CLI's revocation on the gateway", forHash(h))
	var conns int
	if err := e.admin.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE $1`,
		cli.listenName[:len(cli.listenName)-len("-listener")]+"%").Scan(&conns); err != nil {
		t.Fatal(err)
	}
	if conns != 1 || cli.Pool().Config().MaxConns != 1 {
		t.Errorf("the admin-only store holds %d server connections (pool max %d), want 1 and no listener", conns, cli.Pool().Config().MaxConns)
	}
}
