package policy

// This file is adapted from Go's net/http pattern.go / routing_tree.go, BSD
// license (Copyright 2023 The Go Authors; see https://go.dev/LICENSE). It keeps
// ServeMux's pattern language and precedence rules, minus host patterns, and
// drops everything that does I/O or rewrites the request (no redirects, no path
// cleaning, no unescaping of the request path).

import (
	"fmt"
	"strings"
)

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
