// Package apikey implements the deplo API token format.
//
// A token is Prefix ("sk_live_") followed by 32 base62 characters: 26 random
// characters drawn uniformly from crypto/rand (about 154 bits), then a
// 6-character checksum. The checksum is the CRC-32 (IEEE) of the ASCII bytes
// of the prefix and the 26 random characters, written in base62 with the
// alphabet 0-9A-Za-z ('0'=0 … '9'=9, 'A'=10 … 'Z'=35, 'a'=36 … 'z'=61), most
// significant digit first, left-padded with '0' to 6 characters. A token is
// therefore Length (40) bytes long.
//
// Check rejects a badly shaped token before any hash, cache or store work.
// Tokens are stored only as their SHA-256 (Sum), written "sha256:<hex>".
//
// No error returned by this package includes the token or the input it
// failed to parse.
package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
)

const (
	// Prefix starts every deplo API token.
	Prefix = "sk_live_"
	// Length is the length in bytes of a token, Prefix included.
	Length = 40
)

const (
	randomLen   = 26                      // random base62 characters after Prefix
	checksumLen = 6                       // base62 checksum characters at the end
	bodyLen     = len(Prefix) + randomLen // bytes covered by the checksum (34)
)

// Errors returned by Check. Their messages never include the token.
var (
	ErrPrefix   = errors.New("apikey: token does not start with " + Prefix)
	ErrLength   = errors.New("apikey: token is not 40 characters long")
	ErrAlphabet = errors.New("apikey: token contains a character outside 0-9A-Za-z")
	ErrChecksum = errors.New("apikey: token checksum does not match")
)

// Errors returned by ParseHash. Their messages never include the input.
var (
	ErrHashPrefix = errors.New(`apikey: token hash does not start with "sha256:"`)
	ErrHashLength = errors.New("apikey: token hash is not 64 hex digits")
	ErrHashHex    = errors.New("apikey: token hash is not lowercase hex")
)

const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// digit maps a byte to its base62 value, or to invalid for any byte outside
// the alphabet (including every byte >= 0x80).
var digit = func() (t [256]uint8) {
	for i := range t {
		t[i] = invalid
	}
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = uint8(i)
	}
	return t
}()

const invalid = 0xFF

// HasPrefix reports whether s is shaped like an API token at all, that is,
// whether it starts with Prefix. It tells API tokens from other bearer
// credentials such as JWTs; it does not validate the token.
func HasPrefix(s string) bool {
	return strings.HasPrefix(s, Prefix)
}

// Check validates the format of token: Prefix, Length, base62 alphabet, and,
// when checksum is true, the CRC-32 checksum. With checksum false only the
// checksum comparison is skipped. The error is one of ErrPrefix, ErrLength,
// ErrAlphabet or ErrChecksum, checked in that order. Check does not allocate.
func Check(token string, checksum bool) error {
	if !HasPrefix(token) {
		return ErrPrefix
	}
	if len(token) != Length {
		return ErrLength
	}
	// OR-ing the table values lets the loop run without a branch per byte:
	// any invalid byte sets the high bit, which no valid digit (< 62) has.
	var bad uint8
	for i := len(Prefix); i < Length; i++ {
		bad |= digit[token[i]]
	}
	if bad&0x80 != 0 {
		return ErrAlphabet
	}
	if !checksum {
		return nil
	}
	var got uint64
	for i := bodyLen; i < Length; i++ {
		got = got*62 + uint64(digit[token[i]])
	}
	if got != uint64(crc(token[:bodyLen])) {
		return ErrChecksum
	}
	return nil
}

// Checksum returns the 6-character base62 checksum of body, which for a token
// is its first 34 bytes (Prefix and the 26 random characters). It is exported
// for tests and tooling.
func Checksum(body string) string {
	var b [checksumLen]byte
	encodeChecksum(&b, crc(body))
	return string(b[:])
}

// encodeChecksum writes c in base62, most significant digit first, padded
// with '0'. 62^6 > 2^32, so six digits always suffice.
func encodeChecksum(b *[checksumLen]byte, c uint32) {
	v := uint64(c)
	for i := checksumLen - 1; i >= 0; i-- {
		b[i] = alphabet[v%62]
		v /= 62
	}
}

