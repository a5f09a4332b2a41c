// Package policy is the pure decision logic of deplo-auth: scopes, the route
// table and its matching, workspace and project binding, and the allow/deny
// decision with a reason. It does no I/O and imports nothing from Caddy, so it
// can be tested and fuzzed on its own.
package policy

import "strings"

// ScopeSet is a set of the four deplo scopes as a bit mask.
type ScopeSet uint8

// The four scopes. No scope implies another, except that ScopeAdmin
// satisfies any requirement.
const (
	ScopeRead ScopeSet = 1 << iota
	ScopeDeploy
	ScopeDelete
	ScopeAdmin
)

// scopeNames lists the scopes in the sorted order used by String.
var scopeNames = [...]struct {
	name string
	bit  ScopeSet
}{
	{"admin", ScopeAdmin},
	{"delete", ScopeDelete},
	{"deploy", ScopeDeploy},
	{"read", ScopeRead},
}

// ParseScope returns the scope named s (exact, lowercase) and whether s names
// one of the four scopes.
func ParseScope(s string) (ScopeSet, bool) {
	for _, n := range scopeNames {
		if n.name == s {
			return n.bit, true
		}
	}
	return 0, false
}

// ParseScopes returns the set of known scopes among names, and the names that
// are not scopes (which callers log and never grant).
func ParseScopes(names []string) (set ScopeSet, unknown []string) {
	for _, s := range names {
		if bit, ok := ParseScope(s); ok {
			set |= bit
		} else {
			unknown = append(unknown, s)
		}
	}
	return set, unknown
}

// Has reports whether every scope of want is in s, taking no account of admin.
func (s ScopeSet) Has(want ScopeSet) bool { return s&want == want }

// Satisfies reports whether a credential holding s may use a route that
// requires every scope of required: admin satisfies any requirement.
func (s ScopeSet) Satisfies(required ScopeSet) bool {
	return s&ScopeAdmin != 0 || s.Has(required)
}

// String returns the scope names sorted and space-separated, the form of the
// X-Deplo-Scopes header and of the scope= attribute of a challenge. It does
// not allocate: the 16 possible sets are spelled out once.
func (s ScopeSet) String() string { return scopeStrings[s&0xf] }

var scopeStrings = func() (t [16]string) {
	for s := range t {
		var b strings.Builder
		for _, n := range scopeNames {
			if ScopeSet(s)&n.bit != 0 {
				if b.Len() > 0 {
					b.WriteByte(' ')
				}
				b.WriteString(n.name)
			}
		}
		t[s] = b.String()
	}
	return t
}()

// Names returns the scope names of s in sorted order.
func (s ScopeSet) Names() []string {
	var out []string
	for _, n := range scopeNames {
		if s&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	return out
}
