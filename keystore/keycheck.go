package keystore

// The key file's rules on a token entry, applied alike to a file read
// (keyparse.go) and to a document built in memory before it is written
// (keywrite.go).

import (
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/deplo-sh/deplo-auth/internal/redact"
)

// checkKeyFile applies the key file's rules to a document built in memory
// and returns its tokens by hash.
func checkKeyFile(kf *KeyFile) (map[Hash]*Token, error) {
	index := newTokenIndex(len(kf.Tokens))
	for i := range kf.Tokens {
		tok, err := checkEntry(i, &kf.Tokens[i])
		if err == nil {
			err = index.add(i, tok)
		}
		if err != nil {
			return nil, err
		}
	}
	if err := checkSessions(kf.RevokedSessions); err != nil {
		return nil, err
	}
	return index.tokens, nil
}

// checkEntry applies the key file's rules to entry i of a document built in
// memory: the rules parse applies to the same entry once written.
func checkEntry(i int, e *TokenEntry) (*Token, error) {
	h, err := checkEntryFields(i, e)
	if err != nil {
		return nil, err
	}
	for _, t := range []struct {
		field string
		at    *time.Time
	}{{"created_at", &e.CreatedAt}, {"expires_at", e.ExpiresAt}, {"revoked_at", e.RevokedAt}} {
		if t.at != nil && t.at.IsZero() {
			return nil, &entryError{"token", i, redact.ID(e.ID), t.field, errZeroTime.Error()}
		}
	}
	return tokenOf(e, h), nil
}

// checkEntryFields applies the rules on entry i's fields other than its
// times, and returns its parsed hash.
func checkEntryFields(i int, e *TokenEntry) (Hash, error) {
	fail := func(id, field, msg string) (Hash, error) {
		return Hash{}, &entryError{"token", i, redact.ID(id), field, msg}
	}
	switch {
	case e.ID == "":
		return fail("", "id", "missing or empty")
	case redact.LooksSecret(e.ID):
		return fail("", "id", `looks like an API token or its hash; use an identifier such as "tok_…"`)
	}
	h, err := ParseHash(e.Hash)
	if err != nil {
		if e.Hash == "" {
			return fail(e.ID, "hash", "missing or empty; "+errHashForm)
		}
		return fail(e.ID, "hash", errHashForm)
	}
	if e.Workspace == "" {
		return fail(e.ID, "workspace", "missing or empty")
	}
	if e.Project != nil && *e.Project == "" {
		return fail(e.ID, "project", "empty; omit it or use null for a workspace-scoped token")
	}
	for k, s := range e.Scopes {
		if s == "" {
			return fail(e.ID, fmt.Sprintf("scopes[%d]", k), "want a non-empty string")
		}
	}
	if e.AllowedIPs != nil {
		if len(e.AllowedIPs) == 0 {
			return fail(e.ID, "allowed_ips", "empty; omit it for a token usable from anywhere")
		}
		if _, err := ParseAllowedIPs(e.AllowedIPs); err != nil {
			return fail(e.ID, "allowed_ips", err.Error())
		}
	}
	if e.CreatedBy != nil {
		if err := e.CreatedBy.check(); err != nil {
			return fail(e.ID, "created_by", err.Error())
		}
	}
	if redact.LooksSecret(e.RotatedFrom) {
		return fail(e.ID, "rotated_from", "want a token id")
	}
	return h, nil
}

// tokenIndex collects a file's tokens by hash, refusing a second entry with
// the same id or hash.
type tokenIndex struct {
	ids    map[string]int
	hashes map[Hash]int
	tokens map[Hash]*Token
}

func newTokenIndex(n int) *tokenIndex {
	return &tokenIndex{ids: make(map[string]int, n), hashes: make(map[Hash]int, n), tokens: make(map[Hash]*Token, n)}
}

// add adds tok, token i of the file.
func (x *tokenIndex) add(i int, tok *Token) error {
	if j, dup := x.ids[tok.ID]; dup {
		return &entryError{"token", i, redact.ID(tok.ID), "id", fmt.Sprintf("duplicate of token %d", j)}
	}
	x.ids[tok.ID] = i
	if j, dup := x.hashes[tok.Hash]; dup {
		return &entryError{"token", i, redact.ID(tok.ID), "hash", fmt.Sprintf("same hash as token %d", j)}
	}
	x.hashes[tok.Hash] = i
	x.tokens[tok.Hash] = tok
	return nil
}

// tokenOf returns the Token of a valid entry whose hash is h.
func tokenOf(e *TokenEntry, h Hash) *Token {
	tok := &Token{
		ID:        e.ID,
		Name:      e.Name,
		Workspace: e.Workspace,
		Hash:      h,
		Scopes:    slices.Clone(e.Scopes),
		CreatedAt: e.CreatedAt,
	}
	if e.Project != nil {
		tok.Project = *e.Project
	}
	if e.ExpiresAt != nil {
		tok.ExpiresAt = *e.ExpiresAt
	}
	if e.RevokedAt != nil {
		tok.RevokedAt = *e.RevokedAt
	}
	// Checked by checkEntryFields.
	tok.AllowedIPs, _ = ParseAllowedIPs(e.AllowedIPs)
	return tok
}

// keyFileUTF8 reports whether every string of kf is valid UTF-8, as JSON
// encoding keeps it.
func keyFileUTF8(kf *KeyFile) bool {
	for i := range kf.Tokens {
		e := &kf.Tokens[i]
		if !utf8.ValidString(e.ID) || !utf8.ValidString(e.Name) || !utf8.ValidString(e.Hash) ||
			!utf8.ValidString(e.Workspace) || (e.Project != nil && !utf8.ValidString(*e.Project)) {
			return false
		}
		for _, s := range e.Scopes {
			if !utf8.ValidString(s) {
				return false
			}
		}
		if !utf8.ValidString(e.RevokedReason) || !utf8.ValidString(e.RotatedFrom) {
			return false
		}
		if c := e.CreatedBy; c != nil && !(utf8.ValidString(c.ID) && utf8.ValidString(c.Subject) && utf8.ValidString(c.Session)) {
			return false
		}
	}
	for _, rs := range kf.RevokedSessions {
		if !utf8.ValidString(rs.ID) {
			return false
		}
	}
	return true
}