// crc is crc32.ChecksumIEEE for a string or a byte slice. It does not call
// hash/crc32, whose []byte argument escapes (converting a string would
// allocate on every Check), but runs the same slicing-by-8 algorithm over
// tables derived from crc32.IEEETable: 8 bytes per step, then byte by byte.
func crc[T ~string | ~[]byte](s T) uint32 {
	t := &crcTable
	c := ^uint32(0)
	for len(s) >= 8 {
		c ^= uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
		c = t[0][s[7]] ^ t[1][s[6]] ^ t[2][s[5]] ^ t[3][s[4]] ^
			t[4][c>>24] ^ t[5][c>>16&0xFF] ^ t[6][c>>8&0xFF] ^ t[7][c&0xFF]
		s = s[8:]
	}
	for i := 0; i < len(s); i++ {
		c = t[0][byte(c)^s[i]] ^ (c >> 8)
	}
	return ^c
}

// crcTable holds the slicing-by-8 tables, built as hash/crc32 builds its
// own: crcTable[0] is the IEEE table, and crcTable[k][i] is crcTable[0][i]
// advanced through k further zero bytes.
var crcTable = func() (t [8][256]uint32) {
	t[0] = *crc32.IEEETable
	for i := 0; i < 256; i++ {
		c := t[0][i]
		for k := 1; k < 8; k++ {
			c = t[0][byte(c)] ^ (c >> 8)
			t[k][i] = c
		}
	}
	return t
}()

// Generate returns a new token whose 26 random characters come from
// crypto/rand, each uniform over the 62-character alphabet.
func Generate() (string, error) {
	return generate(rand.Reader)
}

// generate draws the random characters from r by rejection sampling: each
// byte's low 6 bits are a value in [0, 64); values 62 and 63 are discarded,
// so the accepted values are uniform over [0, 62) with no modulo bias.
func generate(r io.Reader) (string, error) {
	var t [Length]byte
	copy(t[:], Prefix)
	var buf [48]byte // 26 draws need about 27 bytes; one read usually suffices
	n := len(Prefix)
	for n < bodyLen {
		if _, err := io.ReadFull(r, buf[:]); err != nil {
			return "", fmt.Errorf("apikey: reading random bytes: %w", err)
		}
		for _, b := range buf {
			if v := b & 0x3F; v < 62 {
				t[n] = alphabet[v]
				n++
				if n == bodyLen {
					break
				}
			}
		}
	}
	var sum [checksumLen]byte
	encodeChecksum(&sum, crc(t[:bodyLen]))
	copy(t[bodyLen:], sum[:])
	return string(t[:]), nil
}

// Hash is the SHA-256 of a whole token: the only form in which tokens are
// stored.
type Hash [sha256.Size]byte

// Sum returns the SHA-256 of token. It does not allocate for tokens of up to
// 64 bytes (every valid token), which are hashed from a copy on the stack.
func Sum(token string) Hash {
	if len(token) <= 64 {
		var b [64]byte
		n := copy(b[:], token)
		return sha256.Sum256(b[:n])
	}
	return sha256.Sum256([]byte(token))
}

const hashPrefix = "sha256:"

// String returns the stored form of h: "sha256:" followed by 64 lowercase hex
// digits.
func (h Hash) String() string {
	const hexdigits = "0123456789abcdef"
	var b [len(hashPrefix) + 2*sha256.Size]byte
	copy(b[:], hashPrefix)
	for i, v := range h {
		b[len(hashPrefix)+2*i] = hexdigits[v>>4]
		b[len(hashPrefix)+2*i+1] = hexdigits[v&0x0F]
	}
	return string(b[:])
}

// ParseHash parses the stored form written by Hash.String: "sha256:" then
// exactly 64 lowercase hex digits. The error is ErrHashPrefix, ErrHashLength
// or ErrHashHex and never includes s.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if !strings.HasPrefix(s, hashPrefix) {
		return h, ErrHashPrefix
	}
	s = s[len(hashPrefix):]
	if len(s) != 2*len(h) {
		return h, ErrHashLength
	}
	for i := range h {
		hi, ok1 := lowerHex(s[2*i])
		lo, ok2 := lowerHex(s[2*i+1])
		if !ok1 || !ok2 {
			return Hash{}, ErrHashHex
		}
		h[i] = hi<<4 | lo
	}
	return h, nil
}

func lowerHex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}
