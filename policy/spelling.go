package policy

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Many upstream frameworks upper-case the method, compare paths without
// regard to letter case, or treat "/a" and "/a/" as one route. A request that
// spells a listed route in one of those ways must not be decided by a weaker
// rule than that route's: this file finds the listed route such a request
// spells, so that Policy.Match can refuse it.

// matchMethodCaseVariant returns the value of the pattern that a pattern with
// a method would match had the request's method been written in that
// pattern's letter case ("post" for POST, "head" for HEAD served by GET), and
// ok.
func (m *mux[T]) matchMethodCaseVariant(method, path string) (v T, ok bool) {
	if path == "" || path[0] != '/' {
		return v, false
	}
	var buf [8]string
	for i := range m.methods {
		listed := m.methods[i].method
		if listed != method && strings.EqualFold(listed, method) ||
			listed == "GET" && method != "HEAD" && strings.EqualFold(method, "HEAD") {
			if n, _ := m.methods[i].node.matchPath(path, buf[:0]); n != nil {
				return n.v, true
			}
		}
	}
	return v, false
}

// maybeCaseVariant reports whether method has a lower-case or non-ASCII
// letter. Listed methods are upper-case ASCII (New), so only such a method
// can be a case variant of one; for the others (HEAD served by GET, a method
// no route names) Match skips matchMethodCaseVariant.
func maybeCaseVariant(method string) bool {
	for i := 0; i < len(method); i++ {
		if c := method[i]; 'a' <= c && c <= 'z' || c >= utf8.RuneSelf {
			return true
		}
	}
	return false
}

// addSpellings adds pattern p to a spelling index: a mux, with no conflict
// check, holding every listed pattern with its literals case-folded, both
// with and without a trailing slash. Only whether some pattern matches is
// asked of it (matchSpelling), never which is most specific.
func (m *mux[T]) addSpellings(p *muxPattern, v T) {
	n := m.methodNode(p.method)
	segs := make([]muxSegment, len(p.segments), len(p.segments)+1)
	for i, seg := range p.segments {
		if !seg.wild {
			seg.s = foldCase(seg.s)
		}
		segs[i] = seg
	}
	n.addSegments(segs, p, v)
	// The same path with the trailing slash toggled: "/a/b" and "/a/{x}"
	// get "/a/b/" and "/a/{x}/"; "/a/", "/a/{rest...}" and "/a/{$}" get "/a".
	switch last := segs[len(segs)-1]; {
	case last.multi || !last.wild && last.s == "/":
		if len(segs) > 1 {
			n.addSegments(segs[:len(segs)-1], p, v)
		}
	default:
		n.addSegments(append(segs, muxSegment{s: "/"}), p, v)
	}
}

// methodNode returns the root for patterns with method ("" for any method),
// creating it.
func (m *mux[T]) methodNode(method string) *muxNode[T] {
	if method == "" {
		if m.anyMethod == nil {
			m.anyMethod = &muxNode[T]{}
		}
		return m.anyMethod
	}
	for i := range m.methods {
		if m.methods[i].method == method {
			return m.methods[i].node
		}
	}
	n := &muxNode[T]{}
	m.methods = append(m.methods, muxMethod[T]{method, n})
	return n
}

// matchSpelling returns the value of a pattern in the spelling index that
// matches method and path once letter case is ignored in both (and HEAD is
// served by GET), and ok. The index's patterns already have both forms of a
// trailing slash.
func (m *mux[T]) matchSpelling(method, path string) (v T, ok bool) {
	if path == "" || path[0] != '/' {
		return v, false
	}
	for i := range m.methods {
		listed := m.methods[i].method
		if strings.EqualFold(listed, method) || listed == "GET" && strings.EqualFold(method, "HEAD") {
			if n := m.methods[i].node.matchFolded(path); n != nil {
				return n.v, true
			}
		}
	}
	if m.anyMethod != nil {
		if n := m.anyMethod.matchFolded(path); n != nil {
			return n.v, true
		}
	}
	return v, false
}

// matchFolded returns a leaf under n matching path, its segments compared
// case-folded with the (folded) literals; it records no wildcard values.
func (n *muxNode[T]) matchFolded(path string) *muxNode[T] {
	if path == "" {
		if n.pat == nil {
			return nil
		}
		return n
	}
	seg, rest := muxFirstSegment(path)
	if c := n.findFoldedLiteral(seg); c != nil {
		if l := c.matchFolded(rest); l != nil {
			return l
		}
	}
	if c := n.wildChild; c != nil && seg != "/" && seg != "" {
		if l := c.matchFolded(rest); l != nil {
			return l
		}
	}
	return n.multiChild
}

// foldedSegmentMax is the longest ASCII segment folded on the stack.
const foldedSegmentMax = 64

// findFoldedLiteral is findLiteral for the case-folded seg. It does not
// allocate for an ASCII segment up to foldedSegmentMax bytes: an unlisted
// request under default authenticated passes here.
func (n *muxNode[T]) findFoldedLiteral(seg string) *muxNode[T] {
	ascii, upper := true, false
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		ascii = ascii && c < utf8.RuneSelf
		upper = upper || 'A' <= c && c <= 'Z'
	}
	switch {
	case ascii && !upper:
		return n.findLiteral(seg)
	case ascii && len(seg) <= foldedSegmentMax:
		var buf [foldedSegmentMax]byte
		key := buf[:len(seg)]
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			key[i] = c
		}
		// string(key) in a map index or a comparison does not allocate.
		if n.litMap != nil {
			return n.litMap[string(key)]
		}
		for i := range n.lits {
			if n.lits[i].key == string(key) {
				return n.lits[i].node
			}
		}
		return nil
	}
	return n.findLiteral(foldCase(seg))
}

// foldCase maps s to one spelling per class of strings that are equal under
// Unicode simple case folding (strings.EqualFold): each rune becomes the
// smallest rune of its folding orbit, lower-cased when that is an ASCII
// letter. So "Tokens", "TOKENS", "toKens" (with U+212A KELVIN SIGN) and
// "ſettings" (U+017F LONG S) fold like "tokens" and "settings", as the
// case-insensitive matchers of upstream frameworks may take them.
func foldCase(s string) string {
	var b strings.Builder
	for _, r := range s {
		low := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			low = min(low, f)
		}
		if 'A' <= low && low <= 'Z' {
			low += 'a' - 'A'
		}
		b.WriteRune(low)
	}
	return b.String()
}
