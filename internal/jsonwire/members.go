// Package jsonwire is the JSON deplo-auth reads from and writes to the
// wire, strictly: an object's member names are matched exactly (after
// unescaping) and each at most once, where encoding/json alone matches names
// case-insensitively and lets a repeated name override an earlier one. The
// JWT header and claims, the key file and the token API's input are read
// with it; the key file and every JSON error body are written with it.
package jsonwire

import (
	"encoding/json"
	"unsafe"
)

// Members calls fn with the name and raw value of each member of the
// JSON object b, in order, without building a map. b must already be known
// to be valid JSON (json.Valid): the scan relies on it. Names are matched
// exactly after unescaping. fn must not keep name: it may alias b. It
// returns false when b is not an object or fn returns false.
func Members(b []byte, fn func(name string, value []byte) bool) bool {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return true
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return false
		}
		end, escaped := stringEnd(b, i)
		if end < 0 {
			return false
		}
		rawName := b[i:end]
		i = skipWS(b, end)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipWS(b, i+1)
		vend := valueEnd(b, i)
		if vend < 0 {
			return false
		}
		var name string
		if inner := rawName[1 : len(rawName)-1]; !escaped && isASCII(inner) {
			name = unsafe.String(unsafe.SliceData(inner), len(inner))
		} else {
			// "\u0061lg" is alg to every JSON parser, and invalid UTF-8
			// reads as U+FFFD: decode the name as encoding/json does.
			if json.Unmarshal(rawName, &name) != nil {
				return false
			}
		}
		if !fn(name, b[i:vend]) {
			return false
		}
		i = skipWS(b, vend)
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case '}':
			return true
		case ',':
			i = skipWS(b, i+1)
		default:
			return false
		}
	}
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

func isWS(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipWS(b []byte, i int) int {
	for i < len(b) && isWS(b[i]) {
		i++
	}
	return i
}

// stringEnd returns the index just past the string starting at b[i] == '"',
// and whether it contains escapes; -1 if unterminated.
func stringEnd(b []byte, i int) (int, bool) {
	escaped := false
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			return j + 1, escaped
		}
	}
	return -1, escaped
}

// valueEnd returns the index just past the JSON value starting at b[i], or
// -1.
func valueEnd(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		end, _ := stringEnd(b, i)
		return end
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, _ := stringEnd(b, j)
				if end < 0 {
					return -1
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && !isWS(b[j]) {
		j++
	}
	if j == i {
		return -1
	}
	return j
}

// Elements calls fn with the raw value of each element of the JSON array b,
// in order. Like Members, b must already be known to be valid JSON. It
// returns false when b is not an array or fn returns false.
func Elements(b []byte, fn func(value []byte) bool) bool {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '[' {
		return false
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return true
	}
	for {
		end := valueEnd(b, i)
		if end < 0 || !fn(b[i:end]) {
			return false
		}
		i = skipWS(b, end)
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case ']':
			return true
		case ',':
			i = skipWS(b, i+1)
		default:
			return false
		}
	}
}
