package bearer_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/deplo-sh/deplo-auth/bearer"
)

const apiToken = "sk_live_0123456789ABCDEFGHIJKLMNOP2cbtEV"

const (
	descMultiple     = "more than one Authorization header"
	descTooLong      = "Authorization header too long"
	descControl      = "control character in Authorization header"
	descNoCredential = "Bearer credential missing"
	descManyTokens   = "more than one token"
	descInvalidChar  = "invalid character in bearer token"
)

var descriptions = map[string]bool{
	descMultiple: true, descTooLong: true, descControl: true,
	descNoCredential: true, descManyTokens: true, descInvalidChar: true,
}

var b64token = regexp.MustCompile(`^[A-Za-z0-9\-._~+/]+=*$`)

// reference is a plain restatement of the rules, in the order the package
// documents them, used as an oracle for Parse.
func reference(values []string) (string, bearer.Status, string) {
	switch {
	case len(values) == 0:
		return "", bearer.Missing, ""
	case len(values) > 1:
		return "", bearer.Malformed, descMultiple
	}
	v := values[0]
	if len(v) > bearer.MaxLength {
		return "", bearer.Malformed, descTooLong
	}
	if strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7F }) {
		return "", bearer.Malformed, descControl
	}
	v = strings.Trim(v, " ")
	scheme, rest, _ := strings.Cut(v, " ")
	// No non-ASCII rune folds to a letter of "bearer", so EqualFold is
	// exact here.
	if !strings.EqualFold(scheme, "bearer") {
		return "", bearer.Missing, ""
	}
	rest = strings.TrimLeft(rest, " ")
	if rest == "" {
		return "", bearer.Malformed, descNoCredential
	}
	tok, _, more := strings.Cut(rest, " ")
	if !b64token.MatchString(tok) {
		return "", bearer.Malformed, descInvalidChar
	}
	if more {
		return "", bearer.Malformed, descManyTokens
	}
	return tok, bearer.OK, ""
}

