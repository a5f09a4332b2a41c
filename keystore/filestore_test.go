package keystore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/deplo-sh/deplo-auth/internal/testwait"
)

const testPoll = 20 * time.Millisecond

func writeEntries(t *testing.T, path string, entries ...TokenEntry) {
	t.Helper()
	data, err := marshalKeyFile(&KeyFile{Tokens: entries})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func hashOf(e TokenEntry) Hash {
	h, err := ParseHash(e.Hash)
	if err != nil {
		panic(err)
	}
	return h
}

func lookup(s *FileStore, e TokenEntry) *Token {
	tok, err := s.Lookup(context.Background(), hashOf(e))
	if err != nil {
		return nil
	}
	return tok
}

func TestFileStoreHotReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	a, b, c := newEntry("tok_a", "A"), newEntry("tok_b", "B"), newEntry("tok_c", "C")
	writeEntries(t, path, a, b)

	core, logs := observer.New(zapcore.InfoLevel)
	var reloads, failures atomic.Int32
	s, err := OpenFile(path, FileOptions{
		PollInterval: testPoll,
		Logger:       zap.New(core),
		OnReload: func(err error) {
			if err != nil {
				failures.Add(1)
			} else {
				reloads.Add(1)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Path() != path || s.Len() != 2 {
		t.Fatalf("Path %q Len %d", s.Path(), s.Len())
	}
	if at, err := s.LastReload(); err != nil || at.IsZero() {
		t.Fatalf("LastReload = %v, %v", at, err)
	}
	if _, err := s.Lookup(context.Background(), hashOf(c)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown hash: %v", err)
	}
	if tok := lookup(s, a); tok == nil || tok.ID != "tok_a" || tok.Status(time.Now()) != TokenActive {
		t.Fatalf("tok_a = %+v", tok)
	}

	// Readers run throughout, for the race detector.
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for range 4 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, _ = s.Lookup(context.Background(), hashOf(a))
				_ = s.Generation()
				_ = s.Len()
				_, _ = s.LastReload()
			}
		})
	}
	defer func() { close(stop); readers.Wait() }()

	// Revoke through UpdateKeyFile (an atomic rename).
	gen0 := s.Generation()
	revoked := time.Now().Add(-time.Second).UTC().Truncate(time.Second)
	err = UpdateKeyFile(path, false, func(kf *KeyFile) error {
		kf.Find("tok_a").RevokedAt = &revoked
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	testwait.For(t, time.Second, "revocation seen", func() bool {
		tok := lookup(s, a)
		return tok != nil && !tok.RevokedAt.IsZero()
	})
	if tok := lookup(s, a); tok.Status(time.Now()) == TokenActive || !tok.RevokedAt.Equal(revoked) {
		t.Errorf("revoked token = %+v", tok)
	}
	gen1 := s.Generation()
	if gen1 == gen0 {
		t.Error("Generation did not change")
	}
	testwait.For(t, time.Second, "OnReload called", func() bool { return reloads.Load() >= 1 })
	at1, _ := s.LastReload()

	// Garbage: the last good set stays in force.
	// (Replaced by rename, so the poller cannot see it half-written and log
	// twice.)
	if _, err := writeAtomic(path, []byte(`{"tokens": [ garbage`), 0o600, nil); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, time.Second, "reload error reported", func() bool {
		_, err := s.LastReload()
		return err != nil
	})
	at, rerr := s.LastReload()
	if !strings.Contains(rerr.Error(), path) || !strings.Contains(rerr.Error(), "not valid JSON") {
		t.Errorf("reload error = %v", rerr)
	}
	if !at.Equal(at1) {
		t.Errorf("LastReload time moved on a failed reload")
	}
	if tok := lookup(s, a); tok == nil || tok.RevokedAt.IsZero() {
		t.Errorf("tok_a after garbage = %+v", tok)
	}
	if lookup(s, b) == nil || s.Len() != 2 || s.Generation() != gen1 {
		t.Errorf("after garbage: b %v, Len %d, Generation %d (was %d)", lookup(s, b), s.Len(), s.Generation(), gen1)
	}
	if n := logs.FilterLevelExact(zapcore.ErrorLevel).Len(); n != 1 {
		t.Errorf("%d error logs, want 1: %v", n, logs.All())
	}
	if n := failures.Load(); n != 1 {
		t.Errorf("OnReload reported %d failures, want 1", n)
	}

	// An invalid entry is also refused, and named in the log.
	bad := newEntry("tok_bad", "")
	bad.Workspace = ""
	data, _ := marshalKeyFile(&KeyFile{Tokens: []TokenEntry{a, bad}})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, time.Second, "invalid entry reported", func() bool {
		_, err := s.LastReload()
		return err != nil && strings.Contains(err.Error(), `token 1 (id "tok_bad"): workspace`)
	})
	if lookup(s, b) == nil {
		t.Error("tok_b dropped by an invalid file")
	}

	// Fixed: the new contents are served.
	writeEntries(t, path, a, c)
	testwait.For(t, time.Second, "fixed file served", func() bool { return lookup(s, c) != nil })
	if lookup(s, b) != nil || s.Len() != 2 {
		t.Errorf("after fix: b %v, Len %d", lookup(s, b), s.Len())
	}
	if tok := lookup(s, a); tok == nil || !tok.RevokedAt.IsZero() {
		t.Errorf("tok_a after fix = %+v", tok)
	}
	if at, err := s.LastReload(); err != nil || !at.After(at1) {
		t.Errorf("LastReload after fix = %v, %v", at, err)
	}
	if s.Generation() == gen1 {
		t.Error("Generation did not change on the fixed file")
	}
	// The log line follows the swap.
	testwait.For(t, time.Second, "second reload logged", func() bool {
		return logs.FilterMessage("key file reloaded").Len() >= 2
	})
	reloadLogs := logs.FilterMessage("key file reloaded").All()
	if len(reloadLogs) != 2 || reloadLogs[1].ContextMap()["tokens"] != int64(2) {
		t.Errorf("reload logs = %v", reloadLogs)
	}
	for _, e := range logs.All() {
		for _, f := range e.Context {
			if hexRun.MatchString(f.String) || (f.Interface != nil && hexRun.MatchString(fmt.Sprint(f.Interface))) {
				t.Errorf("log echoes a hash: %v", e)
			}
		}
	}
}

