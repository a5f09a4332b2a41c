package keystore

// The key file: the document and its entries as written on disk, the field
// names they are spelled with, and the errors that name an entry. Reading
// is in keyparse.go, the rules in keycheck.go, writing in keywrite.go and
// keyencode.go.

import (
	"crypto/rand"
	"fmt"
	"strings"
	"time"
)

// MaxFileSize is the largest key file read or written; a bigger one is
// refused.
const MaxFileSize = 64 << 20

// KeyFile is the on-disk key file document.
type KeyFile struct {
	Tokens []TokenEntry `json:"tokens"`
	// RevokedSessions lists revoked dashboard sessions (see
	// SessionDenylist). It is optional and omitted when empty.
	RevokedSessions []RevokedSession `json:"revoked_sessions,omitempty"`
}

// TokenEntry is one entry of the key file, as written on disk. Project nil
// means workspace-scoped (the field is omitted); ExpiresAt and RevokedAt nil
// mean none (written as null).
type TokenEntry struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Hash      string     `json:"hash"` // "sha256:" + 64 lowercase hex, see FormatHash
	Workspace string     `json:"workspace"`
	Project   *string    `json:"project,omitempty"`
	Scopes    []string   `json:"scopes"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at"`
	RevokedAt *time.Time `json:"revoked_at"`
	// RevokedReason says why the token was revoked, when it is known
	// ("leaked": reported by secret scanning); omitted when empty.
	RevokedReason string `json:"revoked_reason,omitempty"`
	// AllowedIPs are the client addresses the token may be used from, as
	// CIDR prefixes in normalised form (see ParseAllowedIPs); omitted when
	// empty: anywhere.
	AllowedIPs []string `json:"allowed_ips,omitempty"`
	// CreatedBy is who created the token (omitted: unknown, a root).
	CreatedBy *Creator `json:"created_by,omitempty"`
	// RotatedFrom is the id of the token this one replaced (omitted:
	// none).
	RotatedFrom string `json:"rotated_from,omitempty"`
}

// Find returns the entry with the given id, or nil.
func (kf *KeyFile) Find(id string) *TokenEntry {
	for i := range kf.Tokens {
		if kf.Tokens[i].ID == id {
			return &kf.Tokens[i]
		}
	}
	return nil
}

// fileFields are the key file's JSON field names, exactly as spelled.
// encoding/json matches names case-insensitively and lets a repeated name
// override an earlier one; both are refused before decoding (see checkKeys
// and exactFileKeys).
var fileFields = []string{"tokens", "revoked_sessions"}

// entrySchema lists a token entry's JSON fields in file order, each with the
// JSON it wants (said in a type error). To add a field to the key file, add
// it here, to TokenEntry, to rawEntry and entryFromRaw (keyparse.go), to
// tokenOf (keycheck.go) and to appendEntry (keyencode.go); a test holds this
// list, TokenEntry and rawEntry to the same names.
var entrySchema = []struct{ name, want string }{
	{"id", "a string"},
	{"name", "a string"},
	{"hash", "a string"},
	{"workspace", "a string"},
	{"project", "a string or null"},
	{"scopes", "an array of strings"},
	{"created_at", "an RFC 3339 time string"},
	{"expires_at", "an RFC 3339 time string or null"},
	{"revoked_at", "an RFC 3339 time string or null"},
	{"revoked_reason", "a string"},
	{"allowed_ips", "an array of CIDR prefix strings"},
	{"created_by", `an object like {"kind": "api_key", "id": "tok_…"}, or null`},
	{"rotated_from", "a token id"},
}

// entryFields are the names of entrySchema, as the name checks take them.
var entryFields = func() []string {
	names := make([]string, len(entrySchema))
	for i, f := range entrySchema {
		names[i] = f.name
	}
	return names
}()

// fieldWant returns what entry field name wants, for a type error.
func fieldWant(name string) string {
	for _, f := range entrySchema {
		if f.name == name {
			return f.want
		}
	}
	return "another JSON type"
}

// entryError is a problem with one entry of a list (kind "token" or
// "revoked session"). Its message names the entry's index (0-based, as in
// .tokens[i]), its id when it has a printable one, and the field; it never
// includes a hash value.
type entryError struct {
	kind  string
	index int
	id    string
	field string
	msg   string
}

func (e *entryError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %d", e.kind, e.index)
	if e.id != "" {
		fmt.Fprintf(&b, " (id %q)", e.id)
	}
	if e.field != "" {
		b.WriteString(": ")
		b.WriteString(e.field)
	}
	b.WriteString(": ")
	b.WriteString(e.msg)
	return b.String()
}

// NewTokenID returns a new token id: "tok_" and 10 random lowercase base-36
// characters from crypto/rand.
func NewTokenID() (string, error) {
	const (
		alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
		n        = 10
		// Bytes at or above the largest multiple of 36 are discarded so
		// every character is equally likely.
		limit = 256 - 256%len(alphabet)
	)
	id := make([]byte, 0, len("tok_")+n)
	id = append(id, "tok_"...)
	var buf [16]byte
	for len(id) < cap(id) {
		if _, err := rand.Read(buf[:]); err != nil {
			return "", err
		}
		for _, c := range buf {
			if int(c) < limit && len(id) < cap(id) {
				id = append(id, alphabet[int(c)%len(alphabet)])
			}
		}
	}
	return string(id), nil
}
