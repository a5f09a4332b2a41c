package tokenapi

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/deplo-sh/deplo-auth/internal/redact"
)

// Base is the collection path of the token API, such as
// /v1/workspaces/{workspace}/tokens: literal segments and one {workspace}
// wildcard. It matches the collection and its items, base/{id}.
type Base struct {
	pattern  string
	segments []string // "" is the {workspace} wildcard
}

// ParseBase parses a base pattern: it starts with "/", has no empty, "." or
// ".." segment and no trailing "/", and holds exactly one segment that is
// {workspace}; every other segment is literal.
func ParseBase(pattern string) (*Base, error) {
	if !strings.HasPrefix(pattern, "/") {
		return nil, fmt.Errorf("base %q: must start with /", pattern)
	}
	b := &Base{pattern: pattern}
	workspaces := 0
	for seg := range strings.SplitSeq(pattern[1:], "/") {
		switch {
		case seg == "{workspace}":
			workspaces++
			b.segments = append(b.segments, "")
		case seg == "" || seg == "." || seg == "..":
			return nil, fmt.Errorf("base %q: empty, . or .. segment (or a trailing /)", pattern)
		case strings.ContainsAny(seg, "{}"):
			return nil, fmt.Errorf("base %q: segment %q: the only wildcard is {workspace}", pattern, seg)
		default:
			b.segments = append(b.segments, seg)
		}
	}
	if workspaces != 1 {
		return nil, errors.New("base: must hold {workspace} exactly once, e.g. /v1/workspaces/{workspace}/tokens")
	}
	return b, nil
}

// String returns the pattern as written.
func (b *Base) String() string { return b.pattern }

// Target is what a request path names under a Base.
type Target struct {
	// Workspace is the path's {workspace} segment.
	Workspace string
	// Collection is the path up to and including the base (the Location of
	// a created token is Collection + "/" + id).
	Collection string
	// Item: the path is base/<ID>; otherwise it is the collection itself.
	Item bool
	// ID is the segment after the base, as found: check it with ValidID.
	ID string
}

// Match reports whether path (the cleaned, unescaped request path) is the
// base, or lies under it (base/…, which answers 404 unless it is exactly
// base/{id}). A path elsewhere is not the API's.
func (b *Base) Match(path string) (Target, bool) {
	if !strings.HasPrefix(path, "/") {
		return Target{}, false
	}
	rest := path[1:]
	var t Target
	for i, want := range b.segments {
		seg, tail, more := strings.Cut(rest, "/")
		switch {
		case want == "" && seg != "":
			t.Workspace = seg
		case want == "" || seg != want:
			return Target{}, false
		}
		if i == len(b.segments)-1 {
			t.Collection = path[:len(path)-len(rest)+len(seg)]
			if !more {
				return t, true
			}
			t.Item, t.ID = true, tail
			return t, true
		}
		if !more {
			return Target{}, false
		}
		rest = tail
	}
	return Target{}, false
}

// maxIDLength bounds a token id in a path.
const maxIDLength = 100

// ValidID reports whether id can be a token id: 1 to 100 of A-Z a-z 0-9 _ -
// (keystore.NewTokenID makes tok_ and 10 of a-z 0-9), and nothing that looks
// like a token or its hash. Anything else (a "/", "..", "%", a space) names
// no token and answers 404.
func ValidID(id string) bool {
	if id == "" || len(id) > maxIDLength || redact.LooksSecret(id) {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Methods returns the methods the API answers on t, as an Allow value.
func (t Target) Methods() string {
	if _, ok := t.rotation(); ok {
		return "POST"
	}
	if t.Item {
		return "GET, HEAD, DELETE"
	}
	return "GET, HEAD, POST, DELETE"
}

// Preflight answers a CORS preflight (OPTIONS with Origin and
// Access-Control-Request-Method) to t: 204 naming the methods and request
// headers the API takes, never a decision or a store lookup. It grants no
// origin: without an Access-Control-Allow-Origin set by the configuration
// (a header directive before the handler), a browser sends nothing
// cross-site.
func Preflight(t Target) Answer {
	return Answer{Status: http.StatusNoContent, Header: http.Header{
		"Allow":                        {t.Methods()},
		"Access-Control-Allow-Methods": {t.Methods()},
		"Access-Control-Allow-Headers": {"Authorization, Content-Type"},
		"Cache-Control":                {"no-store"},
		"Vary":                         {"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"},
	}}
}