// TestFileStoreInPlaceRewrite rewrites the file in place (same inode) with
// contents of the same size: only the mtime tells it changed.
func TestFileStoreInPlaceRewrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	writeEntries(t, path, newEntry("tok_a", "aaaa"))
	// Old enough that the racy check is over: the mtime alone must tell.
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	s, err := OpenFile(path, FileOptions{PollInterval: testPoll})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before, _ := os.Stat(path)
	gen := s.Generation()
	time.Sleep(3 * testPoll) // the poller has seen the old file

	writeEntries(t, path, newEntry("tok_a", "bbbb"))
	after, _ := os.Stat(path)
	if !os.SameFile(before, after) || before.Size() != after.Size() {
		t.Fatal("test setup: not an in-place rewrite of the same size")
	}
	testwait.For(t, time.Second, "in-place rewrite seen", func() bool {
		tok := lookup(s, newEntry("tok_a", ""))
		return tok != nil && tok.Name == "bbbb"
	})
	if s.Generation() == gen {
		t.Error("Generation did not change")
	}
}

// TestFileStoreRacyRewrite rewrites the file in place with the same size
// and the same mtime, as a second write within the file system's timestamp
// granularity would: the contents check catches it.
func TestFileStoreRacyRewrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	writeEntries(t, path, newEntry("tok_a", "aaaa"))
	s, err := OpenFile(path, FileOptions{PollInterval: testPoll})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before, _ := os.Stat(path)
	time.Sleep(3 * testPoll)

	writeEntries(t, path, newEntry("tok_a", "bbbb"))
	if err := os.Chtimes(path, before.ModTime(), before.ModTime()); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(path)
	if !os.SameFile(before, after) || before.Size() != after.Size() || !before.ModTime().Equal(after.ModTime()) {
		t.Fatal("test setup: status changed")
	}
	testwait.For(t, time.Second, "racy rewrite seen", func() bool {
		tok := lookup(s, newEntry("tok_a", ""))
		return tok != nil && tok.Name == "bbbb"
	})
}

