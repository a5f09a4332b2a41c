package policy

// This file is adapted from Go's net/http pattern.go / routing_tree.go, BSD
// license (Copyright 2023 The Go Authors; see https://go.dev/LICENSE). It keeps
// ServeMux's pattern language and precedence rules, minus host patterns, and
// drops everything that does I/O or rewrites the request (no redirects, no path
// cleaning, no unescaping of the request path).

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode"

	"github.com/deplo-sh/deplo-auth/internal/httptoken"
)

// muxPattern is a parsed pattern.
type muxPattern struct {
	str    string // as given to add
	method string // "" for any method (no method, or "*")
	// Paths ending in '/' are represented with an anonymous multi wildcard
	// ("a/" is the literal "a" followed by segment{wild: true, multi: true});
	// paths ending in "{$}" with the literal segment "/" ("a/{$}" is the
	// literal "a" followed by the literal "/").
	segments []muxSegment
	names    []string // wildcard names in order, without the anonymous multi
}

// muxSegment is a pattern piece that matches one path segment, the rest of
// the path, or a trailing slash.
//
//	"a"         => {s: "a"}              literal
//	"{$}"       => {s: "/"}              trailing slash
//	"{x}"       => {s: "x", wild: true}  one segment
//	"{rest...}" => {s: "rest", wild: true, multi: true}
//	trailing /  => {s: "", wild: true, multi: true}
type muxSegment struct {
	s     string
	wild  bool
	multi bool
}

func (p *muxPattern) lastSegment() muxSegment { return p.segments[len(p.segments)-1] }

// parseMuxPattern parses "[METHOD ]/path" (see mux.add).
func parseMuxPattern(s string) (_ *muxPattern, err error) {
	off := 0 // offset into s, for the error
	defer func() {
		if err != nil {
			err = fmt.Errorf("invalid pattern %q: at offset %d: %w", s, off, err)
		}
	}()
	if s == "" {
		return nil, errors.New("empty pattern")
	}

	method, rest, found := s, "", false
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		method, rest, found = s[:i], strings.TrimLeft(s[i+1:], " \t"), true
	}
	if !found {
		rest, method = method, ""
	} else {
		if method == "" {
			return nil, errors.New("empty method (pattern starts with a space)")
		}
		if !httptoken.Valid(method) {
			return nil, fmt.Errorf("invalid method %q", method)
		}
		off = len(s) - len(rest)
	}
	p := &muxPattern{str: s, method: method}
	if method == "*" {
		p.method = ""
	}
	if rest == "" || rest[0] != '/' {
		if strings.IndexByte(rest, '/') > 0 {
			return nil, errors.New(`path must start with "/" (host patterns are not supported)`)
		}
		return nil, errors.New(`path must start with "/"`)
	}

	for len(rest) > 0 {
		// Invariant: rest[0] == '/'.
		rest = rest[1:]
		off = len(s) - len(rest)
		if rest == "" {
			// Trailing slash.
			p.segments = append(p.segments, muxSegment{wild: true, multi: true})
			break
		}
		i := strings.IndexByte(rest, '/')
		if i < 0 {
			i = len(rest)
		}
		var seg string
		seg, rest = rest[:i], rest[i:]
		if seg == "" {
			return nil, errors.New(`empty segment ("//") can never match a clean path`)
		}
		if i := strings.IndexByte(seg, '{'); i < 0 {
			// Literal.
			if seg == "." || seg == ".." {
				return nil, fmt.Errorf("dot segment %q can never match a clean path", seg)
			}
			lit := muxPathUnescape(seg)
			if lit == "." || lit == ".." || strings.Contains(lit, "/") {
				return nil, fmt.Errorf("segment %q unescapes to %q, which can never match a clean path segment", seg, lit)
			}
			p.segments = append(p.segments, muxSegment{s: lit})
			continue
		} else if i != 0 {
			return nil, errors.New("bad wildcard segment (must start with '{')")
		}
		// Wildcard.
		if seg[len(seg)-1] != '}' {
			return nil, errors.New("bad wildcard segment (must end with '}')")
		}
		name := seg[1 : len(seg)-1]
		if name == "$" {
			if rest != "" {
				return nil, errors.New("{$} not at end")
			}
			p.segments = append(p.segments, muxSegment{s: "/"})
			break
		}
		name, multi := strings.CutSuffix(name, "...")
		if multi && rest != "" {
			return nil, errors.New("{...} wildcard not at end")
		}
		if name == "" {
			return nil, errors.New("empty wildcard name")
		}
		if !isValidMuxWildcardName(name) {
			return nil, fmt.Errorf("bad wildcard name %q (must be a Go identifier)", name)
		}
		for _, n := range p.names {
			if n == name {
				return nil, fmt.Errorf("duplicate wildcard name %q", name)
			}
		}
		p.names = append(p.names, name)
		p.segments = append(p.segments, muxSegment{s: name, wild: true, multi: multi})
	}
	return p, nil
}

func isValidMuxWildcardName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if !unicode.IsLetter(c) && c != '_' && (i == 0 || !unicode.IsDigit(c)) {
			return false
		}
	}
	return true
}

// muxPathUnescape unescapes a pattern literal as ServeMux does, keeping an
// invalidly escaped literal as is.
func muxPathUnescape(s string) string {
	if strings.IndexByte(s, '%') < 0 {
		return s
	}
	u, err := url.PathUnescape(s)
	if err != nil {
		return s
	}
	return u
}
