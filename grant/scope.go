// Package grant is the vocabulary every part of deplo-auth speaks: the four
// deplo scopes (ScopeSet), the kinds of credential (Kind) and the verified
// caller a credential grants (Principal). Routes require scopes, verifiers
// produce principals, the decision compares them and the identity headers
// carry them to the upstream, all in these words. It imports only the
// standard library, so package identity, which upstream services import,
// can use it.
package grant

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// ScopeSet is a set of the four deplo scopes as a bit mask. No scope implies
// another, except that ScopeAdmin satisfies any requirement (see Satisfies).
type ScopeSet uint8

// The four scopes.
const (
	ScopeRead ScopeSet = 1 << iota
	ScopeDeploy
	ScopeDelete
	ScopeAdmin

	allScopes = ScopeRead | ScopeDeploy | ScopeDelete | ScopeAdmin
)

// scopeNames lists the scopes in sorted name order, the order of the Scopes
// header.
var scopeNames = [...]struct {
	name string
	bit  ScopeSet
}{
	{"admin", ScopeAdmin},
	{"delete", ScopeDelete},
	{"deploy", ScopeDeploy},
	{"read", ScopeRead},
}

// scopeStrings spells out the 16 possible sets once, so String does not
// allocate.
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

// ParseScope returns the scope named name (exact, lowercase) and whether
// name is one of the four scopes.
func ParseScope(name string) (ScopeSet, bool) {
	for _, n := range scopeNames {
		if n.name == name {
			return n.bit, true
		}
	}
	return 0, false
}

// ParseScopeNames returns the set of known scopes among names, and the names
// that are not scopes (which callers log and never grant).
func ParseScopeNames(names []string) (set ScopeSet, unknown []string) {
	for _, s := range names {
		if bit, ok := ParseScope(s); ok {
			set |= bit
		} else {
			unknown = append(unknown, s)
		}
	}
	return set, unknown
}

// ErrMalformed wraps every error of ParseScopeList and of decoding a
// ScopeSet from JSON. It is identity.ErrMalformed (and so says "identity"):
// a scope list that does not parse is a malformed identity, whichever way
// it was read.
var ErrMalformed = errors.New("identity: malformed")

// ParseScopeList parses a Scopes header value strictly: known scope names,
// sorted, each once, separated by single spaces; "" is the empty set. This is
// exactly the form String returns and the gateway sends, so anything else
// was not written by the gateway and is refused (ErrMalformed).
func ParseScopeList(v string) (ScopeSet, error) {
	var set ScopeSet
	last := -1
	for len(v) > 0 {
		name := v
		if i := strings.IndexByte(v, ' '); i >= 0 {
			name, v = v[:i], v[i+1:]
			if v == "" {
				return 0, fmt.Errorf("%w: scopes: trailing space", ErrMalformed)
			}
		} else {
			v = ""
		}
		idx := -1
		for i, n := range scopeNames {
			if n.name == name {
				idx = i
				break
			}
		}
		switch {
		case name == "":
			return 0, fmt.Errorf("%w: scopes: empty scope name", ErrMalformed)
		case idx < 0:
			return 0, fmt.Errorf("%w: scopes: unknown scope name", ErrMalformed)
		case idx <= last:
			return 0, fmt.Errorf("%w: scopes: not sorted or repeated", ErrMalformed)
		}
		last = idx
		set |= scopeNames[idx].bit
	}
	return set, nil
}

// Has reports whether s holds every scope of want, taking no account of
// admin.
func (s ScopeSet) Has(want ScopeSet) bool { return s&want == want }

// Satisfies reports whether a credential holding s meets a requirement of
// every scope in required: admin satisfies any requirement.
func (s ScopeSet) Satisfies(required ScopeSet) bool {
	return s&ScopeAdmin != 0 || s.Has(required)
}

// String returns the scope names sorted and space-separated: the Scopes
// header form. Bits outside the four scopes are ignored.
func (s ScopeSet) String() string { return scopeStrings[s&allScopes] }

// Names returns the scope names of s in sorted order (nil for the empty set).
func (s ScopeSet) Names() []string {
	var out []string
	for _, n := range scopeNames {
		if s&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	return out
}

// MarshalJSON encodes s as a sorted array of scope names.
func (s ScopeSet) MarshalJSON() ([]byte, error) {
	names := s.Names()
	if names == nil {
		names = []string{}
	}
	return json.Marshal(names)
}

// UnmarshalJSON decodes an array of scope names; unknown names are an error.
func (s *ScopeSet) UnmarshalJSON(b []byte) error {
	var names []string
	if err := json.Unmarshal(b, &names); err != nil {
		return err
	}
	var set ScopeSet
	for _, n := range names {
		bit, ok := ParseScope(n)
		if !ok {
			return fmt.Errorf("%w: scopes: unknown scope name %q", ErrMalformed, n)
		}
		set |= bit
	}
	*s = set
	return nil
}
