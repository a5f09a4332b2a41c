package keystore

import (
	"context"
	"errors"
	"slices"
	"time"
)

// FileTokenManager edits the key file at Path: each change is one UpdateKeyFile
// (the file lock held, the file replaced atomically), so concurrent admins
// in any number of processes never lose a change and a reader never sees a
// half-written file. Every FileStore polling the file picks the change up
// within its poll interval; the store returned by FileStore.TokenManager has it in
// force at once.
type FileTokenManager struct {
	Path string
	// store, if set, is the FileStore of Path: it gets each change as
	// written, and its document stands for the file's bytes while they are
	// the ones it loaded (so they are not parsed again).
	store *FileStore
	// beforeInsert, if set, is called by Create under the file lock, after
	// the lineage checks and before the write (tests: to let a revocation
	// arrive exactly then).
	beforeInsert func()
}

var (
	_ TokenManager   = (*FileTokenManager)(nil)
	_ HashRevoker    = (*FileTokenManager)(nil)
	_ SessionRevoker = (*FileTokenManager)(nil)
)

// TokenManager returns a FileTokenManager for the store's file that hands each change to
// the store, so a token created through it works in this process at once.
func (s *FileStore) TokenManager() *FileTokenManager {
	return &FileTokenManager{Path: s.path, store: s}
}

// update runs UpdateKeyFile, through the store if there is one. fn must
// replace an entry's pointers and scopes, never write through them (see
// updateKeyFile).
func (a *FileTokenManager) update(create bool, fn func(*KeyFile) error) error {
	return updateKeyFile(a.Path, create, fn, a.store)
}

// read reads and validates the file as ReadKeyFile does; the document may
// be the store's, shared: see copyEntry.
func (a *FileTokenManager) read() (*KeyFile, error) {
	data, _, _, err := readFile(a.Path)
	if err != nil {
		return nil, err
	}
	return a.store.document(a.Path, data)
}

// copyEntry returns e with its own pointers and scopes, for a caller that
// may change them.
func copyEntry(e *TokenEntry) TokenEntry {
	c := *e
	c.Scopes = slices.Clone(e.Scopes)
	c.AllowedIPs = slices.Clone(e.AllowedIPs)
	if e.Project != nil {
		p := *e.Project
		c.Project = &p
	}
	if e.ExpiresAt != nil {
		t := *e.ExpiresAt
		c.ExpiresAt = &t
	}
	if e.RevokedAt != nil {
		t := *e.RevokedAt
		c.RevokedAt = &t
	}
	if e.CreatedBy != nil {
		cb := *e.CreatedBy
		c.CreatedBy = &cb
	}
	return c
}

// CreateToken appends e to the key file, creating the file (mode 0600) if
// it does not exist. The entry is validated with the key file's rules, and
// its creator checked as Create does.
func (a *FileTokenManager) CreateToken(ctx context.Context, e TokenEntry) error {
	_, err := a.Create(ctx, e, CreateOptions{})
	return err
}

// RevokeToken sets the revoked_at of the token and of every token in its
// subtree (its children, theirs, …) to the earlier of its current one and
// at (now if zero), in one write. See TokenManager.
func (a *FileTokenManager) RevokeToken(_ context.Context, id string, at time.Time) (TokenRecord, error) {
	at = nowOr(at)
	var out TokenRecord
	err := a.update(false, func(kf *KeyFile) error {
		e := kf.Find(id)
		if e == nil {
			return NoTokenError("revoke token", id)
		}
		revokeEntry(kf, e, at, "")
		out = TokenRecord{TokenEntry: copyEntry(e)}
		return nil
	})
	if err != nil {
		return TokenRecord{}, err
	}
	return out, nil
}

// RevokeHash revokes the token whose hash is h. See HashRevoker.
func (a *FileTokenManager) RevokeHash(_ context.Context, h Hash, at time.Time, reason string) (TokenRecord, bool, error) {
	if at.IsZero() {
		at = time.Now().UTC().Truncate(time.Second)
	}
	stored := FormatHash(h)
	var (
		out    TokenRecord
		active bool
	)
	err := a.update(false, func(kf *KeyFile) error {
		for i := range kf.Tokens {
			if e := &kf.Tokens[i]; e.Hash == stored {
				active = (e.RevokedAt == nil || at.Before(*e.RevokedAt)) && (e.ExpiresAt == nil || at.Before(*e.ExpiresAt))
				revokeEntry(kf, e, at, reason)
				out = TokenRecord{TokenEntry: copyEntry(e)}
				return nil
			}
		}
		return NoTokenError("revoke token", "")
	})
	if err != nil {
		return TokenRecord{}, false, err
	}
	return out, active, nil
}

// revokeEntry revokes e, an entry of kf, and its subtree (the tokens it
// created, theirs, …) from at on: an earlier revocation stands with its
// reason; otherwise revoked_at becomes at, and e's revoked_reason reason.
// Every revocation of the key file goes through it. It returns the ids
// whose revoked_at changed.
func revokeEntry(kf *KeyFile, e *TokenEntry, at time.Time, reason string) []string {
	t := newKeyTree(kf)
	i := t.byID[e.ID]
	changed := t.revoke(t.subtree([]int{i}), at)
	if len(changed) > 0 && changed[0] == e.ID && reason != "" {
		kf.Tokens[i].RevokedReason = reason
	}
	return changed
}

// Token returns the entry with the given id. See TokenManager.
func (a *FileTokenManager) Token(_ context.Context, id string) (TokenRecord, error) {
	kf, err := a.read()
	if err != nil {
		return TokenRecord{}, err
	}
	e := kf.Find(id)
	if e == nil {
		return TokenRecord{}, NoTokenError("token", id)
	}
	return TokenRecord{TokenEntry: copyEntry(e)}, nil
}

// ListTokens returns the file's entries of workspace ("" = all), in file
// order. LastUsedAt is always nil: the key file records no use.
func (a *FileTokenManager) ListTokens(_ context.Context, workspace string) ([]TokenRecord, error) {
	kf, err := a.read()
	if err != nil {
		return nil, err
	}
	out := make([]TokenRecord, 0, len(kf.Tokens))
	for i := range kf.Tokens {
		if e := &kf.Tokens[i]; workspace == "" || e.Workspace == workspace {
			out = append(out, TokenRecord{TokenEntry: copyEntry(e)})
		}
	}
	return out, nil
}

// RevokeSession adds the session to the file's "revoked_sessions". See
// SessionRevoker.
func (a *FileTokenManager) RevokeSession(_ context.Context, id string, expiresAt time.Time) error {
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
