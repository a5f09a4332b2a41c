package doccheck

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// JSONPattern is a JSON value as a document shows it: JSON, plus Ellipsis
// wherever the document leaves something out (see Ellipsis). It is compared
// structurally: member order and spacing do not matter; an object has
// exactly the members shown unless one of them is Ellipsis; an array has
// exactly the elements shown, in order, unless Ellipsis stands for some.
type JSONPattern struct {
	kind    patternKind
	members []patternMember // kindObject
	open    bool            // kindObject: other members allowed
	elems   []*JSONPattern  // kindArray; nil stands for any number of elements
	str     string          // kindString (may hold Ellipsis)
	lit     string          // kindNumber, kindLiteral
}

type patternKind uint8

const (
	kindAny patternKind = iota
	kindObject
	kindArray
	kindString
	kindNumber
	kindLiteral
)

type patternMember struct {
	key string
	val *JSONPattern
}

// ParseJSONPattern parses a shown JSON value.
func ParseJSONPattern(text string) (*JSONPattern, error) {
	p := &patternParser{s: text}
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	p.space()
	if p.i != len(p.s) {
		return nil, p.errorf("unexpected %q after the value", p.rest())
	}
	return v, nil
}

type patternParser struct {
	s string
	i int
}

func (p *patternParser) errorf(format string, args ...any) error {
	return fmt.Errorf("shown JSON, at offset %d: %s", p.i, fmt.Sprintf(format, args...))
}

func (p *patternParser) rest() string {
	r := p.s[p.i:]
	if len(r) > 20 {
		r = r[:20] + "…"
	}
	return r
}

func (p *patternParser) space() {
	for p.i < len(p.s) && strings.IndexByte(" \t\r\n", p.s[p.i]) >= 0 {
		p.i++
	}
}

// ellipsis consumes an Ellipsis token if one comes next.
func (p *patternParser) ellipsis() bool {
	p.space()
	if strings.HasPrefix(p.s[p.i:], Ellipsis) {
		p.i += len(Ellipsis)
		return true
	}
	return false
}

func (p *patternParser) value() (*JSONPattern, error) {
	if p.ellipsis() {
		return &JSONPattern{kind: kindAny}, nil
	}
	p.space()
	if p.i >= len(p.s) {
		return nil, p.errorf("unexpected end")
	}
	switch c := p.s[p.i]; {
	case c == '{':
		return p.object()
	case c == '[':
		return p.array()
	case c == '"':
		s, err := p.string()
		if err != nil {
			return nil, err
		}
		return &JSONPattern{kind: kindString, str: s}, nil
	case c == '-' || c >= '0' && c <= '9':
		j := p.i
		for j < len(p.s) && strings.IndexByte("+-.eE0123456789", p.s[j]) >= 0 {
			j++
		}
		lit := p.s[p.i:j]
		if !json.Valid([]byte(lit)) {
			return nil, p.errorf("bad number %q", lit)
		}
		p.i = j
		return &JSONPattern{kind: kindNumber, lit: lit}, nil
	default:
		for _, lit := range []string{"true", "false", "null"} {
			if strings.HasPrefix(p.s[p.i:], lit) {
				p.i += len(lit)
				return &JSONPattern{kind: kindLiteral, lit: lit}, nil
			}
		}
		return nil, p.errorf("unexpected %q", p.rest())
	}
}

// string reads a JSON string literal (Ellipsis allowed inside, as any
// character is).
func (p *patternParser) string() (string, error) {
	j := p.i + 1
	for j < len(p.s) && p.s[j] != '"' {
		if p.s[j] == '\\' {
			j++
		}
		j++
	}
	if j >= len(p.s) {
		return "", p.errorf("unterminated string (a string never breaks across lines)")
	}
	var s string
	if err := json.Unmarshal([]byte(p.s[p.i:j+1]), &s); err != nil {
		return "", p.errorf("bad string %s: %v", p.s[p.i:j+1], err)
	}
	p.i = j + 1
	return s, nil
}

func (p *patternParser) expect(c byte) error {
	p.space()
	if p.i >= len(p.s) || p.s[p.i] != c {
		return p.errorf("want %q, got %q", c, p.rest())
	}
	p.i++
	return nil
}

// next reports whether another item follows (a comma, consumed) or the
// container ends (its closing bracket, consumed).
func (p *patternParser) next(end byte) (bool, error) {
	p.space()
	if p.i < len(p.s) && p.s[p.i] == ',' {
		p.i++
		return true, nil
	}
	return false, p.expect(end)
}

func (p *patternParser) object() (*JSONPattern, error) {
	p.i++ // {
	o := &JSONPattern{kind: kindObject}
	p.space()
	if p.i < len(p.s) && p.s[p.i] == '}' {
		p.i++
		return o, nil
	}
	for {
		if p.ellipsis() {
			o.open = true
		} else {
			p.space()
			if p.i >= len(p.s) || p.s[p.i] != '"' {
				return nil, p.errorf("want a member name, got %q", p.rest())
			}
			k, err := p.string()
			if err != nil {
				return nil, err
			}
			if err := p.expect(':'); err != nil {
				return nil, err
			}
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			o.members = append(o.members, patternMember{k, v})
		}
		more, err := p.next('}')
		if err != nil || !more {
			return o, err
		}
	}
}

