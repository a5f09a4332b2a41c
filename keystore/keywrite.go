package keystore

// Writing the key file: under a lock, checked, replaced atomically.

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// UpdateKeyFile edits the key file at path: it takes an exclusive lock on
// "<path>.lock" (flock, on unix; elsewhere there is no lock), reads the file
// (a missing file is an empty document when create is true, an error
// otherwise), calls fn to modify the document, validates the result with the
// rules ReadKeyFile applies, and replaces the file atomically: a temporary
// file in the same directory, written, fsynced and renamed over the
// original, then the directory fsynced. The file is written with mode 0600
// whatever its old mode (it lists every token's hash, and a group- or
// world-readable copy left by an editor or a checkout is not kept); an
// existing file keeps, where permitted, its owner and group. If
// path is a symbolic link, the file it points to is replaced. If fn or
// validation fails, nothing is written. The lock file is left in place.
func UpdateKeyFile(path string, create bool, fn func(*KeyFile) error) error {
	return updateKeyFile(path, create, fn, nil)
}

// updateKeyFile is UpdateKeyFile. With a store, a file whose bytes are the
// ones the store last loaded is not parsed again (the store's document is
// copied), and what is written is handed to the store, in force at once.
// fn may then get a copy sharing the store's entries' pointers and scopes:
// it must replace them, never write through them.
func updateKeyFile(path string, create bool, fn func(*KeyFile) error, store *FileStore) error {
	unlock, err := lockFile(path + ".lock")
	if err != nil {
		return fmt.Errorf("keys file %s: locking: %w", path, err)
	}
	defer unlock()

	target := path
	if resolved, err := filepath.EvalSymlinks(path); err == nil {
		target = resolved
	}
	var kf *KeyFile
	data, old, _, err := readFile(target)
	switch {
	case err == nil:
		if kf, err = store.editable(target, data); err != nil {
			return err
		}
	case errors.Is(err, fs.ErrNotExist) && create:
		kf = &KeyFile{}
	default:
		return err
	}
	if err := fn(kf); err != nil {
		return err
	}
	// The document is checked as it stands in memory, by the rules the
	// written file will be parsed with: no JSON is parsed again, and the
	// tokens found are what the store gets.
	tokens, err := checkKeyFile(kf)
	if err != nil {
		return fmt.Errorf("refusing to write an invalid key file: keys file %s: %w", path, err)
	}
	data, err = marshalKeyFile(kf)
	if err != nil {
		return fmt.Errorf("keys file %s: encoding: %w", path, err)
	}
	if !keyFileUTF8(kf) {
		// Encoding replaced invalid UTF-8: the file says something else
		// than kf, so the store gets what the file says.
		if kf, tokens, err = parseKeyFile(path, data); err != nil {
			return fmt.Errorf("refusing to write an invalid key file: %w", err)
		}
	}
	writtenAt := time.Now()
	info, err := writeAtomic(target, data, 0o600, old)
	if err != nil {
		return fmt.Errorf("keys file %s: writing: %w", path, err)
	}
	store.adopt(kf, tokens, fileState{info: info, sum: sha256.Sum256(data), readAt: writtenAt})
	return nil
}

// writeAtomic replaces path with data through a temporary file in the same
// directory, and returns the status of the file written. old, if not nil,
// is the file being replaced, whose owner is kept where permitted.
func writeAtomic(path string, data []byte, mode fs.FileMode, old os.FileInfo) (info os.FileInfo, err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return nil, err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return nil, err
	}
	if err = f.Chmod(mode); err != nil {
		return nil, err
	}
	if old != nil {
		keepOwner(f, old)
	}
	if err = f.Sync(); err != nil {
		return nil, err
	}
	if info, err = f.Stat(); err != nil {
		return nil, err
	}
	if err = f.Close(); err != nil {
		return nil, err
	}
	if err = os.Rename(tmp, path); err != nil {
		return nil, err
	}
	return info, syncDir(dir)
}
