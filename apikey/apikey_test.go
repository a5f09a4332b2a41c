package apikey_test

import (
	"crypto/sha256"
	"errors"
	"hash/crc32"
	"strings"
	"testing"

	"github.com/deplo-sh/deplo-auth/apikey"
)

const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// Known-answer vectors, computed once outside Go (Python zlib.crc32 and a
// separate base62 encoder) and hard-coded here.
var knownAnswers = []struct {
	body string
	crc  uint32
	sum  string
}{
	{"sk_live_0123456789ABCDEFGHIJKLMNOP", 0x8f37c557, "2cbtEV"},
	{"sk_live_aaaaaaaaaaaaaaaaaaaaaaaaaa", 0x902b2752, "2dgodu"},
	{"sk_live_Zy9xW8vU7tS6rQ5pO4nM3lK2jI", 0xddf861a6, "441hcE"},
	{"sk_live_deplo001XXXXXXXXXXXXXXXXXX", 0x15379454, "0O5aUe"}, // < 62^5: padded
}

// refChecksum is an independent reference: hash/crc32 and a plain base62
// loop, sharing no code with the package.
func refChecksum(body string) string {
	n := crc32.ChecksumIEEE([]byte(body))
	var out []byte
	for len(out) < 6 {
		out = append([]byte{alphabet[n%62]}, out...)
		n /= 62
	}
	return string(out)
}

func mustGenerate(t testing.TB) string {
	t.Helper()
	tok, err := apikey.Generate()
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return tok
}

func TestKnownAnswers(t *testing.T) {
	for _, ka := range knownAnswers {
		if got := crc32.ChecksumIEEE([]byte(ka.body)); got != ka.crc {
			t.Errorf("crc32(%q) = %#x, vector says %#x", ka.body, got, ka.crc)
		}
		if got := refChecksum(ka.body); got != ka.sum {
			t.Errorf("refChecksum(%q) = %q, vector says %q", ka.body, got, ka.sum)
		}
		if got := apikey.Checksum(ka.body); got != ka.sum {
			t.Errorf("Checksum(%q) = %q, want %q", ka.body, got, ka.sum)
		}
		tok := ka.body + ka.sum
		if err := apikey.Check(tok, true); err != nil {
			t.Errorf("Check(%q) = %v", tok, err)
		}
	}
	// The literal token, written out whole.
	const literal = "sk_live_0123456789ABCDEFGHIJKLMNOP2cbtEV"
	if err := apikey.Check(literal, true); err != nil {
		t.Errorf("Check(literal) = %v", err)
	}
}

func TestChecksumMatchesReference(t *testing.T) {
	for i := 0; i < 200; i++ {
		tok := mustGenerate(t)
		body := tok[:34]
		if got, want := apikey.Checksum(body), refChecksum(body); got != want {
			t.Fatalf("Checksum(%q) = %q, reference %q", body, got, want)
		}
		if tok[34:] != refChecksum(body) {
			t.Fatalf("Generate produced %q, checksum should be %q", tok, refChecksum(body))
		}
	}
	// Checksum is defined for any body, not only 34 bytes: every length
	// exercises both the 8-byte steps and the byte-by-byte tail.
	long := strings.Repeat(mustGenerate(t)+"\x00\xff", 3)
	for n := 0; n <= len(long); n++ {
		body := long[:n]
		if got, want := apikey.Checksum(body), refChecksum(body); got != want {
			t.Errorf("Checksum(%q) = %q, reference %q", body, got, want)
		}
	}
}

