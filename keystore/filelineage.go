package keystore

import (
	"context"
	"time"
)

// The lineage operations of the key file: each is one UpdateKeyFile, so the
// checks run under the file lock that the write holds, and a cascade is one
// file write that every instance picks up at once.

// Create stores e after checking, under the file lock, that its creator
// still works (a parent token neither revoked nor expired, a session not
// revoked) and that the workspace is below opt.MaxLive; e's expiry is
// capped at its parent's end. It returns the entry as stored. See TokenManager.
func (a *FileTokenManager) Create(_ context.Context, e TokenEntry, opt CreateOptions) (TokenEntry, error) {
	now := nowOr(opt.Now)
	if e.CreatedAt.IsZero() {
		e.CreatedAt = now
	}
	var out TokenEntry
	err := a.update(true, func(kf *KeyFile) error {
		var err error
		out, err = newKeyTree(kf).create(e, opt, now)
		if err == nil && a.beforeInsert != nil {
			a.beforeInsert()
		}
		return err
	})
	if err != nil {
		return TokenEntry{}, err
	}
	return copyEntry(&out), nil
}

// Rotate replaces a token (see TokenManager).
func (a *FileTokenManager) Rotate(_ context.Context, r RotateRequest) (TokenEntry, error) {
	now := nowOr(r.Now)
	var (
		out    TokenEntry
		reused []string
	)
	err := a.update(false, func(kf *KeyFile) error {
		var err error
		out, reused, err = newKeyTree(kf).rotate(r, now)
		return err
	})
	switch {
	case err != nil:
		return TokenEntry{}, err
	case reused != nil:
		return TokenEntry{}, &ReuseError{Revoked: reused}
	}
	return copyEntry(&out), nil
}

// RevokeCreatedBy revokes everything a credential created (see TokenManager).
func (a *FileTokenManager) RevokeCreatedBy(_ context.Context, workspace, project string, f Creator, at time.Time) ([]string, error) {
	at = nowOr(at)
	var out []string
	err := a.update(false, func(kf *KeyFile) error {
		out = newKeyTree(kf).revokeCreatedBy(workspace, project, f, at)
		return nil
	})
	return out, err
}
