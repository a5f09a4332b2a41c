// Command testsummary reads `go test -json` on standard input and prints
// what a plain `go test` prints — a line per package, and the whole output
// of every test that failed — then the tests that were skipped and why, so
// that a green run that skipped a test says so. It exits 1 when any test or
// package failed (or the input held no result at all), else 0.
//
//	go test -json ./... | go run ./internal/testsummary [-skips file]
//
// With -skips, the list of skipped tests goes to that file instead of the
// end of the output (.ci/run prints it last, after every step).
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

// skip is a skipped test and the reason it logged.
type skip struct{ Package, Test, Reason string }

// summary is what a run came to.
type summary struct {
	failed  bool
	results int
	skips   []skip
}

func main() {
	skipsPath := flag.String("skips", "", "write the list of skipped tests to this file instead of standard output")
	flag.Parse()
	s, err := summarize(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(2)
	}
	out := io.Writer(os.Stdout)
	if *skipsPath != "" {
		f, err := os.Create(*skipsPath)
		if err != nil {
			fmt.Fprintln(os.Stderr, "testsummary:", err)
			os.Exit(2)
		}
		defer f.Close()
		out = f
	}
	writeSkips(out, s.skips)
	if s.failed || s.results == 0 {
		if s.results == 0 {
			fmt.Fprintln(os.Stderr, "testsummary: no test result in the input")
		}
		os.Exit(1)
	}
}

// summarize reads the events from r and writes to w the package lines and
// the output of failed tests, as they come.
func summarize(r io.Reader, w io.Writer) (*summary, error) {
	s := &summary{}
	output := map[string][]string{} // package + "\x00" + test → its output lines
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			fmt.Fprintf(w, "%s\n", line) // not an event: say it as it is
			continue
		}
		key := e.Package + "\x00" + e.Test
		switch e.Action {
		case "output", "build-output":
			if e.Test == "" {
				if strings.TrimSpace(e.Output) != "PASS" {
					fmt.Fprint(w, e.Output)
				}
				continue
			}
			output[key] = append(output[key], e.Output)
		case "fail", "build-fail":
			s.failed = true
			s.results++
			if e.Test != "" {
				fmt.Fprint(w, strings.Join(output[key], ""))
			}
			delete(output, key)
		case "pass":
			s.results++
			delete(output, key)
		case "skip":
			s.results++
			if e.Test != "" {
				s.skips = append(s.skips, skip{e.Package, e.Test, reason(output[key])})
			}
			delete(output, key)
		}
	}
	return s, sc.Err()
}

// reason is what a skipped test logged, less the lines go test adds.
func reason(lines []string) string {
	var parts []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		// file_test.go:123: the reason
		if i := strings.Index(t, ".go:"); i > 0 && !strings.Contains(t[:i], " ") {
			if j := strings.Index(t[i+4:], ": "); j >= 0 {
				t = t[i+4+j+2:]
			}
		}
		parts = append(parts, t)
	}
	if len(parts) == 0 {
		return "(no reason given)"
	}
	return strings.Join(parts, " / ")
}

// writeSkips lists the skipped tests, by package and test.
func writeSkips(w io.Writer, skips []skip) {
	if len(skips) == 0 {
		fmt.Fprintln(w, "no test was skipped")
		return
	}
	sort.Slice(skips, func(i, j int) bool {
		if skips[i].Package != skips[j].Package {
			return skips[i].Package < skips[j].Package
		}
		return skips[i].Test < skips[j].Test
	})
	noun := "tests"
	if len(skips) == 1 {
		noun = "test"
	}
	fmt.Fprintf(w, "%d %s skipped (a green run did not run them):\n", len(skips), noun)
	for _, s := range skips {
		fmt.Fprintf(w, "  %s %s: %s\n", s.Package, s.Test, s.Reason)
	}
}
