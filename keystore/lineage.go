package keystore

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/deplo-sh/deplo-auth/internal/redact"
)

// Creator kinds: who created a token.
const (
	// CreatorAPIKey: an API token created it; that token is its parent.
	CreatorAPIKey = "api_key"
	// CreatorJWT: a dashboard session created it (a root).
	CreatorJWT = "jwt"
	// CreatorOperator: the CLI in store mode created it (a root).
	CreatorOperator = "operator"
)

// Creator records who created a token. A token created by an API token
// (Kind CreatorAPIKey, ID the creator's id) is that token's child: it never
// outlives it, and revoking the parent revokes it. A token with no Creator
// (nil) predates lineage records, or was written by hand: a root.
type Creator struct {
	Kind string `json:"kind"`
	// ID is the creating token's id (CreatorAPIKey only).
	ID string `json:"id,omitempty"`
	// Subject and Session are the session JWT's sub and sid (or jti)
	// (CreatorJWT only; Session may be empty).
	Subject string `json:"subject,omitempty"`
	Session string `json:"session,omitempty"`
}

// creatorFields are the JSON names of a created_by object.
var creatorFields = []string{"kind", "id", "subject", "session"}

// Parent returns the id of the token's parent: the creating API token, or
// "" for a root.
func (c *Creator) Parent() string {
	if c == nil || c.Kind != CreatorAPIKey {
		return ""
	}
	return c.ID
}

// check applies the rules of a created_by object; the message names the
// sub-field and never echoes a value.
func (c *Creator) check() error {
	switch c.Kind {
	case CreatorAPIKey:
		switch {
		case c.ID == "" || redact.LooksSecret(c.ID):
			return errors.New("id: want the creating token's id")
		case c.Subject != "" || c.Session != "":
			return errors.New("an api_key creator has an id only")
		}
	case CreatorJWT:
		switch {
		case c.Subject == "":
			return errors.New("subject: missing or empty")
		case c.ID != "":
			return errors.New("a jwt creator has a subject and a session, no id")
		}
	case CreatorOperator:
		if c.ID != "" || c.Subject != "" || c.Session != "" {
			return errors.New("an operator creator has a kind only")
		}
	default:
		return errors.New(`kind: want "api_key", "jwt" or "operator"`)
	}
	return nil
}

// ParseCreatorFilter parses the value of ?created_by= or --created-by: a
// token id ("tok_…": the tokens it created), "session:<sid>" (the tokens a
// dashboard session created) or "user:<sub>" (the tokens any session of
// that user created).
func ParseCreatorFilter(s string) (Creator, error) {
	switch {
	case strings.HasPrefix(s, "session:") && len(s) > len("session:"):
		return Creator{Kind: CreatorJWT, Session: s[len("session:"):]}, nil
	case strings.HasPrefix(s, "user:") && len(s) > len("user:"):
		return Creator{Kind: CreatorJWT, Subject: s[len("user:"):]}, nil
	case s != "" && !strings.Contains(s, ":") && !redact.LooksSecret(s) && len(s) <= 200:
		return Creator{Kind: CreatorAPIKey, ID: s}, nil
	}
	return Creator{}, errors.New(`created_by: want a token id, "session:<sid>" or "user:<sub>"`)
}

// matches reports whether a token created by c was created by the
// credential f names (a filter from ParseCreatorFilter: empty fields match
// anything).
func (f *Creator) matches(c *Creator) bool {
	return c != nil && c.Kind == f.Kind && (f.ID == "" || c.ID == f.ID) &&
		(f.Subject == "" || c.Subject == f.Subject) && (f.Session == "" || c.Session == f.Session)
}

// Errors of the lineage operations, for errors.Is.
var (
	// ErrCreatorInactive: the credential creating (or rotating) a token is
	// revoked or expired at the write (or is a token of another
	// workspace).
	ErrCreatorInactive = errors.New("keystore: the creating credential is revoked or expired")
	// ErrLimitReached: the workspace holds the most live tokens allowed.
	ErrLimitReached = errors.New("keystore: the workspace holds the most live tokens allowed")
	// ErrTokenReused: the token to rotate was rotated before; see
	// ReuseError.
	ErrTokenReused = errors.New("keystore: the token was already rotated")
	// ErrTokenInactive: the token to rotate is revoked or expired.
	ErrTokenInactive = errors.New("keystore: the token is revoked or expired")
)

// ReuseError is Rotate's answer for a token that was already rotated:
// that token and every token rotated from it (and their subtrees) have been
// revoked. errors.Is(err, ErrTokenReused) holds.
type ReuseError struct {
	// Revoked are the ids revoked by this answer.
	Revoked []string
}

func (e *ReuseError) Error() string {
	return fmt.Sprintf("keystore: rotate token: the token was already rotated: %d tokens revoked", len(e.Revoked))
}

func (e *ReuseError) Is(target error) bool { return target == ErrTokenReused }

