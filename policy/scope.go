// Package policy is the pure decision logic of deplo-auth: scopes, the route
// table and its matching, workspace and project binding, and the allow/deny
// decision with a reason. It does no I/O and imports nothing from Caddy, so it
// can be tested and fuzzed on its own.
package policy

import "github.com/deplo-sh/deplo-auth/identity"

// ScopeSet is a set of the four deplo scopes as a bit mask. It is the
// identity package's, so the scopes decided are the scopes forwarded.
type ScopeSet = identity.ScopeSet

// The four scopes. No scope implies another, except that ScopeAdmin
// satisfies any requirement.
const (
	ScopeRead   = identity.ScopeRead
	ScopeDeploy = identity.ScopeDeploy
	ScopeDelete = identity.ScopeDelete
	ScopeAdmin  = identity.ScopeAdmin
)

// ParseScope returns the scope named s (exact, lowercase) and whether s names
// one of the four scopes.
func ParseScope(s string) (ScopeSet, bool) { return identity.ParseScope(s) }

// ParseScopes returns the set of known scopes among names, and the names that
// are not scopes (which callers log and never grant).
func ParseScopes(names []string) (set ScopeSet, unknown []string) {
	for _, s := range names {
		if bit, ok := identity.ParseScope(s); ok {
			set |= bit
		} else {
			unknown = append(unknown, s)
		}
	}
	return set, unknown
}
