package grant

// Kind is the kind of credential a request presented.
type Kind uint8

// The kinds of credential. KindNone is a request without one.
const (
	KindNone Kind = iota
	KindAPIKey
	KindJWT
)

// String returns the kind as used in X-Deplo-Auth and metric labels.
func (k Kind) String() string {
	switch k {
	case KindAPIKey:
		return "api_key"
	case KindJWT:
		return "jwt"
	}
	return "none"
}

// ParseKind parses "api_key" or "jwt".
func ParseKind(s string) (Kind, bool) {
	switch s {
	case "api_key":
		return KindAPIKey, true
	case "jwt":
		return KindJWT, true
	}
	return KindNone, false
}

// KindSet is a set of credential kinds; the zero value allows every kind.
type KindSet uint8

// With returns s with k added.
func (s KindSet) With(k Kind) KindSet { return s | 1<<k }

// Allows reports whether s admits kind k. An empty set admits every kind.
func (s KindSet) Allows(k Kind) bool { return s == 0 || s&(1<<k) != 0 }
