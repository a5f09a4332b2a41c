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

// muxRel is the relationship of pattern p1 to pattern p2.
type muxRel uint8

const (
	relEquivalent   muxRel = iota // both match the same requests
	relMoreGeneral                // p1 matches everything p2 does, and more
	relMoreSpecific               // p2 matches everything p1 does, and more
	relDisjoint                   // no request matches both
	relOverlaps                   // some request matches both, neither is more specific
)

func (p1 *muxPattern) comparePathsAndMethods(p2 *muxPattern) muxRel {
	mrel := p1.compareMethods(p2)
	if mrel == relDisjoint {
		return relDisjoint
	}
	return combineMuxRels(mrel, p1.comparePaths(p2))
}

// compareMethods relates the methods: "" matches any method, "GET" matches
// GET and HEAD, anything else only itself.
func (p1 *muxPattern) compareMethods(p2 *muxPattern) muxRel {
	switch {
	case p1.method == p2.method:
		return relEquivalent
	case p1.method == "":
		return relMoreGeneral
	case p2.method == "":
		return relMoreSpecific
	case p1.method == "GET" && p2.method == "HEAD":
		return relMoreGeneral
	case p2.method == "GET" && p1.method == "HEAD":
		return relMoreSpecific
	}
	return relDisjoint
}

func (p1 *muxPattern) comparePaths(p2 *muxPattern) muxRel {
	// Without a multi wildcard a pattern only matches paths with as many
	// segments as it has.
	if len(p1.segments) != len(p2.segments) && !p1.lastSegment().multi && !p2.lastSegment().multi {
		return relDisjoint
	}
	var segs1, segs2 []muxSegment
	rel := relEquivalent
	for segs1, segs2 = p1.segments, p2.segments; len(segs1) > 0 && len(segs2) > 0; segs1, segs2 = segs1[1:], segs2[1:] {
		rel = combineMuxRels(rel, compareMuxSegments(segs1[0], segs2[0]))
		if rel == relDisjoint {
			return rel
		}
	}
	if len(segs1) == 0 && len(segs2) == 0 {
		return rel
	}
	// The shorter pattern must end in a multi, which is more general than
	// the rest of the longer one.
	if len(segs1) < len(segs2) && p1.lastSegment().multi {
		return combineMuxRels(rel, relMoreGeneral)
	}
	if len(segs2) < len(segs1) && p2.lastSegment().multi {
		return combineMuxRels(rel, relMoreSpecific)
	}
	return relDisjoint
}

func compareMuxSegments(s1, s2 muxSegment) muxRel {
	switch {
	case s1.multi && s2.multi:
		return relEquivalent
	case s1.multi:
		return relMoreGeneral
	case s2.multi:
		return relMoreSpecific
	case s1.wild && s2.wild:
		return relEquivalent
	case s1.wild:
		if s2.s == "/" {
			// A single wildcard doesn't match a trailing slash.
			return relDisjoint
		}
		return relMoreGeneral
	case s2.wild:
		if s1.s == "/" {
			return relDisjoint
		}
		return relMoreSpecific
	case s1.s == s2.s:
		return relEquivalent
	}
	return relDisjoint
}

// combineMuxRels relates two patterns given the relationships of the two parts
// of a partition of them.
func combineMuxRels(r1, r2 muxRel) muxRel {
	switch r1 {
	case relEquivalent:
		return r2
	case relDisjoint:
		return relDisjoint
	case relOverlaps:
		if r2 == relDisjoint {
			return relDisjoint
		}
		return relOverlaps
	default: // relMoreGeneral, relMoreSpecific
		switch r2 {
		case relEquivalent:
			return r1
		case inverseMuxRel(r1):
			return relOverlaps
		default:
			return r2
		}
	}
}

func inverseMuxRel(r muxRel) muxRel {
	switch r {
	case relMoreSpecific:
		return relMoreGeneral
	case relMoreGeneral:
		return relMoreSpecific
	}
	return r
}

