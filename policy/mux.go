package policy

// This file is adapted from Go's net/http pattern.go / routing_tree.go, BSD
// license (Copyright 2023 The Go Authors; see https://go.dev/LICENSE). It keeps
// ServeMux's pattern language and precedence rules, minus host patterns, and
// drops everything that does I/O or rewrites the request (no redirects, no path
// cleaning, no unescaping of the request path).

import (
	"errors"
	"strings"
)

// mux matches a method and a cleaned, unescaped path against patterns.
//
// The zero value is an empty mux ready for use. add must not be called
// concurrently with itself or with match; match may be called concurrently
// with itself once all patterns are added.
type mux[T any] struct {
	// The first level of the routing tree branches on the method, the
	// remaining levels on consecutive path segments.
	methods   []muxMethod[T] // patterns with a method, keyed by method
	anyMethod *muxNode[T]    // patterns without a method (or "*")
	pats      []*muxPattern  // every pattern, in the order added
}

type muxMethod[T any] struct {
	method string
	node   *muxNode[T]
}

// muxNode is a node of the routing tree; the same struct is used for leaves
// (pat != nil) and interior nodes.
type muxNode[T any] struct {
	pat *muxPattern
	v   T

	// Literal children (key "/" is a trailing slash from {$}): a slice while
	// there are few, a map when there are many.
	lits   []muxChild[T]
	litMap map[string]*muxNode[T]
	// Child for a single-segment wildcard.
	wildChild *muxNode[T]
	// Leaf for a multi wildcard (a trailing slash or {name...}); at most one.
	multiChild *muxNode[T]
	multiNamed bool // multiChild's wildcard has a name, so its value is recorded
}

type muxChild[T any] struct {
	key  string
	node *muxNode[T]
}

// muxMaxSlice is the number of literal children above which a node switches
// from a slice to a map (as net/http's mapping).
const muxMaxSlice = 8

// add registers pattern with value v. pattern is "[METHOD ]/path" as in
// net/http.ServeMux, without a host: METHOD is optional (no method, or "*",
// means any method; GET also matches HEAD). Path segments are literals,
// {name} (one segment), {name...} (the rest, must be last) or {$} (exact end,
// must be last); a trailing "/" means the subtree. Wildcard names must be Go
// identifiers and unique within the pattern.
//
// add returns an error, naming both patterns, when pattern conflicts with one
// already added: the two overlap and neither is more specific (ServeMux's
// rule), or they match the same requests.
func (m *mux[T]) add(pattern string, v T) error {
	p, err := parseMuxPattern(pattern)
	if err != nil {
		return err
	}
	for _, q := range m.pats {
		if rel := p.comparePathsAndMethods(q); rel == relEquivalent || rel == relOverlaps {
			return errors.New(describeMuxConflict(p, q))
		}
	}
	m.pats = append(m.pats, p)
	m.methodNode(p.method).addSegments(p.segments, p, v)
	return nil
}

// patterns returns the patterns added, in order.
func (m *mux[T]) patterns() []string {
	s := make([]string, len(m.pats))
	for i, p := range m.pats {
		s[i] = p.str
	}
	return s
}

func (n *muxNode[T]) addSegments(segs []muxSegment, p *muxPattern, v T) {
	for _, seg := range segs {
		switch {
		case seg.multi:
			// Last by construction. The conflict check rules out a second
			// multi leaf here (it would be equivalent); the spelling index,
			// which has no conflict check, shares it.
			if n.multiChild == nil {
				n.multiChild = &muxNode[T]{}
			}
			n.multiNamed = seg.s != ""
			n = n.multiChild
		case seg.wild:
			if n.wildChild == nil {
				n.wildChild = &muxNode[T]{}
			}
			n = n.wildChild
		default:
			n = n.addLiteral(seg.s)
		}
	}
	// The conflict check rules out an existing leaf: it would be equivalent.
	// (The spelling index has no conflict check: a later route replaces an
	// earlier one here, and either is a listed route the request spells.)
	n.pat, n.v = p, v
}