// CreateOptions are the checks Create makes in the same transaction (under
// the same lock) as the insert.
type CreateOptions struct {
	// Now is the instant of the checks (time.Now() if zero).
	Now time.Time
	// MaxLive, if positive, is the most live (neither revoked nor expired)
	// tokens the entry's workspace may hold; one more is ErrLimitReached.
	MaxLive int
}

// RotateRequest asks Rotate to replace a token.
type RotateRequest struct {
	// ID and Workspace name the token to rotate (another workspace's is
	// not found).
	ID, Workspace string
	// NewID and NewHash (stored form) are the new token's.
	NewID, NewHash string
	// Grace is how long the old token keeps working (0: revoked at once).
	Grace time.Duration
	// Caller is the credential rotating, re-checked at the write (nil: the
	// operator, nothing to check).
	Caller *Creator
	// Now is the instant of the rotation (time.Now() if zero).
	Now time.Time
	// MaxLive as in CreateOptions; MaxLifetime, if positive, caps the new
	// token's expiry at Now + MaxLifetime.
	MaxLive     int
	MaxLifetime time.Duration
}

// nowOr returns t, or the current time (to the second, UTC) when t is zero.
func nowOr(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now().UTC().Truncate(time.Second)
	}
	return t
}

// EffectiveEnd returns when e stops working as far as its own record says:
// the earlier of its expires_at and revoked_at, or nil when neither is set.
func (e *TokenEntry) EffectiveEnd() *time.Time {
	switch {
	case e.ExpiresAt == nil:
		return e.RevokedAt
	case e.RevokedAt == nil || e.ExpiresAt.Before(*e.RevokedAt):
		return e.ExpiresAt
	}
	return e.RevokedAt
}

// CapExpiry returns the earlier of a and b, where nil is "never".
func CapExpiry(a, b *time.Time) *time.Time {
	switch {
	case a == nil:
		return b
	case b == nil || a.Before(*b):
		return a
	}
	return b
}

// Live reports whether e works at now: neither revoked nor expired.
func (e *TokenEntry) Live(now time.Time) bool {
	return (e.RevokedAt == nil || now.Before(*e.RevokedAt)) && (e.ExpiresAt == nil || now.Before(*e.ExpiresAt))
}

// RotatedLifetime is the expiry of a token that replaces old at now: none
// when old had none; else as long a lifetime as old was given
// (expires_at − created_at), counted from now. Callers cap it at the
// parent's end and at a maximum lifetime.
func RotatedLifetime(old *TokenEntry, now time.Time) *time.Time {
	if old.ExpiresAt == nil {
		return nil
	}
	x := now.Add(old.ExpiresAt.Sub(old.CreatedAt))
	return &x
}

// keyTree indexes a key file's tokens for the lineage operations.
type keyTree struct {
	kf       *KeyFile
	byID     map[string]int
	children map[string][]int // parent id → indexes of its children
	rotated  map[string][]int // id → indexes of the tokens rotated from it
}

func newKeyTree(kf *KeyFile) *keyTree {
	t := &keyTree{kf: kf, byID: make(map[string]int, len(kf.Tokens)),
		children: map[string][]int{}, rotated: map[string][]int{}}
	for i := range kf.Tokens {
		e := &kf.Tokens[i]
		t.byID[e.ID] = i
		if p := e.CreatedBy.Parent(); p != "" {
			t.children[p] = append(t.children[p], i)
		}
		if e.RotatedFrom != "" {
			t.rotated[e.RotatedFrom] = append(t.rotated[e.RotatedFrom], i)
		}
	}
	return t
}

// subtree returns the indexes of the tokens roots name and of all their
// descendants, each once.
func (t *keyTree) subtree(roots []int) []int {
	seen := make(map[int]bool, len(roots))
	out := make([]int, 0, len(roots))
	queue := append([]int(nil), roots...)
	for len(queue) > 0 {
		i := queue[0]
		queue = queue[1:]
		if seen[i] {
			continue
		}
		seen[i] = true
		out = append(out, i)
		queue = append(queue, t.children[t.kf.Tokens[i].ID]...)
	}
	return out
}

// revoke sets revoked_at to the earlier of its own and at on each token
// listed, and returns the ids whose revoked_at changed. Entries get new
// pointers (see updateKeyFile: never write through them).
func (t *keyTree) revoke(idx []int, at time.Time) []string {
	var changed []string
	for _, i := range idx {
		e := &t.kf.Tokens[i]
		if e.RevokedAt == nil || at.Before(*e.RevokedAt) {
			x := at
			e.RevokedAt = &x
			changed = append(changed, e.ID)
		}
	}
	return changed
}

// expire sets expires_at to the earlier of its own and at on each token
// listed.
func (t *keyTree) expire(idx []int, at time.Time) {
	for _, i := range idx {
		e := &t.kf.Tokens[i]
		if e.ExpiresAt == nil || at.Before(*e.ExpiresAt) {
			x := at
			e.ExpiresAt = &x
		}
	}
}