func TestParse(t *testing.T) {
	// A valid header value of exactly MaxLength bytes.
	exact := "Bearer " + strings.Repeat("a", bearer.MaxLength-len("Bearer "))
	tests := []struct {
		name   string
		values []string
		token  string
		status bearer.Status
		desc   string
	}{
		// Missing.
		{"nil", nil, "", bearer.Missing, ""},
		{"empty slice", []string{}, "", bearer.Missing, ""},
		{"empty value", []string{""}, "", bearer.Missing, ""},
		{"spaces only", []string{"   "}, "", bearer.Missing, ""},
		{"basic", []string{"Basic dXNlcjpwYXNz"}, "", bearer.Missing, ""},
		{"token scheme", []string{"Token x"}, "", bearer.Missing, ""},
		{"bare api token", []string{apiToken}, "", bearer.Missing, ""},
		{"bearer prefix of word", []string{"Bearerx tok"}, "", bearer.Missing, ""},
		{"bearer with colon", []string{"Bearer: tok"}, "", bearer.Missing, ""},
		{"bearer with equals", []string{"Bearer=tok"}, "", bearer.Missing, ""},
		{"scheme substring", []string{"Bear tok"}, "", bearer.Missing, ""},
		{"unicode scheme", []string{"Bearеr tok"}, "", bearer.Missing, ""}, // Cyrillic е
		{"digest", []string{`Digest username="x", realm="y"`}, "", bearer.Missing, ""},

		// OK.
		{"api token", []string{"Bearer " + apiToken}, apiToken, bearer.OK, ""},
		{"lowercase scheme", []string{"bearer tok"}, "tok", bearer.OK, ""},
		{"uppercase scheme", []string{"BEARER tok"}, "tok", bearer.OK, ""},
		{"mixed case scheme", []string{"bEaReR tok"}, "tok", bearer.OK, ""},
		{"two spaces", []string{"Bearer  tok"}, "tok", bearer.OK, ""},
		{"many spaces", []string{"Bearer      tok"}, "tok", bearer.OK, ""},
		{"trailing space", []string{"Bearer tok "}, "tok", bearer.OK, ""},
		{"trailing spaces", []string{"Bearer tok   "}, "tok", bearer.OK, ""},
		{"leading space", []string{"  Bearer tok"}, "tok", bearer.OK, ""},
		{"padding", []string{"Bearer tok="}, "tok=", bearer.OK, ""},
		{"double padding", []string{"Bearer tok=="}, "tok==", bearer.OK, ""},
		{"jwt", []string{"Bearer a.b.c"}, "a.b.c", bearer.OK, ""},
		{"all b64token chars", []string{"Bearer AZaz09-._~+/=="}, "AZaz09-._~+/==", bearer.OK, ""},
		{"single char", []string{"Bearer x"}, "x", bearer.OK, ""},
		{"exactly MaxLength", []string{exact}, exact[len("Bearer "):], bearer.OK, ""},

		// Malformed: header count, size, control characters.
		{"two headers", []string{"Bearer a", "Bearer b"}, "", bearer.Malformed, descMultiple},
		{"two identical headers", []string{"Bearer tok", "Bearer tok"}, "", bearer.Malformed, descMultiple},
		{"two empty headers", []string{"", ""}, "", bearer.Malformed, descMultiple},
		{"bearer and basic", []string{"Basic dXNlcjpwYXNz", "Bearer tok"}, "", bearer.Malformed, descMultiple},
		{"MaxLength+1", []string{exact + "a"}, "", bearer.Malformed, descTooLong},
		{"MaxLength+1 of junk", []string{strings.Repeat("\x00", bearer.MaxLength+1)}, "", bearer.Malformed, descTooLong},
		{"MaxLength+1 basic", []string{"Basic " + strings.Repeat("a", bearer.MaxLength)}, "", bearer.Malformed, descTooLong},
		{"tab separator", []string{"Bearer\ttok"}, "", bearer.Malformed, descControl},
		{"space and tab", []string{"Bearer \ttok"}, "", bearer.Malformed, descControl},
		{"leading tab", []string{"\tBearer tok"}, "", bearer.Malformed, descControl},
		{"trailing tab", []string{"Bearer tok\t"}, "", bearer.Malformed, descControl},
		{"NUL in token", []string{"Bearer to\x00k"}, "", bearer.Malformed, descControl},
		{"CRLF", []string{"Bearer tok\r\nX-Injected: 1"}, "", bearer.Malformed, descControl},
		{"LF", []string{"Bearer tok\n"}, "", bearer.Malformed, descControl},
		{"DEL", []string{"Bearer tok\x7f"}, "", bearer.Malformed, descControl},
		{"ESC", []string{"Bearer \x1b[31mtok"}, "", bearer.Malformed, descControl},
		{"control in basic", []string{"Basic a\x01b"}, "", bearer.Malformed, descControl},

		// Malformed: Bearer without a single valid token.
		{"bearer alone", []string{"Bearer"}, "", bearer.Malformed, descNoCredential},
		{"lowercase bearer alone", []string{"bearer"}, "", bearer.Malformed, descNoCredential},
		{"bearer space", []string{"Bearer "}, "", bearer.Malformed, descNoCredential},
		{"bearer spaces", []string{"Bearer     "}, "", bearer.Malformed, descNoCredential},
		{"two tokens", []string{"Bearer a b"}, "", bearer.Malformed, descManyTokens},
		{"two tokens wide", []string{"Bearer a    b  "}, "", bearer.Malformed, descManyTokens},
		{"bearer bearer", []string{"Bearer Bearer tok"}, "", bearer.Malformed, descManyTokens},
		{"padding then word", []string{"Bearer tok= x"}, "", bearer.Malformed, descManyTokens},
		{"padding then more", []string{"Bearer tok==x"}, "", bearer.Malformed, descInvalidChar},
		{"padding only", []string{"Bearer ="}, "", bearer.Malformed, descInvalidChar},
		{"leading padding", []string{"Bearer =tok"}, "", bearer.Malformed, descInvalidChar},
		{"comma", []string{"Bearer a,b"}, "", bearer.Malformed, descInvalidChar},
		{"comma list", []string{"Bearer a, Bearer b"}, "", bearer.Malformed, descInvalidChar},
		{"quoted", []string{`Bearer "tok"`}, "", bearer.Malformed, descInvalidChar},
		{"colon", []string{"Bearer a:b"}, "", bearer.Malformed, descInvalidChar},
		{"semicolon", []string{"Bearer a;b"}, "", bearer.Malformed, descInvalidChar},
		{"percent", []string{"Bearer a%20b"}, "", bearer.Malformed, descInvalidChar},
		{"backslash", []string{`Bearer a\b`}, "", bearer.Malformed, descInvalidChar},
		{"auth-param", []string{`Bearer realm="x"`}, "", bearer.Malformed, descInvalidChar},
		{"non-ASCII", []string{"Bearer tokén"}, "", bearer.Malformed, descInvalidChar},
		{"cyrillic look-alike", []string{"Bearer sk_livе_x"}, "", bearer.Malformed, descInvalidChar},
		{"fullwidth", []string{"Bearer ｓk"}, "", bearer.Malformed, descInvalidChar},
		{"no-break space", []string{"Bearer\u00a0tok"}, "", bearer.Missing, ""}, // scheme is "Bearer\u00a0tok"
		{"no-break space in token", []string{"Bearer a\u00a0b"}, "", bearer.Malformed, descInvalidChar},
		{"byte 0xff", []string{"Bearer a\xffb"}, "", bearer.Malformed, descInvalidChar},
		{"byte 0x80", []string{"Bearer \x80"}, "", bearer.Malformed, descInvalidChar},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token, status, desc := bearer.Parse(tt.values)
			if token != tt.token || status != tt.status || desc != tt.desc {
				t.Errorf("Parse(%q) = %q, %v, %q; want %q, %v, %q",
					tt.values, token, status, desc, tt.token, tt.status, tt.desc)
			}
			rt, rs, rd := reference(tt.values)
			if rt != tt.token || rs != tt.status || rd != tt.desc {
				t.Errorf("reference(%q) = %q, %v, %q; table says %q, %v, %q",
					tt.values, rt, rs, rd, tt.token, tt.status, tt.desc)
			}
		})
	}
}

