package doccheck

import (
	"fmt"
	"net/textproto"
	"regexp"
	"strings"
)

// Expect is the output a document shows for one command, parsed.
type Expect struct {
	// Status is a shown status line ("HTTP/1.1 403 Forbidden"), "" if none.
	Status string
	// Headers are the header lines shown after the status line, in order.
	Headers []Header
	// JSON is the shown JSON value (the response body, or the command's
	// whole standard output), nil if none.
	JSON *JSONPattern
	// Text are the other lines shown: lines the command prints, in this
	// order (a line that is only Ellipsis stands for any number of lines).
	Text []string
}

// Header is one shown header line.
type Header struct{ Name, Value string }

var headerLine = regexp.MustCompile(`^([A-Za-z0-9!#$%&'*+.^_|~-]+):[ \t]*(.*)$`)

// ParseExpect parses the comment lines shown under a command: a status line
// (HTTP/…) and the header lines right after it; a JSON value starting with
// '{' or '[' and continuing over the lines that follow until it is complete
// (lines break between JSON tokens, never inside a string); any other line
// is a line of text the command prints.
func ParseExpect(lines []string) (*Expect, error) {
	e := &Expect{}
	inHeaders := false
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		switch {
		case strings.HasPrefix(line, "HTTP/"):
			if e.Status != "" {
				return nil, fmt.Errorf("output line %d: a second status line %q", i+1, line)
			}
			e.Status, inHeaders = line, true
		case inHeaders && headerLine.MatchString(line):
			m := headerLine.FindStringSubmatch(line)
			e.Headers = append(e.Headers, Header{Name: m[1], Value: m[2]})
		case strings.HasPrefix(line, "{") || strings.HasPrefix(line, "["):
			if e.JSON != nil {
				return nil, fmt.Errorf("output line %d: a second JSON value", i+1)
			}
			text := line
			j := i
			for !jsonComplete(text) && j+1 < len(lines) {
				j++
				text += "\n" + strings.TrimSpace(lines[j])
			}
			p, err := ParseJSONPattern(text)
			if err != nil {
				return nil, fmt.Errorf("output lines %d-%d: %w", i+1, j+1, err)
			}
			e.JSON, i, inHeaders = p, j, false
		default:
			e.Text, inHeaders = append(e.Text, line), false
		}
	}
	return e, nil
}

// jsonComplete reports whether text holds as many closing brackets as
// opening ones outside strings (a value that may be complete).
func jsonComplete(text string) bool {
	depth, inString, escaped := 0, false, false
	for _, c := range []byte(text) {
		switch {
		case escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case inString:
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
		}
	}
	return depth <= 0
}

// Check compares what a command printed with what the document shows and
// returns every difference, nil if none. The status line and headers are
// those of the response in stdout (curl -i); the JSON value is the body
// after them, or the whole of stdout; text lines are looked for in stdout,
// then in stderr.
func (e *Expect) Check(stdout, stderr string) []string {
	var diffs []string
	status, header, body := splitResponse(stdout)
	if e.Status != "" {
		if status == "" {
			diffs = append(diffs, fmt.Sprintf("want status line %q, the output has none", e.Status))
		} else if status != e.Status {
			diffs = append(diffs, fmt.Sprintf("status line: want %q, got %q", e.Status, status))
		}
	}
	for _, h := range e.Headers {
		got, ok := header[textproto.CanonicalMIMEHeaderKey(h.Name)]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("want header %s: %s, the response has none", h.Name, h.Value))
		case !anyMatch(h.Value, got):
			diffs = append(diffs, fmt.Sprintf("header %s: want %q, got %q", h.Name, h.Value, strings.Join(got, `", "`)))
		}
	}
	if e.JSON != nil {
		if d := e.JSON.MatchText(body); d != "" {
			diffs = append(diffs, d)
		}
	}
	if len(e.Text) > 0 && !linesMatch(e.Text, stdout) && !linesMatch(e.Text, stderr) {
		diffs = append(diffs, fmt.Sprintf("want these lines in the output:\n\t%s\ngot stdout:\n\t%s\nstderr:\n\t%s",
			strings.Join(e.Text, "\n\t"), indent(stdout), indent(stderr)))
	}
	return diffs
}

func indent(s string) string {
	return strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n\t")
}

func anyMatch(pattern string, values []string) bool {
	for _, v := range values {
		if Wildcard(pattern, v) {
			return true
		}
	}
	return false
}

// splitResponse splits curl -i output into the last response's status line,
// headers and body; output that does not start with a status line is all
// body.
func splitResponse(out string) (status string, header map[string][]string, body string) {
	header = map[string][]string{}
	rest := out
	for strings.HasPrefix(rest, "HTTP/") {
		head, tail, found := strings.Cut(strings.ReplaceAll(rest, "\r\n", "\n"), "\n\n")
		lines := strings.Split(head, "\n")
		status, rest = strings.TrimSpace(lines[0]), tail
		clear(header)
		for _, l := range lines[1:] {
			if name, value, ok := strings.Cut(l, ":"); ok {
				k := textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(name))
				header[k] = append(header[k], strings.TrimSpace(value))
			}
		}
		if !found {
			rest = ""
		}
		// An interim response (100 Continue) is followed by another one.
		if !strings.HasPrefix(status, "HTTP/1.1 1") && !strings.HasPrefix(status, "HTTP/2 1") {
			break
		}
	}
	return status, header, rest
}

// linesMatch reports whether want, line by line, matches consecutive lines
// of out (a want line that is only Ellipsis matches any number of lines).
// Runs of spaces compare equal to any run of spaces, so a table's column
// widths need not be copied exactly.
func linesMatch(want []string, out string) bool {
	got := strings.Split(strings.ReplaceAll(strings.TrimRight(out, "\n"), "\r\n", "\n"), "\n")
	for start := 0; start <= len(got); start++ {
		if matchLinesFrom(want, got[start:]) {
			return true
		}
	}
	return false
}

func matchLinesFrom(want, got []string) bool {
	if len(want) == 0 {
		return true
	}
	if strings.TrimSpace(want[0]) == Ellipsis {
		for skip := 0; skip <= len(got); skip++ {
			if matchLinesFrom(want[1:], got[skip:]) {
				return true
			}
		}
		return false
	}
	if len(got) == 0 || !Wildcard(squeeze(want[0]), squeeze(got[0])) {
		return false
	}
	return matchLinesFrom(want[1:], got[1:])
}

// squeeze trims s and turns each run of spaces and tabs into one space.
func squeeze(s string) string { return strings.Join(strings.Fields(s), " ") }

// Wildcard reports whether s matches pattern, in which each Ellipsis stands
// for any run of characters (none included).
func Wildcard(pattern, s string) bool {
	parts := strings.Split(pattern, Ellipsis)
	if len(parts) == 1 {
		return pattern == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return len(s) >= len(last) && strings.HasSuffix(s, last)
}
