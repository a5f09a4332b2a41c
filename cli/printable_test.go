package cli

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"CI deploys":             "CI deploys",
		"naïve 名前 ✓":             "naïve 名前 ✓",
		"a\x1b[31mred":           "a [31mred",
		"bell\a tab\t nl\n cr\r": "bell  tab  nl  cr ",
		"del\x7f":                "del ",
		"c1 \u009b2J csi":        "c1  2J csi",
		"c1 \u0085 nel":          "c1   nel",
		"rtl \u202egnp.exe":      "rtl  gnp.exe",
		"isolate \u2066x\u2069":  "isolate  x ",
		"bad \xff\xfe utf8":      "bad \ufffd\ufffd utf8",
		"raw 8-bit c1 \x9b31m":   "raw 8-bit c1 \ufffd31m",
		"":                       "",
	} {
		got := printable(in)
		if got != want {
			t.Errorf("printable(%q) = %q, want %q", in, got, want)
		}
		for _, r := range got {
			if hidden(r) {
				t.Errorf("printable(%q) keeps %U", in, r)
			}
		}
	}
}

func TestJSONPrintable(t *testing.T) {
	in := map[string]string{"name": "x\x7f\u009b\u202ey\x1b\nz"}
	b, _ := json.MarshalIndent(in, "", "  ") // as token list --json prints
	out := jsonPrintable(b)
	var back map[string]string
	if err := json.Unmarshal(out, &back); err != nil || back["name"] != in["name"] {
		t.Fatalf("%s does not decode to the same value: %q, %v", out, back["name"], err)
	}
	if printable(strings.ReplaceAll(string(out), "\n", "")) != strings.ReplaceAll(string(out), "\n", "") ||
		strings.ContainsAny(string(out), "\x7f\x1b") {
		t.Errorf("%q still holds a control character", out)
	}
}