func (n *muxNode[T]) addLiteral(key string) *muxNode[T] {
	if c := n.findLiteral(key); c != nil {
		return c
	}
	c := &muxNode[T]{}
	switch {
	case n.litMap != nil:
		n.litMap[key] = c
	case len(n.lits) < muxMaxSlice:
		n.lits = append(n.lits, muxChild[T]{key, c})
	default:
		n.litMap = make(map[string]*muxNode[T], 2*muxMaxSlice)
		for _, e := range n.lits {
			n.litMap[e.key] = e.node
		}
		n.lits = nil
		n.litMap[key] = c
	}
	return c
}

func (n *muxNode[T]) findLiteral(key string) *muxNode[T] {
	if n.litMap != nil {
		return n.litMap[key]
	}
	for i := range n.lits {
		if n.lits[i].key == key {
			return n.lits[i].node
		}
	}
	return nil
}

// match returns the value of the most specific pattern matching method and
// path (ServeMux precedence: the most specific path wins; a pattern with a
// method beats one without when the paths are equally specific; GET patterns
// serve HEAD; an unknown method still matches patterns without a method), the
// names and values of its wildcards, and ok.
//
// path should be a cleaned, unescaped path starting with "/"; segment values
// are taken from it as is. values is appended to dst[:0], so a caller can pass
// a stack buffer and the match does not allocate. names is owned by the mux
// and must not be modified; values[i] is the value of names[i], and a
// {name...} wildcard gets the rest of the path without its leading slash.
func (m *mux[T]) match(method, path string, dst []string) (v T, names []string, values []string, ok bool) {
	if path == "" || path[0] != '/' {
		return v, nil, nil, false
	}
	dst = dst[:0]
	var n *muxNode[T]
	var vals []string
	if method != "" {
		for i := range m.methods {
			if m.methods[i].method == method {
				n, vals = m.methods[i].node.matchPath(path, dst)
				break
			}
		}
		if n == nil && method == "HEAD" {
			for i := range m.methods {
				if m.methods[i].method == "GET" {
					n, vals = m.methods[i].node.matchPath(path, dst)
					break
				}
			}
		}
	}
	if n == nil && m.anyMethod != nil {
		n, vals = m.anyMethod.matchPath(path, dst)
	}
	if n == nil {
		return v, nil, nil, false
	}
	return n.v, n.pat.names, vals, true
}

// matchPath returns the leaf under n matching path, and matches with the
// values of its wildcards appended; it calls itself, backtracking when a more
// specific branch fails.
func (n *muxNode[T]) matchPath(path string, matches []string) (*muxNode[T], []string) {
	// An empty path is matched only by a leaf.
	if path == "" {
		if n.pat == nil {
			return nil, nil
		}
		return n, matches
	}
	seg, rest := muxFirstSegment(path)
	// Literals first: by construction (conflicts were rejected) a pattern
	// with a literal here is more specific than one with a wildcard.
	if c := n.findLiteral(seg); c != nil {
		if l, m := c.matchPath(rest, matches); l != nil {
			return l, m
		}
	}
	// Then a single wildcard, which never matches a trailing slash (nor,
	// as a safeguard for unclean paths, an empty segment).
	if c := n.wildChild; c != nil && seg != "/" && seg != "" {
		if l, m := c.matchPath(rest, append(matches, seg)); l != nil {
			return l, m
		}
	}
	// Lastly the (at most one) multi wildcard takes the rest of the path.
	if c := n.multiChild; c != nil {
		if n.multiNamed {
			matches = append(matches, path[1:]) // without the leading slash
		}
		return c, matches
	}
	return nil, nil
}

// muxFirstSegment splits path, which starts with "/", into its first segment
// and the rest. "/" alone is the segment "/" (a trailing slash).
func muxFirstSegment(path string) (seg, rest string) {
	if path == "/" {
		return "/", ""
	}
	path = path[1:]
	i := strings.IndexByte(path, '/')
	if i < 0 {
		i = len(path)
	}
	return path[:i], path[i:]
}
