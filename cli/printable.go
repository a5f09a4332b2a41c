package cli

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// printable returns s fit for a terminal: every control character (C0,
// DEL and the C1 range U+0080–U+009F, which some terminals read as
// escape sequences) and every bidirectional formatting character (which
// reorders what is shown) becomes a space, and invalid UTF-8 becomes
// U+FFFD. Every text the CLI prints that a server or a store wrote —
// an error description, a token's name, id or scopes — goes through it, so
// a hostile server cannot move the cursor, retitle the window or hide text.
func printable(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || hidden(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	return strings.Map(func(r rune) rune {
		if hidden(r) {
			return ' '
		}
		return r // invalid UTF-8 arrives as utf8.RuneError and is written as U+FFFD
	}, s)
}

// hidden reports whether r must not reach a terminal as is.
func hidden(r rune) bool {
	return unicode.IsControl(r) || // C0, DEL, C1
		r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069 || r == 0x200e || r == 0x200f || r == 0x061c
}

// jsonHidden is hidden for JSON text: a newline, which encoding/json
// writes only between values, is kept.
func jsonHidden(r rune) bool { return r != '\n' && (r == utf8.RuneError || hidden(r)) }

// oneLine keeps a server-sent text to one short printable line.
func oneLine(s string) string {
	s = printable(s)
	if len(s) > 300 {
		s = strings.ToValidUTF8(s[:300], "") + "…"
	}
	return s
}

// jsonPrintable rewrites every character hidden reports (encoding/json
// escapes only C0) in JSON text as a \u escape: the same JSON value, and
// nothing a terminal acts on. Outside strings JSON holds none of them but
// the indentation's newlines, which are kept (escaped, they would not be
// JSON); inside strings encoding/json has escaped every newline.
func jsonPrintable(b []byte) []byte {
	if !strings.ContainsFunc(string(b), jsonHidden) {
		return b
	}
	var out strings.Builder
	for _, r := range string(b) {
		if jsonHidden(r) {
			fmt.Fprintf(&out, `\u%04x`, r)
			continue
		}
		out.WriteRune(r)
	}
	return []byte(out.String())
}
