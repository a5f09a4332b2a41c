// Package doccheck reads the repository's documents for the tests that keep
// them true: which markdown documents a file cites (so that none is missing),
// the anchors a markdown document defines, and the walk-through sections whose
// shell blocks a test runs as written (walkthrough.go, expect.go).
package doccheck

import (
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// Citation is one mention of a markdown document in a file's text.
type Citation struct {
	// Path is the document as written, without its #anchor.
	Path string
	// Anchor is the part after '#', "" if none.
	Anchor string
	// Link: the mention is a markdown link target ([text](path)), which a
	// markdown viewer resolves relative to the citing file only. Other
	// mentions may also be written relative to the repository root.
	Link bool
	// Line is the 1-based line of the mention.
	Line int
}

var (
	// linkTarget is a markdown link or image target.
	linkTarget = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	// mdPath is a relative path ending in .md, with an optional anchor.
	mdPath = regexp.MustCompile(`(?:\.\.?/)*[A-Za-z0-9_][A-Za-z0-9_.\-/]*\.md(?:#[A-Za-z0-9_\-]+)?`)
)

// Citations returns every markdown document text mentions: link targets
// (markdown only: markdown is true) and bare mentions such as
// `docs/reference.md` in prose or a comment. Mentions inside a URL
// (preceded by "/" or ":", e.g. a web address ending in .md) are not citations of
// this repository's files and are left out; so are in-page links (#anchor).
func Citations(text string, markdown bool) []Citation {
	var out []Citation
	for i, line := range strings.Split(text, "\n") {
		rest := line
		if markdown {
			for _, m := range linkTarget.FindAllStringSubmatchIndex(line, -1) {
				target := line[m[2]:m[3]]
				if p, a, ok := localMarkdown(target); ok {
					out = append(out, Citation{Path: p, Anchor: a, Link: true, Line: i + 1})
				}
			}
			// Bare mentions are looked for outside link targets only.
			rest = linkTarget.ReplaceAllString(line, "]()")
		}
		for _, m := range mdPath.FindAllStringIndex(rest, -1) {
			if m[0] > 0 && strings.ContainsRune("/:.-_$", rune(rest[m[0]-1])) {
				continue // part of a URL, a longer name or a shell variable
			}
			if m[0] > 0 && isWordByte(rest[m[0]-1]) {
				continue
			}
			p, a, _ := strings.Cut(rest[m[0]:m[1]], "#")
			out = append(out, Citation{Path: p, Anchor: a, Line: i + 1})
		}
	}
	return out
}

func isWordByte(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

// localMarkdown reports whether a link target names a markdown file of the
// repository (no scheme, no host, ends in .md before any anchor).
func localMarkdown(target string) (path, anchor string, ok bool) {
	if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") || strings.HasPrefix(target, "#") {
		return "", "", false
	}
	path, anchor, _ = strings.Cut(target, "#")
	if !strings.HasSuffix(path, ".md") {
		return "", "", false
	}
	return path, anchor, true
}

// InPageAnchors returns the #anchor targets of in-page links ([x](#y)) in a
// markdown document, with their lines.
func InPageAnchors(md string) []Citation {
	var out []Citation
	for i, line := range strings.Split(md, "\n") {
		for _, m := range linkTarget.FindAllStringSubmatch(line, -1) {
			if a, ok := strings.CutPrefix(m[1], "#"); ok {
				out = append(out, Citation{Anchor: a, Link: true, Line: i + 1})
			}
		}
	}
	return out
}

// Anchors returns the anchors a markdown document's headings define, as
// GitHub derives them: the heading's text lower-cased, every character but
// letters, digits, spaces, '-' and '_' dropped, spaces turned into '-', and
// "-1", "-2" … appended to repeats. Headings inside fenced code blocks are
// not headings.
func Anchors(md string) map[string]bool {
	anchors := map[string]bool{}
	seen := map[string]int{}
	fence := ""
	for _, line := range strings.Split(md, "\n") {
		trimmed := strings.TrimLeft(line, " ")
		if f := fenceOf(trimmed); f != "" {
			switch {
			case fence == "":
				fence = f
			case strings.HasPrefix(trimmed, fence) && strings.TrimSpace(trimmed[len(f):]) == "":
				fence = ""
			}
			continue
		}
		if fence != "" || !strings.HasPrefix(trimmed, "#") {
			continue
		}
		level := len(trimmed) - len(strings.TrimLeft(trimmed, "#"))
		if level > 6 || len(trimmed) > level && trimmed[level] != ' ' {
			continue
		}
		slug := Slug(strings.TrimSpace(trimmed[level:]))
		if n, dup := seen[slug]; dup {
			seen[slug] = n + 1
			anchors[slug+"-"+strconv.Itoa(n+1)] = true
			continue
		}
		seen[slug] = 0
		anchors[slug] = true
	}
	return anchors
}

// Slug is GitHub's anchor for a heading's text (see Anchors).
func Slug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// fenceOf returns the fence (``` or ~~~, as long as written) a line opens
// or closes, "" if it is not a fence line.
func fenceOf(line string) string {
	for _, c := range []string{"`", "~"} {
		n := len(line) - len(strings.TrimLeft(line, c))
		if n >= 3 {
			return line[:n]
		}
	}
	return ""
}
