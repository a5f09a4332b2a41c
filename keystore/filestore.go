package keystore

import (
	"context"
	"crypto/sha256"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// DefaultPollInterval is how often a FileStore checks its file when
// FileOptions.PollInterval is not set. Where the file's directory is
// watched, the poll is the safety net for changes no event announces.
const DefaultPollInterval = 500 * time.Millisecond

// racyWindow is how long after a file's modification time its status alone
// is not trusted to reveal a change: a rewrite within the file system's
// timestamp granularity (a clock tick on Linux, up to 2s on FAT) can keep
// size, mtime and inode. Until the file's mtime is this much older than the
// last read, each poll also compares the contents.
const racyWindow = 2 * time.Second

// FileOptions configures OpenFile.
type FileOptions struct {
	// PollInterval is how often the file is checked for changes
	// (DefaultPollInterval if zero or negative), whether or not its
	// directory is watched. Where the watch is unavailable, a change takes
	// effect within about one interval.
	PollInterval time.Duration
	// PollOnly turns the directory watch off: the poll alone carries
	// changes. Default false: the file's directory is watched (inotify,
	// kqueue, …) and a change takes effect within milliseconds.
	PollOnly bool
	// Logger receives reload reports (nothing is logged if nil).
	Logger *zap.Logger
	// OnReload, if set, is called from the poller after each reload
	// attempt that a change of the file started (not after the initial
	// load): err is nil when the new contents are in force, else why they
	// are not (the last good ones stay; a file that stays unreadable is
	// reported once, until its error changes). It must not call Close.
	OnReload func(err error)
}

// FileStore is a Store backed by a JSON key file, re-read when the file
// changes. Lookups are lock-free. A reload that fails keeps the last good
// contents in force.
type FileStore struct {
	path     string
	interval time.Duration
	log      *zap.Logger
	onReload func(error)

	snap atomic.Pointer[snapshot]

	mu      sync.Mutex // guards lastOK and lastErr
	lastOK  time.Time
	lastErr error

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	watch     *fileWatch // nil: the poll alone (see watchFile)

	// pollMu serializes poll between the poller and Reload; it guards the
	// fields below.
	pollMu     sync.Mutex
	seen       fileState
	failing    bool   // the last poll could not stat or read the file
	lastLogged string // last logged read failure, logged once until it changes
}

// snapshot is one immutable generation of the store's contents.
type snapshot struct {
	tokens   map[Hash]*Token
	sessions *SessionSet // revoked dashboard sessions, see SessionRevoked
	gen      uint64
	// doc is the validated document of the file whose bytes hash to sum;
	// FileTokenManager reuses it instead of parsing those bytes again. Read-only.
	doc *KeyFile
	sum [sha256.Size]byte
}

// fileState is what the poller last read.
type fileState struct {
	info   os.FileInfo // status of the file read, taken before reading it
	sum    [sha256.Size]byte
	readAt time.Time
	err    error // outcome of parsing those contents
}

var _ Store = (*FileStore)(nil)

// OpenFile reads and validates the key file at path and starts watching it
// for changes. It fails if the file is missing or invalid; the error names
// the file and, for a bad entry, the entry's index, id and field. Close
// stops the watch.
//
// The file's directory is watched (fsnotify), so a change by hand or by
// rename is checked within milliseconds of its event; the file is also
// checked every PollInterval, the only way where the system offers no
// watch (logged at warn level at open) and the bound on anything no event
// announces. A check stats the file and compares size, mtime and identity
// (os.SameFile, so an atomic rename is seen). On a change it parses the
// file: on failure it logs at error level and keeps the last good set; on
// success it swaps the new set in, changes Generation, logs at info level
// and calls OnReload.
func OpenFile(path string, opts FileOptions) (*FileStore, error) {
	data, info, readAt, err := readFile(path)
	if err != nil {
		return nil, err
	}
	kf, tokens, err := parseKeyFile(path, data)
	if err != nil {
		return nil, err
	}
	s := &FileStore{
		path:     path,
		interval: opts.PollInterval,
		log:      opts.Logger,
		onReload: opts.OnReload,
		lastOK:   time.Now(),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		seen:     fileState{info: info, sum: sha256.Sum256(data), readAt: readAt},
	}
	if s.interval <= 0 {
		s.interval = DefaultPollInterval
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	s.snap.Store(&snapshot{tokens: tokens, sessions: newSessionSet(kf.RevokedSessions), gen: 1,
		doc: kf, sum: s.seen.sum})
	if !opts.PollOnly {
		s.watch = watchFile(path, s.log)
	}
	s.log.Info("key file loaded", zap.String("path", path), zap.Int("tokens", len(tokens)),
		zap.Bool("watched", s.watch != nil))
	go s.run(s.watch)
	return s, nil
}

// Lookup returns the token whose hash is h, or ErrNotFound. It does not
// block or allocate. The returned Token is shared and must not be modified.
func (s *FileStore) Lookup(_ context.Context, h Hash) (*Token, error) {
	if t, ok := s.snap.Load().tokens[h]; ok {
		return t, nil
	}
	return nil, ErrNotFound
}

// Generation changes each time a reload swaps in new contents.
func (s *FileStore) Generation() uint64 { return s.snap.Load().gen }

// Len returns the number of tokens in force.
func (s *FileStore) Len() int { return len(s.snap.Load().tokens) }

// Watched reports whether the file's directory is watched; if not, changes
// are seen by the poll alone.
func (s *FileStore) Watched() bool { return s.watch != nil }

// Path returns the key file's path as given to OpenFile.
func (s *FileStore) Path() string { return s.path }

// LastReload returns when the contents in force were loaded, and the error
// of the last reload attempt (nil if it succeeded, or if the file has not
// changed since the last success).
func (s *FileStore) LastReload() (at time.Time, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastOK, s.lastErr
}

// Close stops the watch and the poller and waits for them to exit. The store keeps answering
// lookups from the contents in force. Close is idempotent.
func (s *FileStore) Close() error {
	s.closeOnce.Do(func() { close(s.stop) })
	<-s.done
	return nil
}

// Reload checks the file now, as the poller does, and swaps in its new
// contents if it changed; it returns when that is done. FileTokenManager calls it
// after a write, so the change is in force in this process at once.
func (s *FileStore) Reload() {
	s.pollMu.Lock()
	defer s.pollMu.Unlock()
	s.check(false)
}

// check checks the file once and reloads it if it changed. s.pollMu is held.
//
// tentative is set when an event started the check: the file may be caught
// mid-change (truncated by a hand edit not yet written, or missing between
// an editor's rename and create). A file that cannot be read or parsed is
// then left unrecorded and unreported: the writer's next event checks it
// again, and the next poll reports it if it stays bad.
func (s *FileStore) check(tentative bool) {
	info, err := os.Stat(s.path)
	if err != nil {
		if !tentative {
			s.readFailed(fileError(s.path, err))
		}
		return
	}
	if sameFile(s.seen.info, info) && !s.racy() && !s.failing {
		return
	}
	data, info, readAt, err := readFile(s.path)
	if err != nil {
		if !tentative {
			s.readFailed(err)
		}
		return
	}
	if s.failing {
		s.failing, s.lastLogged = false, ""
		s.log.Info("key file readable again", zap.String("path", s.path))
	}
	sum := sha256.Sum256(data)
	if sum == s.seen.sum {
		// Same contents as last read (a touch, an identical rewrite, or a
		// racy check): nothing to reload; that read's outcome stands.
		s.seen.info, s.seen.readAt = info, readAt
		s.setErr(s.seen.err)
		return
	}
	kf, tokens, err := parseKeyFile(s.path, data)
	if err != nil && tentative {
		return
	}
	s.seen = fileState{info: info, sum: sum, readAt: readAt, err: err}
	if err != nil {
		// Reported before LastReload shows it, so that whoever sees the
		// error there also finds it in the log and the metrics.
		s.log.Error("key file reload failed; keeping the last good tokens",
			zap.String("path", s.path), zap.Error(err), zap.Int("tokens", s.Len()))
		if s.onReload != nil {
			s.onReload(err)
		}
		s.setErr(err)
		return
	}
	s.install(kf, tokens, sum)
}

// install puts the validated contents of the file whose bytes hash to sum
// in force. s.pollMu is held.
func (s *FileStore) install(kf *KeyFile, tokens map[Hash]*Token, sum [sha256.Size]byte) {
	// LastReload is updated first, so whoever sees the new contents also
	// sees their load time.
	s.mu.Lock()
	s.lastOK, s.lastErr = time.Now(), nil
	s.mu.Unlock()
	next := &snapshot{tokens: tokens, sessions: newSessionSet(kf.RevokedSessions), gen: s.snap.Load().gen + 1,
		doc: kf, sum: sum}
	s.snap.Store(next)
	s.log.Info("key file reloaded", zap.String("path", s.path),
		zap.Int("tokens", len(tokens)), zap.Uint64("generation", next.gen))
	if s.onReload != nil {
		s.onReload(nil)
	}
}

// adopt puts in force what FileTokenManager has just written to the file (under
// the file lock): the validated document, its tokens and the status of the
// file written, so the poller does not read it again. A nil store does
// nothing.
func (s *FileStore) adopt(kf *KeyFile, tokens map[Hash]*Token, written fileState) {
	if s == nil {
		return
	}
	s.pollMu.Lock()
	defer s.pollMu.Unlock()
	if s.failing {
		s.failing, s.lastLogged = false, ""
		s.log.Info("key file readable again", zap.String("path", s.path))
	}
	s.seen = written
	if written.sum == s.snap.Load().sum {
		s.setErr(nil) // rewritten unchanged: the contents in force stay
		return
	}
	s.install(kf, tokens, written.sum)
}

// document returns the validated document of the key file whose contents
// are data (read from name): the store's, shared and read-only, when data
// is what it last loaded, else data parsed with every rule. A nil store
// always parses.
func (s *FileStore) document(name string, data []byte) (*KeyFile, error) {
	if s != nil {
		if snap := s.snap.Load(); snap.doc != nil && sha256.Sum256(data) == snap.sum {
			return snap.doc, nil
		}
	}
	kf, _, err := parseKeyFile(name, data)
	return kf, err
}

// editable is document, copied so that it may be changed: the slices are
// new, the entries' pointers and scopes shared.
func (s *FileStore) editable(name string, data []byte) (*KeyFile, error) {
	kf, err := s.document(name, data)
	if err != nil || s == nil {
		return kf, err
	}
	return &KeyFile{Tokens: slices.Clone(kf.Tokens), RevokedSessions: slices.Clone(kf.RevokedSessions)}, nil
}

// racy reports whether the last read was too close to the file's mtime for
// an unchanged status to prove unchanged contents.
func (s *FileStore) racy() bool {
	return s.seen.readAt.Sub(s.seen.info.ModTime()) < racyWindow
}

// readFailed records a failure to stat or read the file (missing,
// permissions). The file is read again at each poll until that succeeds;
// the failure is logged once until its message changes.
func (s *FileStore) readFailed(err error) {
	s.failing = true
	if msg := err.Error(); msg != s.lastLogged {
		s.lastLogged = msg
		s.log.Error("key file unreadable; keeping the last good tokens",
			zap.String("path", s.path), zap.Error(err), zap.Int("tokens", s.Len()))
		if s.onReload != nil {
			s.onReload(err)
		}
	}
	s.setErr(err) // after the report, as in a failed parse
}

func (s *FileStore) setErr(err error) {
	s.mu.Lock()
	s.lastErr = err
	s.mu.Unlock()
}

// sameFile reports whether a and b describe the same file with the same
// size and modification time.
func sameFile(a, b os.FileInfo) bool {
	return a.Size() == b.Size() && a.ModTime().Equal(b.ModTime()) && os.SameFile(a, b)
}
