package identity

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/deplo-sh/deplo-auth/internal/httptoken"
)

// The signature format.
const (
	// canonicalTag is the first line of the canonical string.
	canonicalTag = "deplo-identity-v1"
	// sigVersion is the first word of the signature header.
	sigVersion = "v1"
	// macLen is the length of an HMAC-SHA256.
	macLen = sha256.Size
	// sigTextLen is the length of the unpadded base64url MAC.
	sigTextLen = 43
	// maxSignatureLen bounds the signature header value.
	maxSignatureLen = 256
)

// MinSecretLen is the shortest secret a Key may have, in bytes.
const MinSecretLen = 32

// MaxKeyIDLen is the longest key id, in bytes.
const MaxKeyIDLen = 64

// b64 encodes and decodes the MAC: base64url without padding, refusing
// non-zero trailing bits so that each MAC has exactly one spelling.
var b64 = base64.RawURLEncoding.Strict()

// Key is a shared HMAC key. The same keys are configured on the gateway
// (Signer) and on every upstream (Verifier).
type Key struct {
	// ID names the key in the signature header: 1 to 64 bytes of
	// A-Z a-z 0-9 . _ -
	ID string
	// Secret is the HMAC-SHA256 key: at least MinSecretLen bytes, used as
	// they are (a secret configured as text is its UTF-8 bytes, not decoded).
	Secret []byte
}

func (k Key) validate() error {
	if !validKeyID(k.ID) {
		return fmt.Errorf("%w: key id %q: want 1 to %d of A-Z a-z 0-9 . _ -", ErrConfig, k.ID, MaxKeyIDLen)
	}
	if len(k.Secret) < MinSecretLen {
		return fmt.Errorf("%w: key %q: secret shorter than %d bytes", ErrConfig, k.ID, MinSecretLen)
	}
	return nil
}

func validKeyID(id string) bool {
	if id == "" || len(id) > MaxKeyIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// ParseKeys parses keys written as "kid1:secret1,kid2:secret2" (the form of
// DEPLO_IDENTITY_KEYS). Each secret is the text after the first ":" of its
// entry, used as bytes; space around entries is ignored. The first key is
// the one a Signer signs with. An empty list, a bad id, a short secret or a
// repeated id is an error (ErrConfig).
func ParseKeys(s string) ([]Key, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf("%w: no keys", ErrConfig)
	}
	var keys []Key
	for _, entry := range strings.Split(s, ",") {
		entry = strings.TrimSpace(entry)
		id, secret, ok := strings.Cut(entry, ":")
		if !ok {
			return nil, fmt.Errorf("%w: key entry %d: want kid:secret", ErrConfig, len(keys)+1)
		}
		keys = append(keys, Key{ID: id, Secret: []byte(secret)})
	}
	if err := validateKeys(keys); err != nil {
		return nil, err
	}
	return keys, nil
}

func validateKeys(keys []Key) error {
	if len(keys) == 0 {
		return fmt.Errorf("%w: no keys", ErrConfig)
	}
	for i, k := range keys {
		if err := k.validate(); err != nil {
			return err
		}
		for _, o := range keys[:i] {
			if o.ID == k.ID {
				return fmt.Errorf("%w: key id %q configured twice", ErrConfig, k.ID)
			}
		}
	}
	return nil
}

// keyState holds one key's HMAC pads. The MAC is computed straight from
// them (RFC 2104) over a stack buffer: signing and verifying allocate
// nothing and need no pool of keyed hashes, which every GC cycle would
// empty (re-keying HMAC costs more than the signature itself).
type keyState struct {
	id         string
	ipad, opad [sha256.BlockSize]byte
}

func newKeyState(k Key) *keyState {
	ks := &keyState{id: k.ID}
	key := k.Secret
	if len(key) > sha256.BlockSize {
		sum := sha256.Sum256(key)
		key = sum[:]
	}
	copy(ks.ipad[:], key)
	copy(ks.opad[:], key)
	for i := range ks.ipad {
		ks.ipad[i] ^= 0x36
		ks.opad[i] ^= 0x5c
	}
	return ks
}

// mac returns HMAC-SHA256(key, canonical string).
func (ks *keyState) mac(ts int64, method, path string, vals *[numFields]string) [macLen]byte {
	var stack [512]byte // the inner block and a typical canonical string
	b := append(stack[:0], ks.ipad[:]...)
	b = appendCanonical(b, ks.id, ts, method, path, vals)
	inner := sha256.Sum256(b)
	var outer [sha256.BlockSize + sha256.Size]byte
	copy(outer[:], ks.opad[:])
	copy(outer[sha256.BlockSize:], inner[:])
	return sha256.Sum256(outer[:])
}

// sign returns the signature header value.
func (ks *keyState) sign(ts int64, method, path string, vals *[numFields]string) string {
	sum := ks.mac(ts, method, path, vals)
	var stack [128]byte
	b := append(stack[:0], sigVersion+" kid="...)
	b = append(b, ks.id...)
	b = append(b, " ts="...)
	b = strconv.AppendInt(b, ts, 10)
	b = append(b, " sig="...)
	b = b64.AppendEncode(b, sum[:])
	return string(b)
}

