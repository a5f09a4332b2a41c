package keystore

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/deplo-sh/deplo-auth/internal/testwait"
)

// noPoll is a poll interval no test outlives: whatever such a store sees,
// the watch told it.
const noPoll = time.Hour

// openWatched opens path with the poll out of the way, and skips the test
// where the system offers no watch.
func openWatched(t *testing.T, path string, opts FileOptions) *FileStore {
	t.Helper()
	opts.PollInterval = noPoll
	s, err := OpenFile(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if !s.Watched() {
		t.Skip("this system offers no file watch (inotify/kqueue); the poll tests cover it")
	}
	return s
}

// TestFileStoreWatch changes the file in each way a person or a program
// does, with the poll an hour away: only the directory watch can bring
// each change in.
func TestFileStoreWatch(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(t *testing.T, path string, e ...TokenEntry)
	}{
		{"hand edit in place", writeEntries},
		{"rename over the file", func(t *testing.T, path string, e ...TokenEntry) {
			next := filepath.Join(filepath.Dir(path), "next.json")
			writeEntries(t, next, e...)
			if err := os.Rename(next, path); err != nil {
				t.Fatal(err)
			}
		}},
		{"UpdateKeyFile (the CLI)", func(t *testing.T, path string, e ...TokenEntry) {
			err := UpdateKeyFile(path, false, func(kf *KeyFile) error {
				kf.Tokens = e
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}},
		{"removed, then written anew (an editor's save)", func(t *testing.T, path string, e ...TokenEntry) {
			if err := os.Rename(path, path+"~"); err != nil {
				t.Fatal(err)
			}
			writeEntries(t, path, e...)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keys.json")
			a, b := newEntry("tok_a", "A"), newEntry("tok_b", "B")
			writeEntries(t, path, a)
			s := openWatched(t, path, FileOptions{})
			for i := range 3 { // add, remove, add: every change seen, not only the first
				want := []TokenEntry{a}
				if i%2 == 0 {
					want = append(want, b)
				}
				tc.write(t, path, want...)
				testwait.For(t, 5*time.Second, "change brought in by the watch", func() bool {
					return (lookup(s, b) != nil) == (i%2 == 0)
				})
			}
		})
	}
}

// TestFileStoreWatchSymlink watches the file a symbolic link at the
// configured path points to, in another directory.
func TestFileStoreWatchSymlink(t *testing.T) {
	realDir, linkDir := t.TempDir(), t.TempDir()
	real := filepath.Join(realDir, "keys.json")
	link := filepath.Join(linkDir, "keys.json")
	a, b := newEntry("tok_a", ""), newEntry("tok_b", "")
	writeEntries(t, real, a)
	if err := os.Symlink(real, link); err != nil {
		t.Skipf("no symbolic links here: %v", err)
	}
	s := openWatched(t, link, FileOptions{})
	err := UpdateKeyFile(real, false, func(kf *KeyFile) error {
		kf.Tokens = append(kf.Tokens, b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 5*time.Second, "change to the link's target seen", func() bool { return lookup(s, b) != nil })
}

// TestFileStoreWatchMidWrite catches a hand edit between its truncate and
// its write: the empty file is neither reported nor put in force, and the
// write that completes it is.
func TestFileStoreWatchMidWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	a, b := newEntry("tok_a", ""), newEntry("tok_b", "")
	writeEntries(t, path, a)
	core, logs := observer.New(zapcore.InfoLevel)
	var failures []error
	s := openWatched(t, path, FileOptions{Logger: zap.New(core), OnReload: func(err error) {
		if err != nil {
			failures = append(failures, err)
		}
	}})
	data, err := marshalKeyFile(&KeyFile{Tokens: []TokenEntry{a, b}})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The truncate's event is checked meanwhile, on an empty file.
	time.Sleep(20 * settleDelay)
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 5*time.Second, "completed write seen", func() bool { return lookup(s, b) != nil })
	if lookup(s, a) == nil {
		t.Error("tok_a lost")
	}
	if n := logs.FilterLevelExact(zapcore.ErrorLevel).Len(); n != 0 {
		t.Errorf("%d error logs for a write caught midway: %v", n, logs.FilterLevelExact(zapcore.ErrorLevel).All())
	}
	if _, err := s.LastReload(); err != nil {
		t.Errorf("LastReload error: %v", err)
	}
	if len(failures) != 0 {
		t.Errorf("OnReload reported %v", failures)
	}
}

// TestFileStoreWatchBadEdit keeps the last good tokens when an edit leaves
// the file invalid, and reports it by the next poll at the latest.
func TestFileStoreWatchBadEdit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	a := newEntry("tok_a", "")
	writeEntries(t, path, a)
	s, err := OpenFile(path, FileOptions{PollInterval: testPoll})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := os.WriteFile(path, []byte(`{"tokens": [`), 0o600); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 5*time.Second, "bad edit reported", func() bool {
		_, err := s.LastReload()
		return err != nil
	})
	if lookup(s, a) == nil {
		t.Error("last good tokens dropped")
	}
}

// TestFileStorePollOnly brings a change in by the poll alone.
func TestFileStorePollOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	a, b := newEntry("tok_a", ""), newEntry("tok_b", "")
	writeEntries(t, path, a)
	s, err := OpenFile(path, FileOptions{PollInterval: testPoll, PollOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Watched() {
		t.Fatal("PollOnly store watches")
	}
	writeEntries(t, path, a, b)
	testwait.For(t, 5*time.Second, "change seen by the poll", func() bool { return lookup(s, b) != nil })
}

// TestFileStoreRewatch removes the watched directory and makes it again: the
// poll adds the watch back, and later changes come in by the watch.
func TestFileStoreRewatch(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "keys.json")
	a, b := newEntry("tok_a", ""), newEntry("tok_b", "")
	writeEntries(t, path, a)
	s, err := OpenFile(path, FileOptions{PollInterval: testPoll})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.Watched() {
		t.Skip("this system offers no file watch")
	}
	moved := dir + ".old"
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	writeEntries(t, path, a, b)
	testwait.For(t, 5*time.Second, "file in the new directory seen", func() bool { return lookup(s, b) != nil })
	testwait.For(t, 5*time.Second, "directory watched again", func() bool {
		return slices.Contains(s.watch.w.WatchList(), dir)
	})
}
