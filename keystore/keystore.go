// Package keystore looks API tokens up by the SHA-256 of the whole token.
//
// Store is the abstraction the authenticator queries; FileStore is the
// embedded default: a JSON key file, re-read when it changes. KeyFile,
// ReadKeyFile and UpdateKeyFile read and edit that file for the token
// commands. The PostgreSQL store lives in keystore/pgstore. The raw token is
// never stored, only "sha256:<hex>" of it.
package keystore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/netip"
	"time"
)

// Hash is the SHA-256 of a whole API token.
type Hash [sha256.Size]byte

// hashPrefix starts the stored form of a Hash.
const hashPrefix = "sha256:"

// errHashForm is the reason given for a malformed stored hash. It never
// includes the value.
const errHashForm = `want "sha256:" followed by 64 lowercase hex characters`

// FormatHash returns the stored form of h: "sha256:" and 64 lowercase hex
// characters.
func FormatHash(h Hash) string {
	return hashPrefix + hex.EncodeToString(h[:])
}

// ParseHash parses the stored form written by FormatHash, exactly: the
// prefix, then 64 lowercase hex characters. The error does not echo s.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != len(hashPrefix)+2*len(h) || s[:len(hashPrefix)] != hashPrefix {
		return h, errors.New(errHashForm)
	}
	hx := s[len(hashPrefix):]
	for i := 0; i < len(hx); i++ {
		if c := hx[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return h, errors.New(errHashForm)
		}
	}
	if _, err := hex.Decode(h[:], []byte(hx)); err != nil {
		return Hash{}, errors.New(errHashForm)
	}
	return h, nil
}

// Token is one stored API token. It never holds the raw token. Tokens
// returned by a Store are shared between callers and must not be modified.
type Token struct {
	ID, Name, Workspace, Project string // Project "" = workspace-scoped
	Hash                         Hash
	// Scopes are the names as stored; the caller maps them to known scopes
	// and ignores (and logs) unknown ones.
	Scopes               []string
	CreatedAt            time.Time
	ExpiresAt, RevokedAt time.Time // zero = none
	// AllowedIPs, when not empty, are the only client addresses the token
	// may be used from (see AllowedFrom); nil: anywhere.
	AllowedIPs []netip.Prefix
}

// TokenStatus is whether a token may be used at an instant.
type TokenStatus uint8

const (
	TokenActive TokenStatus = iota
	TokenRevoked
	TokenExpired
)

// Status reports the token's state at now. revoked_at and expires_at take
// effect at that instant (a time in the future schedules it); a token both
// revoked and expired is reported revoked. A nil Token is revoked.
func (t *Token) Status(now time.Time) TokenStatus {
	switch {
	case t == nil:
		return TokenRevoked
	case !t.RevokedAt.IsZero() && !now.Before(t.RevokedAt):
		return TokenRevoked
	case !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt):
		return TokenExpired
	}
	return TokenActive
}

// ErrNotFound is the answer for an unknown key: a normal answer, not a
// failure.
var ErrNotFound = errors.New("keystore: token not found")

// Store looks tokens up by hash. A technical failure (unreachable, timeout)
// returns an error that is not ErrNotFound.
type Store interface {
	Lookup(ctx context.Context, h Hash) (*Token, error)
	// Generation changes whenever the store's contents may have changed
	// (reload); a cache compares it to drop entries fetched before a change.
	Generation() uint64
}

// Watcher is implemented by stores that push changes as they happen. fn is
// called with the hash of each changed token, or with all=true when changes
// may have been missed (the cache must then drop every entry of this store).
// Calls come from one goroutine, in order; fn must return quickly and must
// not close the store. stop unsubscribes; it is idempotent.
type Watcher interface {
	Watch(fn func(h Hash, all bool)) (stop func())
}

// ListenerHealth is implemented by watching stores whose change feed can be
// down while lookups work (PostgreSQL: the LISTEN connection lost, lookups
// answered by the pool). While Listening is false, changes are missed: a
// cache must re-check old answers instead of trusting them (see tokencache).
type ListenerHealth interface {
	Listening() bool
}