func TestFileStoreFileRemoved(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	a, b := newEntry("tok_a", ""), newEntry("tok_b", "")
	writeEntries(t, path, a)
	core, logs := observer.New(zapcore.InfoLevel)
	s, err := OpenFile(path, FileOptions{PollInterval: testPoll, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, time.Second, "missing file reported", func() bool {
		_, err := s.LastReload()
		return errors.Is(err, fs.ErrNotExist)
	})
	time.Sleep(5 * testPoll)
	if lookup(s, a) == nil {
		t.Error("tokens dropped when the file went missing")
	}
	if n := logs.FilterLevelExact(zapcore.ErrorLevel).Len(); n != 1 {
		t.Errorf("%d error logs for one missing file, want 1", n)
	}

	writeEntries(t, path, a, b)
	testwait.For(t, time.Second, "recreated file served", func() bool { return lookup(s, b) != nil })
	if _, err := s.LastReload(); err != nil {
		t.Errorf("LastReload error after recovery: %v", err)
	}
}

func TestOpenFileErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.json")
	if _, err := OpenFile(missing, FileOptions{}); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: %v", err)
	}
	bad := filepath.Join(dir, "bad.json")
	e := newEntry("tok_x", "")
	e.Scopes = []string{"deploy", ""}
	writeEntries(t, bad, e)
	_, err := OpenFile(bad, FileOptions{})
	if err == nil || !strings.Contains(err.Error(), "keys file "+bad+`: token 0 (id "tok_x"): scopes[1]`) {
		t.Errorf("invalid file: %v", err)
	}
	if _, err := OpenFile(dir, FileOptions{}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
}

func TestFileStoreClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	a, b := newEntry("tok_a", ""), newEntry("tok_b", "")
	writeEntries(t, path, a)
	base := runtime.NumGoroutine()
	s, err := OpenFile(path, FileOptions{PollInterval: testPoll})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * testPoll)
	select {
	case <-s.done:
		t.Fatal("poller not running")
	default:
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.done:
	default:
		t.Fatal("poller still running after Close")
	}
	testwait.For(t, time.Second, "goroutine count back", func() bool { return runtime.NumGoroutine() <= base })
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	// Closed: still answers, no longer reloads.
	writeEntries(t, path, a, b)
	time.Sleep(5 * testPoll)
	if lookup(s, a) == nil || lookup(s, b) != nil {
		t.Error("closed store changed or stopped answering")
	}
}

func TestFileStoreConcurrentClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	writeEntries(t, path)
	s, err := OpenFile(path, FileOptions{PollInterval: testPoll})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() { s.Close() })
	}
	wg.Wait()
}

func TestLookupAllocs(t *testing.T) {
	s := benchStore(t, 1000)
	defer s.Close()
	ctx := context.Background()
	hit, _ := testHash("sk_live_tok_00500")
	miss, _ := testHash("nope")
	if n := testing.AllocsPerRun(1000, func() {
		_, _ = s.Lookup(ctx, hit)
		_, _ = s.Lookup(ctx, miss)
	}); n != 0 {
		t.Errorf("Lookup allocates %v times", n)
	}
}

func BenchmarkLookup(b *testing.B) {
	s := benchStore(b, 10000)
	defer s.Close()
	ctx := context.Background()
	hit, _ := testHash("sk_live_tok_05000")
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if tok, err := s.Lookup(ctx, hit); err != nil || tok == nil {
				b.Fatal("lookup failed")
			}
		}
	})
}

func benchStore(tb testing.TB, n int) *FileStore {
	tb.Helper()
	entries := make([]TokenEntry, n)
	for i := range entries {
		entries[i] = newEntry(fmt.Sprintf("tok_%05d", i), "")
	}
	path := filepath.Join(tb.TempDir(), "keys.json")
	data, err := marshalKeyFile(&KeyFile{Tokens: entries})
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		tb.Fatal(err)
	}
	s, err := OpenFile(path, FileOptions{PollInterval: time.Hour})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := s.Lookup(context.Background(), hashOf(entries[n/2])); err != nil {
		tb.Fatal(err)
	}
	return s
}

// TestFileStoreRenameSameStatus replaces the file by rename with one of the
// same size and mtime: only its identity (inode) tells it changed.
func TestFileStoreRenameSameStatus(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.json")
	writeEntries(t, path, newEntry("tok_a", "aaaa"))
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	s, err := OpenFile(path, FileOptions{PollInterval: testPoll})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before, _ := os.Stat(path)
	time.Sleep(3 * testPoll)

	next := filepath.Join(dir, "next.json")
	writeEntries(t, next, newEntry("tok_a", "bbbb"))
	if err := os.Chtimes(next, before.ModTime(), before.ModTime()); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(next, path); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(path)
	if os.SameFile(before, after) || before.Size() != after.Size() || !before.ModTime().Equal(after.ModTime()) {
		t.Fatal("test setup: want a different file of the same size and mtime")
	}
	testwait.For(t, time.Second, "renamed file seen", func() bool {
		tok := lookup(s, newEntry("tok_a", ""))
		return tok != nil && tok.Name == "bbbb"
	})
}
