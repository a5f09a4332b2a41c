package keystore

import (
	"errors"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
)

// settleDelay is how long the watcher waits after an event on the key file
// before checking it, so that the events of one write (a truncate and the
// writes after it, or an editor's rename and create) make one check.
const settleDelay = 2 * time.Millisecond

// fileWatch is the directory watch that tells a FileStore its file changed.
type fileWatch struct {
	w *fsnotify.Watcher
	// dirs are the directories watched: the key file's, and that of the
	// file a symbolic link at its path resolves to, if another.
	dirs []string
	// names are the paths whose events start a check.
	names map[string]bool
}

// watchFile watches the directory of path (and of the file it resolves to,
// if it is a symbolic link into another directory): the CLI and most
// editors replace the file by rename, which a watch on the file itself
// would not survive. It returns nil, after logging why, when the system
// offers no watch (no inotify, or its limits reached): the poll alone then
// carries changes.
func watchFile(path string, log *zap.Logger) *fileWatch {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		log.Warn("cannot watch the key file; polling it only",
			zap.String("path", path), zap.Error(err))
		return nil
	}
	fw := &fileWatch{w: w, names: map[string]bool{filepath.Clean(path): true}}
	fw.dirs = append(fw.dirs, filepath.Dir(filepath.Clean(path)))
	if real, err := filepath.EvalSymlinks(path); err == nil {
		real = filepath.Clean(real)
		fw.names[real] = true
		if d := filepath.Dir(real); d != fw.dirs[0] {
			fw.dirs = append(fw.dirs, d)
		}
	}
	for _, d := range fw.dirs {
		if err := w.Add(d); err != nil {
			_ = w.Close()
			log.Warn("cannot watch the key file's directory; polling the file only",
				zap.String("path", path), zap.String("directory", d), zap.Error(err))
			return nil
		}
	}
	return fw
}

// relevant reports whether ev may have changed the key file.
func (fw *fileWatch) relevant(ev fsnotify.Event) bool {
	return fw.names[filepath.Clean(ev.Name)]
}

// rewatch adds the watched directories again when a watch was lost (a
// directory removed or renamed and made again), and reports whether it
// added any: the file may have changed unseen meanwhile.
func (fw *fileWatch) rewatch() bool {
	have := map[string]bool{}
	for _, d := range fw.w.WatchList() {
		have[filepath.Clean(d)] = true
	}
	added := false
	for _, d := range fw.dirs {
		if !have[d] && fw.w.Add(d) == nil {
			added = true
		}
	}
	return added
}

// run checks the file when the watch reports a change to it (after
// settleDelay, so a burst of events makes one check) and at every poll
// interval regardless, which catches what no event announces (a file
// system whose changes come from another host, a lost watch, an event
// queue overflow) until the watch is back.
func (s *FileStore) run(fw *fileWatch) {
	defer close(s.done)
	t := time.NewTicker(s.interval)
	defer t.Stop()
	var events <-chan fsnotify.Event
	var errs <-chan error
	if fw != nil {
		defer fw.w.Close()
		events, errs = fw.w.Events, fw.w.Errors
	}
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	pending := false
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if fw != nil && fw.rewatch() {
				s.log.Info("watching the key file's directory again", zap.String("path", s.path))
			}
			s.Reload()
		case ev, ok := <-events:
			if !ok {
				events = nil // the watcher closed: the poll carries on alone
				continue
			}
			if fw.relevant(ev) && !pending {
				pending = true
				settle.Reset(settleDelay)
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				// Events were dropped: the file may have changed unseen.
				if !pending {
					pending = true
					settle.Reset(settleDelay)
				}
				continue
			}
			s.log.Warn("key file watch error; the poll carries changes meanwhile",
				zap.String("path", s.path), zap.Error(err))
		case <-settle.C:
			pending = false
			s.pollMu.Lock()
			s.check(true)
			s.pollMu.Unlock()
		}
	}
}