func TestHasPrefix(t *testing.T) {
	for s, want := range map[string]bool{
		"":                         false,
		"sk_live":                  false,
		"sk_live_":                 true,
		"sk_live_x":                true,
		"SK_LIVE_abc":              false,
		"sk_test_abc":              false,
		"eyJhbGciOiJIUzI1NiJ9.e30": false,
	} {
		if got := apikey.HasPrefix(s); got != want {
			t.Errorf("HasPrefix(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestCheck(t *testing.T) {
	valid := knownAnswers[0].body + knownAnswers[0].sum
	// with replaces valid[i:i+len(s)] by s.
	with := func(i int, s string) string { return valid[:i] + s + valid[i+len(s):] }

	tests := []struct {
		name  string
		token string
		err   error // with checksum on
		errNo error // with checksum off
	}{
		{"valid", valid, nil, nil},
		{"empty", "", apikey.ErrPrefix, apikey.ErrPrefix},
		{"prefix only", "sk_live_", apikey.ErrLength, apikey.ErrLength},
		{"test prefix", "sk_test_" + valid[8:], apikey.ErrPrefix, apikey.ErrPrefix},
		{"upper prefix", "SK_LIVE_" + valid[8:], apikey.ErrPrefix, apikey.ErrPrefix},
		{"no underscore", "sk_live" + valid[8:], apikey.ErrPrefix, apikey.ErrPrefix},
		{"jwt", "eyJhbGciOiJIUzI1NiJ9.e30.abc", apikey.ErrPrefix, apikey.ErrPrefix},
		{"length 39", valid[:39], apikey.ErrLength, apikey.ErrLength},
		{"length 41", valid + "0", apikey.ErrLength, apikey.ErrLength},
		{"length 33", valid[:33], apikey.ErrLength, apikey.ErrLength},
		{"length 80", valid + valid, apikey.ErrLength, apikey.ErrLength},
		{"dash", with(10, "-"), apikey.ErrAlphabet, apikey.ErrAlphabet},
		{"underscore", with(20, "_"), apikey.ErrAlphabet, apikey.ErrAlphabet},
		{"plus", with(33, "+"), apikey.ErrAlphabet, apikey.ErrAlphabet},
		{"slash in checksum", with(39, "/"), apikey.ErrAlphabet, apikey.ErrAlphabet},
		{"equals", with(39, "="), apikey.ErrAlphabet, apikey.ErrAlphabet},
		{"space", with(8, " "), apikey.ErrAlphabet, apikey.ErrAlphabet},
		{"NUL", with(15, "\x00"), apikey.ErrAlphabet, apikey.ErrAlphabet},
		{"DEL", with(15, "\x7f"), apikey.ErrAlphabet, apikey.ErrAlphabet},
		{"byte 0xff", with(15, "\xff"), apikey.ErrAlphabet, apikey.ErrAlphabet},
		{"e acute", with(20, "é"), apikey.ErrAlphabet, apikey.ErrAlphabet},
		{"fullwidth A", with(20, "Ａ"), apikey.ErrAlphabet, apikey.ErrAlphabet},
		{"cyrillic a", with(36, "а"), apikey.ErrAlphabet, apikey.ErrAlphabet},
		{"non-ASCII length 41", valid[:39] + "é", apikey.ErrLength, apikey.ErrLength},
		{"bad checksum", with(39, "W"), apikey.ErrChecksum, nil},
		{"swapped checksum", with(34, "c2"), apikey.ErrChecksum, nil},
		{"all zero checksum", with(34, "000000"), apikey.ErrChecksum, nil},
		{"max checksum", with(34, "zzzzzz"), apikey.ErrChecksum, nil},
		{"checksum over 2^32", with(34, "4gfFC4"), apikey.ErrChecksum, nil}, // 2^32 exactly
		{"legacy token", "sk_live_" + strings.Repeat("A", 32), apikey.ErrChecksum, nil},
	}
	// The right checksum plus 2^32: equal modulo 2^32, so a decoder that
	// truncated to 32 bits would accept it.
	wrapped := uint64(knownAnswers[0].crc) + 1<<32
	var enc [6]byte
	for i := 5; i >= 0; i-- {
		enc[i] = alphabet[wrapped%62]
		wrapped /= 62
	}
	tests = append(tests, struct {
		name  string
		token string
		err   error
		errNo error
	}{"checksum plus 2^32", knownAnswers[0].body + string(enc[:]), apikey.ErrChecksum, nil})

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := apikey.Check(tt.token, true); err != tt.err {
				t.Errorf("Check(%q, true) = %v, want %v", tt.token, err, tt.err)
			}
			if err := apikey.Check(tt.token, false); err != tt.errNo {
				t.Errorf("Check(%q, false) = %v, want %v", tt.token, err, tt.errNo)
			}
		})
	}
}

// TestCheckSingleChange replaces every character after the prefix by every
// other alphabet character: each change must fail the checksum (and only
// the checksum).
func TestCheckSingleChange(t *testing.T) {
	tokens := []string{knownAnswers[0].body + knownAnswers[0].sum, knownAnswers[3].body + knownAnswers[3].sum}
	for range 3 {
		tokens = append(tokens, mustGenerate(t))
	}
	for _, tok := range tokens {
		if err := apikey.Check(tok, true); err != nil {
			t.Fatalf("Check(%q) = %v", tok, err)
		}
		b := []byte(tok)
		for i := len(apikey.Prefix); i < apikey.Length; i++ {
			orig := b[i]
			for j := 0; j < len(alphabet); j++ {
				if alphabet[j] == orig {
					continue
				}
				b[i] = alphabet[j]
				s := string(b)
				if err := apikey.Check(s, true); err != apikey.ErrChecksum {
					t.Fatalf("Check(%q, true) = %v, want ErrChecksum", s, err)
				}
				if err := apikey.Check(s, false); err != nil {
					t.Fatalf("Check(%q, false) = %v, want nil", s, err)
				}
			}
			b[i] = orig
		}
	}
}

