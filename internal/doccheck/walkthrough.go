package doccheck

import (
	"fmt"
	"strings"
)

// Ellipsis stands, in a shown output, for text the document does not spell
// out: inside a string or a line of text, any run of characters (none
// included); as a whole line of text, any number of lines; as a JSON value,
// any value; as a JSON object member, any further members; as a JSON array
// element, any number of elements.
const Ellipsis = "…"

// Block is one fenced code block of a markdown document.
type Block struct {
	// Info is the fence's info string ("sh", "caddyfile", …).
	Info string
	// Line is the 1-based line of the block's first content line.
	Line int
	// Lines are the block's content lines.
	Lines []string
}

// Step is one command of a walk-through and the output the document shows
// for it.
type Step struct {
	// Line is the 1-based line of the command's first line in the document.
	Line int
	// Command is the command as written, continuation lines included.
	Command string
	// Output holds the comment lines right under the command, without their
	// leading "# " (or "#"): what the document says it prints.
	Output []string
}

// Section returns the lines of the section of md under the heading whose
// text is title (any level), up to the next heading of the same or a higher
// level, and the 1-based line of its first line. Subsections are part of it.
// Headings inside fenced code blocks do not count.
func Section(md, title string) (lines []string, first int, err error) {
	all := strings.Split(md, "\n")
	level, start := 0, -1
	fence := ""
	for i, line := range all {
		trimmed := strings.TrimLeft(line, " ")
		if f := fenceOf(trimmed); f != "" {
			switch {
			case fence == "":
				fence = f
			case strings.HasPrefix(trimmed, fence) && strings.TrimSpace(strings.TrimLeft(trimmed, f[:1])) == "":
				fence = ""
			}
			continue
		}
		if fence != "" {
			continue
		}
		l, text := heading(line)
		if l == 0 {
			continue
		}
		if start < 0 {
			if text == title {
				level, start = l, i+1
			}
			continue
		}
		if l <= level {
			return all[start:i], start + 1, nil
		}
	}
	if start < 0 {
		return nil, 0, fmt.Errorf("no heading %q", title)
	}
	return all[start:], start + 1, nil
}

// heading returns the level and text of an ATX heading line, 0 if line is
// not one.
func heading(line string) (int, string) {
	if !strings.HasPrefix(line, "#") {
		return 0, ""
	}
	l := len(line) - len(strings.TrimLeft(line, "#"))
	if l > 6 || len(line) > l && line[l] != ' ' {
		return 0, ""
	}
	return l, strings.TrimSpace(line[l:])
}

// Blocks returns the fenced code blocks of lines (first is the 1-based
// document line of lines[0]) whose info string is info.
func Blocks(lines []string, first int, info string) ([]Block, error) {
	var out []Block
	var cur *Block
	fence := ""
	for i, line := range lines {
		trimmed := strings.TrimLeft(line, " ")
		f := fenceOf(trimmed)
		switch {
		case cur == nil && fence == "" && f != "":
			fence = f
			if strings.TrimSpace(trimmed[len(f):]) == info {
				cur = &Block{Info: info, Line: first + i + 1}
			}
		case fence != "" && f != "" && strings.HasPrefix(trimmed, fence) && strings.TrimSpace(strings.TrimLeft(trimmed, f[:1])) == "":
			if cur != nil {
				out = append(out, *cur)
				cur = nil
			}
			fence = ""
		case cur != nil:
			cur.Lines = append(cur.Lines, line)
		}
	}
	if fence != "" {
		return nil, fmt.Errorf("a code block opened in this section is never closed")
	}
	return out, nil
}

// Steps splits shell blocks into commands and their shown outputs, the rules
// the documents follow (CONTRIBUTING.md, "Walk-throughs"):
//
//   - a command is a line and, while a line ends with a backslash, the next;
//   - the comment lines right under a command's last line, with no blank
//     line between, are what it prints (its Output);
//   - any other comment line — at the start of a block, or after a blank
//     line, and the comment lines that follow it — is prose for the reader.
func Steps(blocks []Block) []Step {
	var out []Step
	for _, b := range blocks {
		// state: "" (between commands), "output" (right under a command or
		// its output), "prose".
		state := ""
		for i := 0; i < len(b.Lines); i++ {
			line := b.Lines[i]
			trimmed := strings.TrimSpace(line)
			switch {
			case trimmed == "":
				state = ""
			case strings.HasPrefix(trimmed, "#"):
				if state == "output" {
					s := &out[len(out)-1]
					s.Output = append(s.Output, commentText(trimmed))
				} else {
					state = "prose"
				}
			default:
				step := Step{Line: b.Line + i, Command: line}
				for strings.HasSuffix(b.Lines[i], "\\") && i+1 < len(b.Lines) {
					i++
					step.Command += "\n" + b.Lines[i]
				}
				out = append(out, step)
				state = "output"
			}
		}
	}
	return out
}

// commentText is a comment line without its "#" and one following space.
func commentText(trimmed string) string {
	s := strings.TrimPrefix(trimmed, "#")
	return strings.TrimPrefix(s, " ")
}
