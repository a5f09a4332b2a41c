package keystore

import (
	"context"
	"fmt"
	"time"

	"github.com/deplo-sh/deplo-auth/internal/redact"
)

// TokenManager creates, revokes and lists the API tokens of one key store. The CLI
// (caddy deplo-auth token …) and the token API call it; FileTokenManager (the key
// file) and pgstore.Store (PostgreSQL) implement it.
type TokenManager interface {
	// CreateToken stores e (e.Hash in the stored form, see FormatHash; a
	// zero CreatedAt means now). The token works at once on every instance
	// that reads the store: the key file is replaced atomically under its
	// lock; PostgreSQL inserts and notifies. A duplicate id or hash is an
	// error that does not show the hash.
	CreateToken(ctx context.Context, e TokenEntry) error
	// RevokeToken revokes the token with the given id, and every token in
	// its subtree (the tokens it created, theirs, …), from at on (now if
	// at is zero; a future instant schedules the revocation), in one
	// transaction or file write, and returns the token as stored
	// afterwards. Revoking a token already revoked at
	// or before at succeeds and keeps the earlier revoked_at. An unknown id
	// is an error for which errors.Is(err, ErrNotFound) holds.
	RevokeToken(ctx context.Context, id string, at time.Time) (TokenRecord, error)
	// Token returns the token with the given id, or an error for which
	// errors.Is(err, ErrNotFound) holds.
	Token(ctx context.Context, id string) (TokenRecord, error)
	// ListTokens returns the tokens of workspace ("" = every workspace),
	// in the store's order (the key file's; PostgreSQL: oldest first).
	ListTokens(ctx context.Context, workspace string) ([]TokenRecord, error)

	// Create is CreateToken with the lineage checks made in the same
	// transaction (under the same file lock) as the insert: e.CreatedBy,
	// if an API token, must be a live token of e's workspace (else
	// ErrCreatorInactive) and e's expiry is capped at that parent's end;
	// a session creator must not be revoked; with opt.MaxLive the
	// workspace must hold fewer live tokens (else ErrLimitReached). It
	// returns the entry as stored.
	Create(ctx context.Context, e TokenEntry, opt CreateOptions) (TokenEntry, error)
	// Rotate replaces the token r names with a new one of the same name,
	// workspace, project, scopes and creator, rotated_from the old one,
	// whose expiry is the old one's lifetime counted from now (capped at
	// the parent's end and r.MaxLifetime); the old token and its subtree
	// are revoked now (r.Grace 0) or expire at now + r.Grace. All in one
	// transaction (file write), with r.Caller re-checked as Create checks
	// a creator. A token rotated before is reuse: it and every token
	// rotated from it, with their subtrees, are revoked, and the error is
	// a *ReuseError (errors.Is ErrTokenReused). An unknown token (or
	// another workspace's) is ErrNotFound; a revoked or expired one
	// ErrTokenInactive.
	Rotate(ctx context.Context, r RotateRequest) (TokenEntry, error)
	// RevokeCreatedBy revokes from at on (now if zero), in one
	// transaction, every token of workspace (of project, when not "")
	// that the credential f names created (see ParseCreatorFilter), with
	// their subtrees, and returns the ids whose revoked_at changed.
	RevokeCreatedBy(ctx context.Context, workspace, project string, f Creator, at time.Time) ([]string, error)
}

// HashRevoker revokes a token known by its value (its hash) rather than its
// id: the answer to a leak, where what is in hand is the token itself.
// FileTokenManager and pgstore.Store implement it.
type HashRevoker interface {
	// RevokeHash revokes, from at on (now if zero), the token whose hash
	// is h, as RevokeToken does, and records reason as its revoked_reason
	// when this call is what revokes it (an earlier revocation and its
	// reason stand). It returns the token as stored afterwards and whether
	// it was active just before. An unknown hash is an error for which
	// errors.Is(err, ErrNotFound) holds.
	RevokeHash(ctx context.Context, h Hash, at time.Time, reason string) (rec TokenRecord, wasActive bool, err error)
}

// SessionRevoker revokes dashboard sessions (see SessionDenylist).
type SessionRevoker interface {
	// RevokeSession revokes the session id now. expiresAt, if not zero, is
	// when the session would expire anyway (the entry may be dropped after
	// it). Revoking a revoked session keeps the earlier revoked_at.
	RevokeSession(ctx context.Context, id string, expiresAt time.Time) error
}

// TokenRecord is a token as the admin interface returns it: the stored entry
// (never the raw token; the hash only) and when it was last used.
type TokenRecord struct {
	TokenEntry
	// LastUsedAt is nil when the token has not been used since the store
	// began recording, or when the store records no use (the key file).
	LastUsedAt *time.Time `json:"last_used_at"`
}

// notFoundError is an admin error about an unknown id; errors.Is matches it
// to ErrNotFound.
type notFoundError struct{ what, id string }

func (e *notFoundError) Error() string {
	return fmt.Sprintf("keystore: %s: no token with id %q", e.what, redact.ID(e.id))
}

func (e *notFoundError) Is(target error) bool { return target == ErrNotFound }

// NoTokenError returns the error of an admin operation (what, e.g. "revoke
// token") on an unknown token id: errors.Is(err, ErrNotFound) holds, and the
// message names the id only when redact.ID allows.
func NoTokenError(what, id string) error { return &notFoundError{what: what, id: id} }
