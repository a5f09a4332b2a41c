package identity

import "github.com/deplo-sh/deplo-auth/grant"

// ScopeSet is a set of the four deplo scopes as a bit mask: grant's, so the
// scopes the gateway decided on are the scopes it forwards. No scope implies
// another, except that ScopeAdmin satisfies any requirement (see
// ScopeSet.Satisfies and Identity.HasScope).
type ScopeSet = grant.ScopeSet

// The four scopes.
const (
	ScopeRead   = grant.ScopeRead
	ScopeDeploy = grant.ScopeDeploy
	ScopeDelete = grant.ScopeDelete
	ScopeAdmin  = grant.ScopeAdmin

	allScopes = ScopeRead | ScopeDeploy | ScopeDelete | ScopeAdmin
)

// ParseScope returns the scope named name (exact, lowercase) and whether
// name is one of the four scopes.
func ParseScope(name string) (ScopeSet, bool) { return grant.ParseScope(name) }

// ParseScopes parses a Scopes header value strictly: known scope names,
// sorted, each once, separated by single spaces; "" is the empty set. This is
// exactly the form ScopeSet.String returns and the gateway sends, so
// anything else was not written by the gateway and is refused
// (ErrMalformed).
func ParseScopes(v string) (ScopeSet, error) { return grant.ParseScopeList(v) }