// liveIn counts the tokens of workspace that work at now.
func (t *keyTree) liveIn(workspace string, now time.Time) int {
	n := 0
	for i := range t.kf.Tokens {
		if e := &t.kf.Tokens[i]; e.Workspace == workspace && e.Live(now) {
			n++
		}
	}
	return n
}

// checkCreator re-checks the credential c (creating a token in workspace)
// at now, and returns the end of its life to cap a child's expiry at (nil
// = none). kf holds the tokens and the revoked sessions.
func (t *keyTree) checkCreator(c *Creator, workspace string, now time.Time) (*time.Time, error) {
	switch {
	case c == nil:
		return nil, nil
	case c.Kind == CreatorAPIKey:
		i, ok := t.byID[c.ID]
		if !ok {
			return nil, ErrCreatorInactive
		}
		p := &t.kf.Tokens[i]
		if p.Workspace != workspace || !p.Live(now) {
			return nil, ErrCreatorInactive
		}
		return p.EffectiveEnd(), nil
	case c.Kind == CreatorJWT && c.Session != "":
		// An entry is a revocation: its revoked_at is when it was written.
		for _, rs := range t.kf.RevokedSessions {
			if rs.ID == c.Session {
				return nil, ErrCreatorInactive
			}
		}
	}
	return nil, nil
}

// create checks e's creator and the workspace's limit at now, caps e's
// expiry at its parent's, and appends it.
func (t *keyTree) create(e TokenEntry, opt CreateOptions, now time.Time) (TokenEntry, error) {
	end, err := t.checkCreator(e.CreatedBy, e.Workspace, now)
	if err != nil {
		return e, err
	}
	e.ExpiresAt = CapExpiry(e.ExpiresAt, end)
	if opt.MaxLive > 0 && t.liveIn(e.Workspace, now) >= opt.MaxLive {
		return e, ErrLimitReached
	}
	t.kf.Tokens = append(t.kf.Tokens, e)
	return e, nil
}

// rotate applies r to the document at now. reused, when not nil, lists the
// tokens revoked because the token was rotated before: the document is to
// be written and the answer is a ReuseError.
func (t *keyTree) rotate(r RotateRequest, now time.Time) (e TokenEntry, reused []string, err error) {
	i, ok := t.byID[r.ID]
	if !ok || t.kf.Tokens[i].Workspace != r.Workspace {
		return e, nil, NoTokenError("rotate token", r.ID)
	}
	if _, err := t.checkCreator(r.Caller, r.Workspace, now); err != nil {
		return e, nil, err
	}
	if succ := t.rotated[r.ID]; len(succ) > 0 {
		// Reuse: the token itself, every token rotated from it (and from
		// those, in turn), and their subtrees.
		family := []int{i}
		for k := 0; k < len(family); k++ {
			family = append(family, t.rotated[t.kf.Tokens[family[k]].ID]...)
		}
		revoked := t.revoke(t.subtree(family), now)
		if revoked == nil {
			revoked = []string{}
		}
		return e, revoked, nil
	}
	old := t.kf.Tokens[i] // a copy: t.kf.Tokens may grow
	if !old.Live(now) {
		return e, nil, ErrTokenInactive
	}
	end, err := t.checkCreator(old.CreatedBy, r.Workspace, now)
	if err != nil {
		return e, nil, ErrTokenInactive // its parent is gone: so is it
	}
	e = TokenEntry{
		ID: r.NewID, Name: old.Name, Hash: r.NewHash, Workspace: old.Workspace, Project: old.Project,
		Scopes: append([]string(nil), old.Scopes...), CreatedAt: now, CreatedBy: old.CreatedBy,
		RotatedFrom: old.ID, AllowedIPs: append([]string(nil), old.AllowedIPs...),
	}
	e.ExpiresAt = CapExpiry(RotatedLifetime(&old, now), end)
	if r.MaxLifetime > 0 {
		x := now.Add(r.MaxLifetime)
		e.ExpiresAt = CapExpiry(e.ExpiresAt, &x)
	}
	if r.MaxLive > 0 {
		n := t.liveIn(r.Workspace, now)
		if r.Grace == 0 {
			n-- // the old one stops now
		}
		if n >= r.MaxLive {
			return e, nil, ErrLimitReached
		}
	}
	tree := t.subtree([]int{i})
	if r.Grace == 0 {
		t.revoke(tree, now)
	} else {
		t.expire(tree, now.Add(r.Grace))
	}
	t.kf.Tokens = append(t.kf.Tokens, e)
	return e, nil, nil
}

// revokeCreatedBy revokes, at at, every token of workspace (and of project
// when not "") that the credential f names created, with their subtrees.
func (t *keyTree) revokeCreatedBy(workspace, project string, f Creator, at time.Time) []string {
	var roots []int
	for i := range t.kf.Tokens {
		e := &t.kf.Tokens[i]
		if e.Workspace == workspace && (project == "" || e.Project != nil && *e.Project == project) && f.matches(e.CreatedBy) {
			roots = append(roots, i)
		}
	}
	return t.revoke(t.subtree(roots), at)
}
