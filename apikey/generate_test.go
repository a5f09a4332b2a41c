package apikey

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// TestGenerateRejection feeds generate chosen bytes: those whose low six
// bits are 62 or 63 must be skipped, the others map to alphabet[b&0x3F].
func TestGenerateRejection(t *testing.T) {
	var in []byte
	var want strings.Builder
	want.WriteString(Prefix)
	for i := 0; i < randomLen; i++ {
		// Before every accepted byte, two rejected ones (62, 63, with
		// high bits set too).
		in = append(in, 0x3E|byte(i%4)<<6, 0x3F|byte(i%4)<<6)
		v := byte(i*7) % 62
		in = append(in, v|byte(i%4)<<6)
		want.WriteByte(alphabet[v])
	}
	in = append(in, make([]byte, 48*3)...) // padding for whole reads
	tok, err := generate(bytes.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	body := want.String()
	if tok != body+Checksum(body) {
		t.Errorf("generate = %q, want %q", tok, body+Checksum(body))
	}
	if err := Check(tok, true); err != nil {
		t.Errorf("Check(%q) = %v", tok, err)
	}

	// All-rejected input never yields a character; a short reader errors.
	_, err = generate(bytes.NewReader(bytes.Repeat([]byte{0xFF}, 1000)))
	if !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		t.Errorf("generate on exhausted reader: err = %v", err)
	}
}

// TestGenerateUniformMapping runs generate on every possible first byte:
// exactly 8 of the 256 values must be rejected and each of the 62
// characters must be produced by exactly 4 of them, so the mapping has no
// bias.
func TestGenerateUniformMapping(t *testing.T) {
	counts := map[byte]int{}
	rejected := 0
	for b := 0; b < 256; b++ {
		// b, then 2, 3, 4, …: if b is rejected the token starts "23",
		// otherwise it starts with b's character then "2".
		in := []byte{byte(b)}
		for i := 0; i < 47; i++ {
			in = append(in, byte(2+i%60))
		}
		tok, err := generate(bytes.NewReader(in))
		if err != nil {
			t.Fatal(err)
		}
		switch tok[len(Prefix)+1] {
		case '2':
			counts[tok[len(Prefix)]]++
			if want := alphabet[b&0x3F]; tok[len(Prefix)] != want {
				t.Errorf("byte %#x gave %q, want %q", b, tok[len(Prefix)], want)
			}
		case '3':
			rejected++
			if b&0x3F < 62 {
				t.Errorf("byte %#x rejected", b)
			}
		default:
			t.Fatalf("byte %#x: unexpected token %q", b, tok)
		}
	}
	if rejected != 8 || len(counts) != 62 {
		t.Errorf("%d bytes rejected, %d characters reachable; want 8 and 62", rejected, len(counts))
	}
	for c, n := range counts {
		if n != 4 {
			t.Errorf("character %q produced by %d byte values, want 4", c, n)
		}
	}
}