func TestErrorsDoNotEchoToken(t *testing.T) {
	for _, err := range []error{apikey.ErrPrefix, apikey.ErrLength, apikey.ErrAlphabet, apikey.ErrChecksum,
		apikey.ErrHashPrefix, apikey.ErrHashLength, apikey.ErrHashHex} {
		if strings.Contains(err.Error(), knownAnswers[0].body[8:16]) {
			t.Errorf("error %q contains token material", err)
		}
	}
	// Errors are distinct sentinels.
	if errors.Is(apikey.ErrChecksum, apikey.ErrAlphabet) || errors.Is(apikey.ErrLength, apikey.ErrPrefix) {
		t.Error("sentinel errors are not distinct")
	}
}

func TestGenerate(t *testing.T) {
	const n = 10000
	seen := make(map[string]bool, n)
	var counts [256]int
	for range n {
		tok := mustGenerate(t)
		if len(tok) != apikey.Length || !apikey.HasPrefix(tok) {
			t.Fatalf("Generate() = %q: bad shape", tok)
		}
		if err := apikey.Check(tok, true); err != nil {
			t.Fatalf("Check(Generate()) = %v for %q", err, tok)
		}
		if seen[tok] {
			t.Fatalf("Generate returned %q twice", tok)
		}
		seen[tok] = true
		for i := len(apikey.Prefix); i < 34; i++ {
			counts[tok[i]]++
		}
	}
	// Each of the 62 characters should appear n*26/62 ≈ 4194 times (σ ≈ 64).
	// ±8% is about 5σ: a uniform source essentially never fails, while a
	// modulo-biased one (byte % 62 over-weights '0'-'7' by 25%) does.
	expect := float64(n*26) / 62
	for i := 0; i < len(alphabet); i++ {
		c := float64(counts[alphabet[i]])
		if c == 0 {
			t.Errorf("character %q never generated", alphabet[i])
		} else if c < expect*0.92 || c > expect*1.08 {
			t.Errorf("character %q generated %v times, expected about %.0f", alphabet[i], c, expect)
		}
	}
	total := 0
	for i := 0; i < len(alphabet); i++ {
		total += counts[alphabet[i]]
	}
	if total != n*26 {
		t.Errorf("%d random characters outside the alphabet", n*26-total)
	}
}

func TestSum(t *testing.T) {
	for _, s := range []string{"", "x", knownAnswers[0].body + knownAnswers[0].sum,
		strings.Repeat("a", 64), strings.Repeat("b", 65), strings.Repeat("c", 1000)} {
		if got, want := apikey.Sum(s), apikey.Hash(sha256.Sum256([]byte(s))); got != want {
			t.Errorf("Sum(%d bytes) = %x, want %x", len(s), got, want)
		}
	}
	// sha256("") known answer, through String.
	const empty = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	if got := apikey.Sum("").String(); got != empty {
		t.Errorf(`Sum("").String() = %q, want %q`, got, empty)
	}
}

func TestParseHash(t *testing.T) {
	for range 20 {
		h := apikey.Sum(mustGenerate(t))
		s := h.String()
		if len(s) != 7+64 || !strings.HasPrefix(s, "sha256:") || strings.ToLower(s) != s {
			t.Fatalf("String() = %q: bad form", s)
		}
		got, err := apikey.ParseHash(s)
		if err != nil || got != h {
			t.Fatalf("ParseHash(%q) = %x, %v; want %x", s, got, err, h)
		}
	}

	good := apikey.Sum("x").String()
	hexpart := good[7:]
	tests := []struct {
		name string
		in   string
		err  error
	}{
		{"empty", "", apikey.ErrHashPrefix},
		{"no prefix", hexpart, apikey.ErrHashPrefix},
		{"upper prefix", "SHA256:" + hexpart, apikey.ErrHashPrefix},
		{"sha512 prefix", "sha512:" + hexpart, apikey.ErrHashPrefix},
		{"no colon", "sha256" + hexpart, apikey.ErrHashPrefix},
		{"63 hex", "sha256:" + hexpart[:63], apikey.ErrHashLength},
		{"65 hex", "sha256:" + hexpart + "0", apikey.ErrHashLength},
		{"prefix only", "sha256:", apikey.ErrHashLength},
		{"uppercase hex", "sha256:" + strings.ToUpper(hexpart), apikey.ErrHashHex},
		{"one uppercase", "sha256:" + hexpart[:63] + "A", apikey.ErrHashHex},
		{"non-hex letter", "sha256:g" + hexpart[1:], apikey.ErrHashHex},
		{"space", "sha256: " + hexpart[1:], apikey.ErrHashHex},
		{"trailing newline", "sha256:" + hexpart[:63] + "\n", apikey.ErrHashHex},
		{"non-ASCII", "sha256:é" + hexpart[2:], apikey.ErrHashHex},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := apikey.ParseHash(tt.in)
			if err != tt.err {
				t.Errorf("ParseHash(%q) = %v, want %v", tt.in, err, tt.err)
			}
			if h != (apikey.Hash{}) {
				t.Errorf("ParseHash(%q) returned a non-zero hash with an error", tt.in)
			}
			if strings.Contains(err.Error(), hexpart[8:24]) {
				t.Errorf("error %q echoes the input", err)
			}
		})
	}
}

