package doccheck

import (
	"reflect"
	"strings"
	"testing"
)

const doc = "# Title\n" + // 1
	"## Quick start\n" + // 2
	"```sh\n" + // 3
	"go run ./cmd/x run   # serve\n" + // 4
	"```\n" + // 5
	"## Walk-through\n" + // 6
	"Some prose.\n" + // 7
	"```sh\n" + // 8
	"# A public route.\n" + // 9
	"curl -i localhost:8080/healthz\n" + // 10
	"# HTTP/1.1 200 OK\n" + // 11
	"\n" + // 12
	"# prose after a blank line\n" + // 13
	"# more prose\n" + // 14
	"TOKEN=$(make token \\\n" + // 15
	"  --scopes read)\n" + // 16
	"curl -s x\n" + // 17
	"# {\"a\":1,\n" + // 18
	"#  \"b\":\"tok_…\"}\n" + // 19
	"```\n" + // 20
	"```caddyfile\n" + // 21
	"# not shell\n" + // 22
	"```\n" + // 23
	"### A subsection\n" + // 24
	"```sh\n" + // 25
	"echo done\n" + // 26
	"```\n" + // 27
	"## Next\n" + // 28
	"```sh\n" + // 29
	"echo not in the section\n" + // 30
	"```\n"

func TestSectionBlocksSteps(t *testing.T) {
	lines, first, err := Section(doc, "Walk-through")
	if err != nil {
		t.Fatal(err)
	}
	if first != 7 || lines[0] != "Some prose." || lines[len(lines)-1] != "```" || len(lines) != 21 {
		t.Fatalf("Section = line %d, %d lines %q … %q", first, len(lines), lines[0], lines[len(lines)-1])
	}
	blocks, err := Blocks(lines, first, "sh")
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) != 2 || blocks[0].Line != 9 || blocks[1].Line != 26 {
		t.Fatalf("Blocks = %+v", blocks)
	}
	got := Steps(blocks)
	want := []Step{
		{Line: 10, Command: "curl -i localhost:8080/healthz", Output: []string{"HTTP/1.1 200 OK"}},
		{Line: 15, Command: "TOKEN=$(make token \\\n  --scopes read)"},
		{Line: 17, Command: "curl -s x", Output: []string{`{"a":1,`, ` "b":"tok_…"}`}},
		{Line: 26, Command: "echo done"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Steps =\n%+v\nwant\n%+v", got, want)
	}

	if _, _, err := Section(doc, "Missing"); err == nil {
		t.Error("Section found a heading that is not there")
	}
	if _, err := Blocks([]string{"```sh", "echo"}, 1, "sh"); err == nil {
		t.Error("Blocks accepted a block that is never closed")
	}
	qs, f, _ := Section(doc, "Quick start")
	b, _ := Blocks(qs, f, "sh")
	if s := Steps(b); len(s) != 1 || s[0].Command != "go run ./cmd/x run   # serve" {
		t.Errorf("quick start steps = %+v", s)
	}
}

func TestParseExpect(t *testing.T) {
	e, err := ParseExpect([]string{
		"HTTP/1.1 403 Forbidden",
		`www-authenticate: Bearer realm="deplo", error="insufficient_scope"`,
		`{"error":"insufficient_scope",`,
		` "error_description":"…"}`,
		"created token tok_… in workspace ws_acme",
	})
	if err != nil {
		t.Fatal(err)
	}
	if e.Status != "HTTP/1.1 403 Forbidden" || len(e.Headers) != 1 || e.Headers[0].Name != "www-authenticate" ||
		e.JSON == nil || !reflect.DeepEqual(e.Text, []string{"created token tok_… in workspace ws_acme"}) {
		t.Errorf("ParseExpect = %+v", e)
	}
	// Without a status line, "Error: …" is text, not a header.
	e, err = ParseExpect([]string{"Error: the deplo API refused"})
	if err != nil || len(e.Headers) != 0 || len(e.Text) != 1 {
		t.Errorf("ParseExpect(Error: …) = %+v, %v", e, err)
	}
	for _, bad := range [][]string{
		{`{"a":`, `"unterminated}`},
		{`{"a":1}`, `{"b":2}`},
		{"HTTP/1.1 200 OK", "HTTP/1.1 200 OK"},
		{`{"a" 1}`},
	} {
		if _, err := ParseExpect(bad); err == nil {
			t.Errorf("ParseExpect(%q) accepted it", bad)
		}
	}
}