// verify reports whether sh carries the MAC of the request, comparing in
// constant time. sh comes from parseSignature, which checked the alphabet
// and the trailing bits of sh.sig.
func (ks *keyState) verify(sh *signatureHeader, method, path string, vals *[numFields]string) bool {
	var stack [sigTextLen]byte
	var got [macLen]byte
	n, err := b64.Decode(got[:], append(stack[:0], sh.sig...))
	if err != nil || n != macLen {
		return false
	}
	want := ks.mac(sh.ts, method, path, vals)
	return hmac.Equal(want[:], got[:])
}

// appendCanonical appends the canonical string: ten lines joined by "\n",
// no trailing newline (see the package documentation).
func appendCanonical(b []byte, kid string, ts int64, method, path string, vals *[numFields]string) []byte {
	b = append(b, canonicalTag...)
	b = append(b, '\n')
	b = append(b, kid...)
	b = append(b, '\n')
	b = strconv.AppendInt(b, ts, 10)
	b = append(b, '\n')
	b = append(b, method...)
	b = append(b, '\n')
	b = append(b, path...)
	for _, v := range vals {
		b = append(b, '\n')
		b = append(b, v...)
	}
	return b
}

// Canonical returns the canonical string that the signature covers, for
// debugging and for other implementations (the test vectors).
func Canonical(kid string, ts int64, method, path string, id Identity) (string, error) {
	if !validKeyID(kid) || ts < 0 || ts >= 1e18 {
		return "", fmt.Errorf("%w: key id or timestamp", ErrMalformed)
	}
	if err := checkRequestLine(method, path); err != nil {
		return "", err
	}
	vals, err := id.fields()
	if err != nil {
		return "", err
	}
	return string(appendCanonical(nil, kid, ts, method, path, &vals)), nil
}

// signatureHeader is a parsed signature header value.
type signatureHeader struct {
	kid string
	ts  int64
	sig string
}

// parseSignature parses "v1 kid=<kid> ts=<ts> sig=<sig>" strictly: single
// spaces, this order, a valid key id, ts in canonical decimal (no sign, no
// leading zero), sig 43 characters of base64url. Anything else is
// ErrMalformed.
func parseSignature(v string) (signatureHeader, error) {
	var sh signatureHeader
	bad := func(what string) (signatureHeader, error) {
		return signatureHeader{}, fmt.Errorf("%w: signature header: %s", ErrMalformed, what)
	}
	if len(v) > maxSignatureLen {
		return bad("too long")
	}
	rest, ok := strings.CutPrefix(v, sigVersion+" kid=")
	if !ok {
		return bad("not v1 kid=")
	}
	var tsText string
	if sh.kid, rest, ok = strings.Cut(rest, " ts="); !ok || !validKeyID(sh.kid) {
		return bad("bad kid")
	}
	if tsText, sh.sig, ok = strings.Cut(rest, " sig="); !ok {
		return bad("no sig")
	}
	if tsText == "" || len(tsText) > 18 || (tsText[0] == '0' && len(tsText) > 1) {
		return bad("bad ts")
	}
	for i := 0; i < len(tsText); i++ {
		if c := tsText[i]; c < '0' || c > '9' {
			return bad("bad ts")
		}
		sh.ts = sh.ts*10 + int64(tsText[i]-'0')
	}
	if len(sh.sig) != sigTextLen {
		return bad("bad sig length")
	}
	for i := 0; i < len(sh.sig); i++ {
		switch c := sh.sig[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return bad("bad sig character")
		}
	}
	// The last character carries 4 unused bits that must be zero (one
	// spelling per MAC): it must be one of A E I M Q U Y c g k o s w 0 4 8.
	if strings.IndexByte("AEIMQUYcgkosw048", sh.sig[sigTextLen-1]) < 0 {
		return bad("bad sig padding bits")
	}
	return sh, nil
}

// formatSignature is the inverse of parseSignature.
func formatSignature(sh signatureHeader) string {
	return sigVersion + " kid=" + sh.kid + " ts=" + strconv.FormatInt(sh.ts, 10) + " sig=" + sh.sig
}

// requestPath returns the path a request goes out with and arrives with:
// the escaped path, "/" when empty (as the request line carries it).
func requestPath(u *url.URL) (string, error) {
	if u == nil {
		return "", fmt.Errorf("%w: no URL", ErrMalformed)
	}
	if u.Opaque != "" {
		return "", fmt.Errorf("%w: opaque URL", ErrMalformed)
	}
	p := u.EscapedPath()
	if p == "" {
		p = "/"
	}
	return p, nil
}

// checkRequestLine checks that method is a token and path is printable
// ASCII without space: both then cross the wire unchanged and contain no
// "\n".
func checkRequestLine(method, path string) error {
	if method == "" || len(method) > 64 {
		return fmt.Errorf("%w: method: empty or too long", ErrMalformed)
	}
	for i := 0; i < len(method); i++ {
		if !httptoken.Char(method[i]) {
			return fmt.Errorf("%w: method: not a token", ErrMalformed)
		}
	}
	if path == "" || len(path) > 16<<10 {
		return fmt.Errorf("%w: path: empty or too long", ErrMalformed)
	}
	for i := 0; i < len(path); i++ {
		if c := path[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("%w: path: not escaped", ErrMalformed)
		}
	}
	return nil
}