// TestParseFromRequest goes through net/http header handling, as a caller
// would.
func TestParseFromRequest(t *testing.T) {
	r, _ := http.NewRequest("GET", "/", nil)
	if _, s, _ := bearer.Parse(r.Header.Values("Authorization")); s != bearer.Missing {
		t.Errorf("no header: status %v", s)
	}
	r.Header.Set("Authorization", "Bearer "+apiToken)
	if tok, s, _ := bearer.Parse(r.Header.Values("Authorization")); s != bearer.OK || tok != apiToken {
		t.Errorf("one header: %q, %v", tok, s)
	}
	if tok, s, _ := bearer.Parse(r.Header["Authorization"]); s != bearer.OK || tok != apiToken {
		t.Errorf("one header via map: %q, %v", tok, s)
	}
	r.Header.Add("Authorization", "Bearer "+apiToken)
	if _, s, d := bearer.Parse(r.Header.Values("Authorization")); s != bearer.Malformed || d != descMultiple {
		t.Errorf("two headers: %v, %q", s, d)
	}
}

func TestDescriptionsAreSecretFree(t *testing.T) {
	for d := range descriptions {
		if strings.Contains(d, "sk_") || strings.ContainsAny(d, "\"\\\r\n") {
			t.Errorf("description %q", d)
		}
	}
	for _, v := range []string{"Bearer " + apiToken + " x", "Bearer " + apiToken + ",", "Bearer " + apiToken + "\x00"} {
		_, s, d := bearer.Parse([]string{v})
		if s != bearer.Malformed || !descriptions[d] || strings.Contains(d, apiToken[8:16]) {
			t.Errorf("Parse(%q) = %v, %q", v, s, d)
		}
	}
}

func TestStatusString(t *testing.T) {
	for s, want := range map[bearer.Status]string{bearer.Missing: "missing", bearer.OK: "ok",
		bearer.Malformed: "malformed", 3: "invalid"} {
		if s.String() != want {
			t.Errorf("Status(%d).String() = %q, want %q", uint8(s), s.String(), want)
		}
	}
}