func TestCheck(t *testing.T) {
	resp := "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nWww-Authenticate: Bearer realm=\"deplo\", error=\"insufficient_scope\", scope=\"deploy\"\r\n\r\n" +
		`{"error":"insufficient_scope","error_description":"the credential lacks a scope this route requires"}` + "\n"
	for _, tc := range []struct {
		name           string
		shown          []string
		stdout, stderr string
		ok             bool
	}{
		{"status", []string{"HTTP/1.1 403 Forbidden"}, resp, "", true},
		{"wrong status", []string{"HTTP/1.1 200 OK"}, resp, "", false},
		{"no status", []string{"HTTP/1.1 200 OK"}, "{}", "", false},
		{"header, any case", []string{"HTTP/1.1 403 Forbidden", `WWW-AUTHENTICATE: Bearer realm="deplo", error="insufficient_scope", scope="deploy"`}, resp, "", true},
		{"header wildcard", []string{"HTTP/1.1 403 Forbidden", `Www-Authenticate: Bearer realm="deplo", …`}, resp, "", true},
		{"header value differs", []string{"HTTP/1.1 403 Forbidden", `Www-Authenticate: Bearer realm="deplo", error="insufficient_scope"`}, resp, "", false},
		{"header missing", []string{"HTTP/1.1 403 Forbidden", "Retry-After: 5"}, resp, "", false},
		{"body after headers", []string{"HTTP/1.1 403 Forbidden", `{"error":"insufficient_scope","error_description":"…"}`}, resp, "", true},
		{"body differs", []string{"HTTP/1.1 403 Forbidden", `{"error":"invalid_token","error_description":"…"}`}, resp, "", false},
		{"interim response", []string{"HTTP/1.1 204 No Content"}, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nDate: x\r\n\r\n", "", true},
		{"text on stderr", []string{"created token tok_… in workspace ws_acme"}, "", "created token tok_abc in workspace ws_acme\n", true},
		{"text differs", []string{"created token tok_… in workspace ws_other"}, "", "created token tok_abc in workspace ws_acme\n", false},
		{"table, spacing free", []string{"ID NAME", "…", "tok_…  CI deploys  active"}, "ID      NAME\ntok_a   x\ntok_b   CI deploys   active\n", "", true},
		{"table, lines not consecutive", []string{"ID NAME", "tok_…  CI deploys  active"}, "ID      NAME\ntok_a   x\ntok_b   CI deploys   active\n", "", false},
		{"table, row missing", []string{"ID NAME", "…", "tok_c  CI"}, "ID      NAME\ntok_a   x\n", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := ParseExpect(tc.shown)
			if err != nil {
				t.Fatal(err)
			}
			diffs := e.Check(tc.stdout, tc.stderr)
			if ok := len(diffs) == 0; ok != tc.ok {
				t.Errorf("Check ok = %v, want %v; diffs %q", ok, tc.ok, diffs)
			}
		})
	}
}

func TestJSONPattern(t *testing.T) {
	for _, tc := range []struct {
		pattern, got string
		ok           bool
	}{
		{`{"a":1,"b":"x"}`, `{"b":"x","a":1.0}`, true},
		{`{"a":1}`, `{"a":1,"b":2}`, false},                 // a member not shown
		{`{"a":1,…}`, `{"a":1,"b":2}`, true},                // … for the rest
		{`{"a":1,"b":2}`, `{"a":1}`, false},                 // a member missing
		{`{"id":"tok_…"}`, `{"id":"tok_scw1b97jyn"}`, true}, // … inside a string
		{`{"id":"tok_…"}`, `{"id":"sk_live_x"}`, false},     //
		{`{"id":"…"}`, `{"id":7}`, false},                   // a string is a string
		{`{"id":…}`, `{"id":7}`, true},                      // … as a value: any
		{`{"x":null}`, `{"x":null}`, true},                  //
		{`{"x":null}`, `{"x":"null"}`, false},               //
		{`{"x":true}`, `{"x":false}`, false},                //
		{`[1,…,3]`, `[1,2,2,3]`, true},                      // … for elements
		{`[1,…,3]`, `[1,3]`, true},                          //
		{`[1,…,3]`, `[1,2]`, false},                         //
		{`[1,2]`, `[1,2,3]`, false},                         //
		{`{"tokens":[{"id":"a",…},…,{"id":"c","n":1}]}`, `{"tokens":[{"id":"a","z":0},{"id":"b"},{"id":"c","n":1}]}`, true},
		{`{"tokens":[{"id":"a",…},…,{"id":"c","n":1}]}`, `{"tokens":[{"id":"a"},{"id":"c","n":2}]}`, false},
		{`{"a":"x"}`, `{"a":"x"} {"b":1}`, false}, // one value only
		{`{"a":"x"}`, `not json`, false},
	} {
		p, err := ParseJSONPattern(tc.pattern)
		if err != nil {
			t.Errorf("ParseJSONPattern(%s): %v", tc.pattern, err)
			continue
		}
		if d := p.MatchText(tc.got); (d == "") != tc.ok {
			t.Errorf("%s against %s: ok = %v, want %v (%s)", tc.pattern, tc.got, d == "", tc.ok, d)
		}
	}
	for _, bad := range []string{`{"a":}`, `{a:1}`, `[1,2`, `{"a":1}x`, `{"a":01x}`, `"open`} {
		if _, err := ParseJSONPattern(bad); err == nil {
			t.Errorf("ParseJSONPattern(%s) accepted it", bad)
		}
	}
}

func TestWildcard(t *testing.T) {
	for _, tc := range []struct {
		p, s string
		ok   bool
	}{
		{"abc", "abc", true}, {"abc", "abd", false}, {"a…", "a", true}, {"a…c", "abbc", true},
		{"a…c", "ab", false}, {"…b…", "abc", true}, {"…b…", "ac", false}, {"a…a", "a", false},
		{"20…Z", "2026-11-30T05:32:20Z", true}, {strings.Repeat("…", 3), "", true},
	} {
		if got := Wildcard(tc.p, tc.s); got != tc.ok {
			t.Errorf("Wildcard(%q, %q) = %v, want %v", tc.p, tc.s, got, tc.ok)
		}
	}
}

func TestJSONPatternArrayDiff(t *testing.T) {
	p, err := ParseJSONPattern(`{"tokens":[{"id":"a",…},…,{"id":"c","n":1}]}`)
	if err != nil {
		t.Fatal(err)
	}
	d := p.MatchText(`{"tokens":[{"id":"a"},{"id":"b"},{"id":"c","n":2}]}`)
	if !strings.HasPrefix(d, "$.tokens[2].n: want 1, got 2") {
		t.Errorf("diff = %q, want it to name $.tokens[2].n", d)
	}
}