// describeMuxConflict explains why new pattern p1 conflicts with p2, with an
// example request that both match.
func describeMuxConflict(p1, p2 *muxPattern) string {
	mrel := p1.compareMethods(p2)
	prel := p1.comparePaths(p2)
	method := commonMuxMethod(p1, p2)
	msg := fmt.Sprintf("pattern %q conflicts with %q: both match %q", p1.str, p2.str,
		muxRequest(method, commonMuxPath(p1, p2)))
	switch {
	case combineMuxRels(mrel, prel) == relEquivalent:
		msg += " (they match the same requests)"
	case prel == relOverlaps:
		msg += fmt.Sprintf(", and neither is more specific: only the first matches %q, only the second %q",
			muxRequest(method, differenceMuxPath(p1, p2)), muxRequest(method, differenceMuxPath(p2, p1)))
	case mrel == relMoreGeneral && prel == relMoreSpecific:
		msg += ", and the first matches more methods but has a more specific path"
	case mrel == relMoreSpecific && prel == relMoreGeneral:
		msg += ", and the first matches fewer methods but has a more general path"
	}
	return msg
}

func muxRequest(method, path string) string {
	if method == "" {
		return path
	}
	return method + " " + path
}

// commonMuxMethod returns a method both patterns match ("" if both match any
// method); they must not be disjoint.
func commonMuxMethod(p1, p2 *muxPattern) string {
	switch {
	case p1.method == "":
		return p2.method
	case p2.method == "":
		return p1.method
	case p1.method == "GET":
		return p2.method // GET or HEAD
	}
	return p1.method
}

func writeMuxSegment(b *strings.Builder, s muxSegment) {
	b.WriteByte('/')
	if !s.multi && s.s != "/" {
		b.WriteString(s.s) // a literal, or a wildcard's name as its value
	}
}

func writeMuxSegments(b *strings.Builder, segs []muxSegment) {
	for _, s := range segs {
		writeMuxSegment(b, s)
	}
}

// commonMuxPath returns a path that both p1 and p2 match; their paths must
// not be disjoint. (Unlike net/http's commonPath it stops at a multi
// wildcard, so a single wildcard opposite a multi does not yield "//".)
func commonMuxPath(p1, p2 *muxPattern) string {
	var b strings.Builder
	s1, s2 := p1.segments, p2.segments
	for ; len(s1) > 0 && len(s2) > 0; s1, s2 = s1[1:], s2[1:] {
		switch {
		case s1[0].multi:
			// p1 matches whatever follows: take the rest of p2.
			s1 = nil
		case s2[0].multi:
			s2 = nil
		case s1[0].wild:
			writeMuxSegment(&b, s2[0])
			continue
		default:
			writeMuxSegment(&b, s1[0])
			continue
		}
		break
	}
	writeMuxSegments(&b, s1)
	writeMuxSegments(&b, s2)
	return b.String()
}

// differenceMuxPath returns a path that p1 matches and p2 does not; there
// must be one.
func differenceMuxPath(p1, p2 *muxPattern) string {
	var b strings.Builder
	var segs1, segs2 []muxSegment
	for segs1, segs2 = p1.segments, p2.segments; len(segs1) > 0 && len(segs2) > 0; segs1, segs2 = segs1[1:], segs2[1:] {
		s1, s2 := segs1[0], segs2[0]
		switch {
		case s1.multi && s2.multi:
			// From here both match the same paths: the difference was earlier.
			b.WriteByte('/')
			return b.String()
		case s1.multi:
			// A trailing slash distinguishes them, unless s2 is {$}; then
			// any segment will do.
			b.WriteByte('/')
			if s2.s == "/" {
				if s1.s != "" {
					b.WriteString(s1.s)
				} else {
					b.WriteString("x")
				}
			}
			return b.String()
		case s2.multi:
			writeMuxSegment(&b, s1)
		case s1.wild && !s2.wild:
			// Anything but the literal s2.s.
			if s1.s != s2.s {
				writeMuxSegment(&b, s1)
			} else {
				b.WriteByte('/')
				b.WriteString(s2.s + "x")
			}
		default:
			// Both wildcards (either value), s1 a literal and s2 a wildcard,
			// or the same literal (the paths overlap).
			writeMuxSegment(&b, s1)
		}
	}
	// p1 is longer and p2 does not end in a multi, or the reverse.
	writeMuxSegments(&b, segs1)
	writeMuxSegments(&b, segs2)
	return b.String()
}
