package keystore

import (
	"context"
	"errors"
	"slices"
	"time"
)

// FileAdmin edits the key file at Path: each change is one UpdateKeyFile
// (the file lock held, the file replaced atomically), so concurrent admins
// in any number of processes never lose a change and a reader never sees a
// half-written file. Every FileStore polling the file picks the change up
// within its poll interval; the store returned by FileStore.Admin reloads at
// once.
type FileAdmin struct {
	Path string
	// afterWrite, if set, is called after each successful write.
	afterWrite func()
}

var (
	_ Admin        = (*FileAdmin)(nil)
	_ SessionAdmin = (*FileAdmin)(nil)
)

// Admin returns a FileAdmin for the store's file that reloads the store
// after each change, so a token created through it works in this process
// at once.
func (s *FileStore) Admin() *FileAdmin {
	return &FileAdmin{Path: s.path, afterWrite: s.Reload}
}

// update runs UpdateKeyFile and, on success, the afterWrite hook.
func (a *FileAdmin) update(create bool, fn func(*KeyFile) error) error {
	if err := UpdateKeyFile(a.Path, create, fn); err != nil {
		return err
	}
	if a.afterWrite != nil {
		a.afterWrite()
	}
	return nil
}

// CreateToken appends e to the key file, creating the file (mode 0600) if
// it does not exist. The entry is validated with the key file's rules.
func (a *FileAdmin) CreateToken(_ context.Context, e TokenEntry) error {
	if e.CreatedAt.IsZero() {
		e.CreatedAt = time.Now().UTC().Truncate(time.Second)
	}
	return a.update(true, func(kf *KeyFile) error {
		kf.Tokens = append(kf.Tokens, e)
		return nil
	})
}

// RevokeToken sets the token's revoked_at to the earlier of its current one
// and at (now if zero). See Admin.
func (a *FileAdmin) RevokeToken(_ context.Context, id string, at time.Time) (TokenRecord, error) {
	if at.IsZero() {
		at = time.Now().UTC().Truncate(time.Second)
	}
	var out TokenRecord
	err := a.update(false, func(kf *KeyFile) error {
		e := kf.Find(id)
		if e == nil {
			return NoTokenError("revoke token", id)
		}
		if e.RevokedAt == nil || at.Before(*e.RevokedAt) {
			e.RevokedAt = &at
		}
		out = TokenRecord{TokenEntry: *e}
		return nil
	})
	if err != nil {
		return TokenRecord{}, err
	}
	return out, nil
}

// Token returns the entry with the given id. See Admin.
func (a *FileAdmin) Token(_ context.Context, id string) (TokenRecord, error) {
	kf, err := ReadKeyFile(a.Path)
	if err != nil {
		return TokenRecord{}, err
	}
	e := kf.Find(id)
	if e == nil {
		return TokenRecord{}, NoTokenError("token", id)
	}
	return TokenRecord{TokenEntry: *e}, nil
}

// ListTokens returns the file's entries of workspace ("" = all), in file
// order. LastUsedAt is always nil: the key file records no use.
func (a *FileAdmin) ListTokens(_ context.Context, workspace string) ([]TokenRecord, error) {
	kf, err := ReadKeyFile(a.Path)
	if err != nil {
		return nil, err
	}
	out := make([]TokenRecord, 0, len(kf.Tokens))
	for _, e := range kf.Tokens {
		if workspace == "" || e.Workspace == workspace {
			out = append(out, TokenRecord{TokenEntry: e})
		}
	}
	return out, nil
}

// RevokeSession adds the session to the file's "revoked_sessions". See
// SessionAdmin.
func (a *FileAdmin) RevokeSession(_ context.Context, id string, expiresAt time.Time) error {
	if id == "" {
		return errors.New("keystore: revoke session: empty session id")
	}
	var exp *time.Time
	if !expiresAt.IsZero() {
		exp = &expiresAt
	}
	return a.update(false, func(kf *KeyFile) error {
		if slices.ContainsFunc(kf.RevokedSessions, func(rs RevokedSession) bool { return rs.ID == id }) {
			return nil // already revoked; keep the earlier instant
		}
		kf.RevokedSessions = append(kf.RevokedSessions, RevokedSession{
			ID: id, RevokedAt: time.Now().UTC().Truncate(time.Second), ExpiresAt: exp})
		return nil
	})
}
