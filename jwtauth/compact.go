package jwtauth

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"

	"github.com/deplo-sh/deplo-auth/internal/jsonwire"
)

// MaxTokenLength is the longest token Verify will look at (8 KiB), the same
// bound as the whole Bearer value.
const MaxTokenLength = 8 << 10

// MaxKIDLength bounds the kid header: a longer kid is an unknown key, looked
// up nowhere.
const MaxKIDLength = 256

// b64 decodes base64url without padding and refuses non-zero trailing bits,
// so that every byte string has exactly one accepted encoding. It would skip
// CR and LF; scanCompact refuses them first.
var b64 = base64.RawURLEncoding.Strict()

// b64url marks the 64 characters of the base64url alphabet.
var b64url = func() (t [256]bool) {
	for _, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" {
		t[c] = true
	}
	return t
}()

// LooksLikeJWT reports whether s has the shape of a compact JWS: three
// non-empty base64url segments separated by exactly two dots. It is cheap and
// does not allocate; it decodes nothing, so a true answer proves nothing
// about the token.
func LooksLikeJWT(s string) bool {
	// The dots are found with IndexByte (vectorised) and the characters
	// checked without a branch per byte: this runs on every session
	// request, before the verification cache is consulted.
	i := strings.IndexByte(s, '.')
	if i <= 0 {
		return false
	}
	j := strings.IndexByte(s[i+1:], '.')
	if j <= 0 {
		return false
	}
	j += i + 1
	if j == len(s)-1 || strings.IndexByte(s[j+1:], '.') >= 0 {
		return false
	}
	var bad byte
	k := 0
	for ; k+4 <= len(s); k += 4 {
		bad |= notCompactByte[s[k]] | notCompactByte[s[k+1]] | notCompactByte[s[k+2]] | notCompactByte[s[k+3]]
	}
	for ; k < len(s); k++ {
		bad |= notCompactByte[s[k]]
	}
	return bad == 0
}

// notCompactByte is 1 for every byte that is neither base64url nor a dot.
var notCompactByte = func() (t [256]byte) {
	for c := range t {
		if !b64url[c] && c != '.' {
			t[c] = 1
		}
	}
	return t
}()

// compact is a token split and decoded, before any signature check.
type compact struct {
	signingInput string // header "." payload, as sent
	payload      []byte // decoded, not yet parsed
	sig          []byte
	hdr          header
}

// header holds the JOSE header members this verifier acts on. jwk, jku,
// x5u, x5c and every other member are ignored: keys only ever come from the
// configuration.
type header struct {
	alg    string
	hasAlg bool
	kid    string // "" when absent or empty
	typ    string
	hasTyp bool
}

// scanCompact checks the shape: length, exactly two dots, non-empty
// segments of base64url characters only. It returns the two dot positions.
func scanCompact(token string) (dot1, dot2 int, err *verifyError) {
	if token == "" {
		return 0, 0, errEmpty
	}
	if len(token) > MaxTokenLength {
		return 0, 0, errTooLong
	}
	dot1 = strings.IndexByte(token, '.')
	if dot1 < 0 {
		return 0, 0, errSegments
	}
	rest := strings.IndexByte(token[dot1+1:], '.')
	if rest < 0 {
		return 0, 0, errSegments
	}
	dot2 = dot1 + 1 + rest
	if strings.IndexByte(token[dot2+1:], '.') >= 0 {
		return 0, 0, errSegments
	}
	if dot1 == 0 || dot2 == dot1+1 || dot2 == len(token)-1 {
		return 0, 0, errEmptySegment
	}
	for i := 0; i < len(token); i++ {
		if c := token[i]; !b64url[c] && c != '.' {
			return 0, 0, errAlphabet
		}
	}
	return dot1, dot2, nil
}

func decodeSegment(s string) ([]byte, bool) {
	out := make([]byte, b64.DecodedLen(len(s)))
	n, err := b64.Decode(out, []byte(s))
	if err != nil {
		return nil, false
	}
	return out[:n], true
}

// parseCompact splits and decodes token and parses its header. The payload
// is decoded but not parsed. No cryptography happens here.
func parseCompact(token string) (*compact, *verifyError) {
	dot1, dot2, verr := scanCompact(token)
	if verr != nil {
		return nil, verr
	}
	rawHeader, ok := decodeSegment(token[:dot1])
	if !ok {
		return nil, errBase64
	}
	payload, ok := decodeSegment(token[dot1+1 : dot2])
	if !ok {
		return nil, errBase64
	}
	sig, ok := decodeSegment(token[dot2+1:])
	if !ok {
		return nil, errBase64
	}
	c := &compact{signingInput: token[:dot2], payload: payload, sig: sig}
	if verr := parseHeader(rawHeader, &c.hdr); verr != nil {
		return nil, verr
	}
	return c, nil
}

// isJSONObject reports whether b is one valid JSON value that is an object.
func isJSONObject(b []byte) bool {
	t := bytes.TrimLeft(b, " \t\r\n")
	return len(t) > 0 && t[0] == '{' && json.Valid(b)
}

// parseHeader parses the JOSE header. Member names are matched exactly
// (encoding/json's struct decoding would fold case, reading "ALG" as alg),
// and a repeated alg, kid, typ, crit or b64 is refused: two parsers must not
// be able to read two different headers out of one token.
func parseHeader(raw []byte, h *header) *verifyError {
	if !isJSONObject(raw) {
		return errHeaderJSON
	}
	var (
		verr *verifyError
		seen uint8
	)
	ok := jsonwire.Members(raw, func(name string, val []byte) bool {
		var bit uint8
		switch name {
		case "alg":
			bit = 1
		case "kid":
			bit = 2
		case "typ":
			bit = 4
		case "crit":
			bit = 8
		case "b64":
			bit = 16
		default:
			return true // jwk, jku, x5u, x5c, …: ignored
		}
		if seen&bit != 0 {
			verr = errHeaderDuplicate
			return false
		}
		seen |= bit
		var ok bool
		switch bit {
		case 1:
			h.alg, ok = jsonwire.String(val)
			h.hasAlg = true
		case 2:
			h.kid, ok = jsonwire.String(val)
		case 4:
			h.typ, ok = jsonwire.String(val)
			h.hasTyp = true
		case 8:
			verr = errCrit
			return false
		case 16:
			if string(val) != "true" {
				verr = errB64
				return false
			}
			ok = true
		}
		if !ok {
			verr = errHeaderMember
		}
		return ok
	})
	if verr != nil {
		return verr
	}
	if !ok {
		return errHeaderJSON
	}
	return nil
}

// isJSONNull reports whether raw is the JSON null literal.
func isJSONNull(raw []byte) bool { return string(raw) == "null" }