func TestNoAllocs(t *testing.T) {
	tok := knownAnswers[0].body + knownAnswers[0].sum
	bad := tok[:39] + "W"
	if n := testing.AllocsPerRun(100, func() {
		_ = apikey.Check(tok, true)
		_ = apikey.Check(bad, true)
		_ = apikey.Check(tok, false)
		_ = apikey.Check("sk_test_", true)
	}); n != 0 {
		t.Errorf("Check allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { _ = apikey.Sum(tok) }); n != 0 {
		t.Errorf("Sum allocates %v times", n)
	}
}

var sink any

func BenchmarkCheck(b *testing.B) {
	tok := mustGenerate(b)
	b.ReportAllocs()
	var err error
	for b.Loop() {
		err = apikey.Check(tok, true)
	}
	if err != nil {
		b.Fatal(err)
	}
}

func BenchmarkSum(b *testing.B) {
	tok := mustGenerate(b)
	b.ReportAllocs()
	var h apikey.Hash
	for b.Loop() {
		h = apikey.Sum(tok)
	}
	sink = h
}

func BenchmarkGenerate(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		mustGenerate(b)
	}
}

func FuzzCheck(f *testing.F) {
	for _, ka := range knownAnswers {
		f.Add(ka.body + ka.sum)
		f.Add(ka.body)
	}
	for _, s := range []string{"", "sk_live_", "sk_test_0123456789ABCDEFGHIJKLMNOP2cbtEV",
		"sk_live_0123456789ABCDEFGHIJKLMNOP2cbtEW", "sk_live_0123456789ABCDEFGHIJKLMNO\xff2cbtEV",
		"sk_live_" + strings.Repeat("z", 32), "sk_live_é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := apikey.Check(s, true)
		errNo := apikey.Check(s, false)
		if err == nil {
			if len(s) != apikey.Length || !apikey.HasPrefix(s) {
				t.Fatalf("Check accepted %q: bad shape", s)
			}
			if apikey.Checksum(s[:34]) != s[34:] {
				t.Fatalf("Check accepted %q: checksum should be %q", s, apikey.Checksum(s[:34]))
			}
			if errNo != nil {
				t.Fatalf("Check(%q, false) = %v but Check(%q, true) = nil", s, errNo, s)
			}
		}
		if errNo == nil {
			if len(s) != apikey.Length || !apikey.HasPrefix(s) {
				t.Fatalf("Check(%q, false) accepted a bad shape", s)
			}
			for i := len(apikey.Prefix); i < len(s); i++ {
				if !strings.Contains(alphabet, s[i:i+1]) {
					t.Fatalf("Check(%q, false) accepted byte %#x", s, s[i])
				}
			}
			if (err == nil) != (apikey.Checksum(s[:34]) == s[34:]) {
				t.Fatalf("Check(%q, true) = %v disagrees with Checksum", s, err)
			}
		} else if err != errNo {
			t.Fatalf("Check(%q): %v with checksum, %v without", s, err, errNo)
		}
		if (err == nil) != (errNo == nil && refChecksum(s[:min(len(s), 34)]) == s[min(len(s), 34):]) {
			t.Fatalf("Check(%q, true) = %v disagrees with the reference checksum", s, err)
		}
		if apikey.HasPrefix(s) != strings.HasPrefix(s, "sk_live_") {
			t.Fatalf("HasPrefix(%q) wrong", s)
		}
	})
}
