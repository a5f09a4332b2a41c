package caddymodule

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/deplo-sh/deplo-auth/decide"
	"github.com/deplo-sh/deplo-auth/jwtauth"
)

// docs/reference.md restates three lists the code owns: the refusal
// reasons, the metrics and the JWT algorithms. These tests fail when the
// document and the code part ways.

const referencePath = "../docs/reference.md"

var referenceCode = regexp.MustCompile("`([^`]+)`")

// referenceSection returns the text under the heading "#… title", up to the
// next heading of the same or a higher level.
func referenceSection(t *testing.T, title string) string {
	t.Helper()
	doc, err := os.ReadFile(referencePath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(doc), "\n")
	for i, l := range lines {
		level := len(l) - len(strings.TrimLeft(l, "#"))
		if level == 0 || strings.TrimSpace(l[level:]) != title {
			continue
		}
		end := len(lines)
		for j := i + 1; j < len(lines); j++ {
			if m := len(lines[j]) - len(strings.TrimLeft(lines[j], "#")); m > 0 && m <= level && strings.HasPrefix(lines[j][m:], " ") {
				end = j
				break
			}
		}
		return strings.Join(lines[i+1:end], "\n")
	}
	t.Fatalf("%s has no section %q", referencePath, title)
	return ""
}

// codeSpans returns the `…` spans of s, in order.
func codeSpans(s string) []string {
	var out []string
	for _, m := range referenceCode.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

func sameSet(t *testing.T, what string, documented, code []string) {
	t.Helper()
	d, c := slices.Sorted(slices.Values(documented)), slices.Sorted(slices.Values(code))
	d, c = slices.Compact(d), slices.Compact(c)
	for _, x := range d {
		if !slices.Contains(c, x) {
			t.Errorf("%s: %s lists %q, which the code does not have", what, referencePath, x)
		}
	}
	for _, x := range c {
		if !slices.Contains(d, x) {
			t.Errorf("%s: the code has %q, which %s does not list", what, x, referencePath)
		}
	}
}

// TestReferenceRefusalReasons: the list under "Refusal reasons" is the set
// of reasons package decide can refuse with.
func TestReferenceRefusalReasons(t *testing.T) {
	text := referenceSection(t, "Refusal reasons")
	_, list, ok := strings.Cut(text, "Reasons:")
	if !ok {
		t.Fatal(`"Refusal reasons" has no "Reasons:" list`)
	}
	list = regexp.MustCompile(`\([^)]*\)`).ReplaceAllString(list, "") // asides name options, not reasons
	if i := strings.Index(list, ". "); i >= 0 {
		list = list[:i]
	}
	sameSet(t, "refusal reasons", codeSpans(list), decide.Reasons())
}

// TestReferenceMetrics: the metrics table names every metric the module
// exports, with its type and labels, and no other.
func TestReferenceMetrics(t *testing.T) {
	type family struct{ typ, labels string }
	code := map[string]family{}
	for _, coll := range allCollectors {
		typ := "gauge"
		switch coll.(type) {
		case *prometheus.CounterVec, prometheus.Counter:
			typ = "counter"
		case *prometheus.HistogramVec, prometheus.Histogram:
			typ = "histogram"
		case *prometheus.SummaryVec, prometheus.Summary:
			typ = "summary"
		}
		ch := make(chan *prometheus.Desc, 16)
		go func() { coll.Describe(ch); close(ch) }()
		for d := range ch {
			s := d.String()
			var labels []string
			if v := opsVarLabels.FindStringSubmatch(s); v != nil && v[1] != "" {
				for l := range strings.SplitSeq(v[1], ",") {
					labels = append(labels, strings.TrimSuffix(strings.TrimPrefix(l, "c("), ")"))
				}
			}
			slices.Sort(labels)
			code[opsFqName.FindStringSubmatch(s)[1]] = family{typ, strings.Join(labels, " ")}
		}
	}
	documented := map[string]family{}
	for _, row := range strings.Split(referenceSection(t, "Metrics"), "\n") {
		cells := strings.Split(row, "|")
		if len(cells) < 5 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`deplo_auth_") {
			continue
		}
		labels := codeSpans(cells[3])
		slices.Sort(labels)
		for _, name := range codeSpans(cells[1]) {
			documented[name] = family{strings.TrimSpace(cells[2]), strings.Join(labels, " ")}
		}
	}
	sameSet(t, "metrics", slices.Collect(mapKeys(documented)), slices.Collect(mapKeys(code)))
	for name, d := range documented {
		if c, ok := code[name]; ok && c != d {
			t.Errorf("%s: %s says %s with labels [%s]; the code exports %s with [%s]", name, referencePath, d.typ, d.labels, c.typ, c.labels)
		}
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestReferenceJWTAlgorithms: the alg allowlist's documented values are
// jwtauth's.
func TestReferenceJWTAlgorithms(t *testing.T) {
	for _, row := range strings.Split(referenceSection(t, "Dashboard sessions (JWT)"), "\n") {
		if !strings.HasPrefix(row, "| `alg`") {
			continue
		}
		_, list, ok := strings.Cut(row, "allowlist: `")
		if !ok {
			t.Fatalf("the alg row lists no algorithms: %s", row)
		}
		list, _, _ = strings.Cut(list, "`")
		sameSet(t, "JWT algorithms", strings.Fields(list), jwtauth.Algorithms())
		return
	}
	t.Fatal(`no "alg" row under "Dashboard sessions (JWT)"`)
}