func (p *patternParser) array() (*JSONPattern, error) {
	p.i++ // [
	a := &JSONPattern{kind: kindArray}
	p.space()
	if p.i < len(p.s) && p.s[p.i] == ']' {
		p.i++
		return a, nil
	}
	for {
		if p.ellipsis() {
			a.elems = append(a.elems, nil)
		} else {
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			a.elems = append(a.elems, v)
		}
		more, err := p.next(']')
		if err != nil || !more {
			return a, err
		}
	}
}

// MatchText parses text as one JSON value and matches it; it returns ""
// when it matches, else what differs.
func (p *JSONPattern) MatchText(text string) string {
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return fmt.Sprintf("want a JSON value, got %q (%v)", clip(text), err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Sprintf("want one JSON value, got more: %q", clip(text))
	}
	if d := p.match(v, "$"); d != "" {
		return d + "\n\tgot: " + strings.TrimSpace(text)
	}
	return ""
}

func clip(s string) string {
	s = strings.TrimSpace(s)
	if utf8.RuneCountInString(s) > 300 {
		s = string([]rune(s)[:300]) + Ellipsis
	}
	return s
}

// match compares v (decoded with UseNumber) with p; where names the value
// ($.tokens[2].id) in the difference it returns.
func (p *JSONPattern) match(v any, where string) string {
	switch p.kind {
	case kindAny:
		return ""
	case kindString:
		s, ok := v.(string)
		if !ok || !Wildcard(p.str, s) {
			return fmt.Sprintf("%s: want %q, got %s", where, p.str, show(v))
		}
	case kindNumber:
		n, ok := v.(json.Number)
		if !ok || !sameNumber(p.lit, string(n)) {
			return fmt.Sprintf("%s: want %s, got %s", where, p.lit, show(v))
		}
	case kindLiteral:
		if show(v) != p.lit {
			return fmt.Sprintf("%s: want %s, got %s", where, p.lit, show(v))
		}
	case kindObject:
		o, ok := v.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: want an object, got %s", where, show(v))
		}
		shown := map[string]bool{}
		for _, m := range p.members {
			shown[m.key] = true
			got, ok := o[m.key]
			if !ok {
				return fmt.Sprintf("%s: want member %q, the object has none", where, m.key)
			}
			if d := m.val.match(got, where+"."+m.key); d != "" {
				return d
			}
		}
		if !p.open {
			for k := range o {
				if !shown[k] {
					return fmt.Sprintf("%s: member %q is not shown (show it, or write %s for the rest)", where, k, Ellipsis)
				}
			}
		}
	case kindArray:
		a, ok := v.([]any)
		if !ok {
			return fmt.Sprintf("%s: want an array, got %s", where, show(v))
		}
		if !matchElems(p.elems, a) {
			return elemsDiff(p.elems, a, where)
		}
	}
	return ""
}

// matchElems matches an array's elements with the shown ones, a nil one
// standing for any number of elements.
func matchElems(want []*JSONPattern, got []any) bool {
	if len(want) == 0 {
		return len(got) == 0
	}
	if want[0] == nil {
		for skip := 0; skip <= len(got); skip++ {
			if matchElems(want[1:], got[skip:]) {
				return true
			}
		}
		return false
	}
	return len(got) > 0 && want[0].match(got[0], "") == "" && matchElems(want[1:], got[1:])
}

// elemsDiff says how an array differs from the elements shown: the first
// element that differs when the shown ones are as many and none is
// Ellipsis, else the counts.
func elemsDiff(want []*JSONPattern, got []any, where string) string {
	if len(want) == len(got) {
		for i, w := range want {
			if w == nil {
				break
			}
			if d := w.match(got[i], fmt.Sprintf("%s[%d]", where, i)); d != "" {
				return d
			}
		}
	}
	// [first, …, last]: say how the first or the last element differs.
	if n := len(got); n > 0 && len(want) > 1 && slices.Contains(want, nil) {
		if w := want[0]; w != nil {
			if d := w.match(got[0], where+"[0]"); d != "" {
				return d
			}
		}
		if w := want[len(want)-1]; w != nil {
			if d := w.match(got[n-1], fmt.Sprintf("%s[%d]", where, n-1)); d != "" {
				return d
			}
		}
	}
	return fmt.Sprintf("%s: %d elements do not match the %d shown (%s stands for any number of them)", where, len(got), len(want), Ellipsis)
}

func sameNumber(a, b string) bool {
	x, okx := new(big.Float).SetString(a)
	y, oky := new(big.Float).SetString(b)
	return okx && oky && x.Cmp(y) == 0
}

// show renders a decoded JSON value compactly.
func show(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return strconv.Quote(fmt.Sprint(v))
	}
	return strings.TrimSpace(b.String())
}