func TestParseNoAllocs(t *testing.T) {
	ok := []string{"Bearer " + apiToken}
	bad := []string{"Bearer a b"}
	basic := []string{"Basic dXNlcjpwYXNz"}
	if n := testing.AllocsPerRun(100, func() {
		bearer.Parse(ok)
		bearer.Parse(bad)
		bearer.Parse(basic)
		bearer.Parse(nil)
	}); n != 0 {
		t.Errorf("Parse allocates %v times", n)
	}
}

func BenchmarkParse(b *testing.B) {
	values := []string{"Bearer " + apiToken}
	b.ReportAllocs()
	var tok string
	var s bearer.Status
	for b.Loop() {
		tok, s, _ = bearer.Parse(values)
	}
	if s != bearer.OK || tok != apiToken {
		b.Fatal(tok, s)
	}
}

func BenchmarkParseMaxLength(b *testing.B) {
	values := []string{"Bearer " + strings.Repeat("a", bearer.MaxLength-len("Bearer "))}
	b.ReportAllocs()
	var s bearer.Status
	for b.Loop() {
		_, s, _ = bearer.Parse(values)
	}
	if s != bearer.OK {
		b.Fatal(s)
	}
}

func isB64(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.IndexByte("-._~+/", c) >= 0
}

func FuzzParse(f *testing.F) {
	for _, seed := range []struct {
		a, b string
		n    uint8
	}{
		{"Bearer " + apiToken, "", 1},
		{"bearer tok=", "", 1},
		{"Bearer  a.b.c ", "", 1},
		{"Bearer tok==x", "", 1},
		{"Bearer a b", "", 1},
		{"Bearer\ttok", "", 1},
		{"Bearer", "", 1},
		{"Basic dXNlcjpwYXNz", "", 1},
		{"Bearer tokén", "", 1},
		{"", "", 0},
		{"", "", 1},
		{"Bearer tok", "Bearer tok", 2},
		{"Bearer a", "Basic b", 2},
	} {
		f.Add(seed.a, seed.b, seed.n)
	}
	f.Fuzz(func(t *testing.T, a, b string, n uint8) {
		var values []string
		switch n % 3 {
		case 1:
			values = []string{a}
		case 2:
			values = []string{a, b}
		}
		token, status, desc := bearer.Parse(values)
		if rt, rs, rd := reference(values); rt != token || rs != status || rd != desc {
			t.Fatalf("Parse(%q) = %q, %v, %q; reference %q, %v, %q",
				values, token, status, desc, rt, rs, rd)
		}
		switch status {
		case bearer.OK:
			if len(values) != 1 {
				t.Fatalf("OK with %d values", len(values))
			}
			if token == "" || !strings.Contains(values[0], token) {
				t.Fatalf("Parse(%q) = %q: not a non-empty substring", values, token)
			}
			body := strings.TrimRight(token, "=")
			if body == "" {
				t.Fatalf("Parse(%q) = %q: padding only", values, token)
			}
			for i := 0; i < len(body); i++ {
				if !isB64(body[i]) {
					t.Fatalf("Parse(%q) = %q: byte %#x outside b64token", values, token, body[i])
				}
			}
			if desc != "" {
				t.Fatalf("OK with description %q", desc)
			}
			// The value is "Bearer" (any case), spaces, the token,
			// optional surrounding spaces: nothing else.
			v := strings.Trim(values[0], " ")
			if len(v) < 7 || !strings.EqualFold(v[:6], "bearer") || v[6] != ' ' ||
				strings.TrimLeft(v[6:], " ") != token {
				t.Fatalf("Parse(%q) = %q: value is not Bearer SP token", values, token)
			}
		case bearer.Missing:
			if token != "" || desc != "" {
				t.Fatalf("Missing with %q, %q", token, desc)
			}
			if len(values) > 1 {
				t.Fatalf("Missing with %d values", len(values))
			}
		case bearer.Malformed:
			if token != "" || !descriptions[desc] {
				t.Fatalf("Malformed with %q, %q", token, desc)
			}
		default:
			t.Fatalf("status %d", status)
		}
	})
}
