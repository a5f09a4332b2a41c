// Package bearer parses the Authorization request header for an RFC 6750
// Bearer credential:
//
//	credentials = "Bearer" 1*SP b64token
//	b64token    = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
//
// The scheme is matched case-insensitively (ASCII only). Parse is strict: a
// request is Malformed when it carries more than one Authorization header,
// a header longer than MaxLength, any control character, a Bearer scheme
// without a credential, more than one token, or a character outside
// b64token. A missing header, or a credential of another scheme, is Missing.
package bearer

// MaxLength caps the length in bytes of the Authorization header value.
const MaxLength = 8 << 10

// Status is the outcome of Parse.
type Status uint8

const (
	// Missing: no Authorization header, or a scheme other than Bearer. The
	// caller answers 401 with a plain Bearer challenge.
	Missing Status = iota
	// OK: exactly one well-formed bearer token.
	OK
	// Malformed: the request is invalid; the caller answers 400 with
	// error="invalid_request" and the description returned by Parse.
	Malformed
)

// String returns "missing", "ok" or "malformed".
func (s Status) String() string {
	switch s {
	case Missing:
		return "missing"
	case OK:
		return "ok"
	case Malformed:
		return "malformed"
	}
	return "invalid"
}

// Descriptions returned by Parse with Malformed. They are fixed strings and
// never include any part of the header.
const (
	descMultiple     = "more than one Authorization header"
	descTooLong      = "Authorization header too long"
	descControl      = "control character in Authorization header"
	descNoCredential = "Bearer credential missing"
	descManyTokens   = "more than one token"
	descInvalidChar  = "invalid character in bearer token"
)

// Descriptions returns every description Parse returns with Malformed, so a
// caller can prepare one answer per problem.
func Descriptions() []string {
	return []string{descMultiple, descTooLong, descControl, descNoCredential, descManyTokens, descInvalidChar}
}

// b64 marks the bytes that may make up the body of a b64token (before any
// trailing '=' padding).
var b64 = func() (t [256]bool) {
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "-._~+/" {
		t[c] = true
	}
	return t
}()

// Parse examines the values of the Authorization header, as returned by
// r.Header.Values("Authorization") or r.Header["Authorization"]; nil or
// empty means Missing.
//
// With OK, token is the bearer token, a substring of the header value (Parse
// does not allocate). With Malformed, description is a short fixed reason
// that is safe to send to the client and to log; it is empty otherwise.
//
// Rules, in order: more than one value is Malformed; a value longer than
// MaxLength is Malformed; any control character (0x00-0x1F, 0x7F, so also
// HTAB) is Malformed; leading and trailing spaces are ignored; an empty
// value or a scheme other than Bearer is Missing; "Bearer" with no
// credential is Malformed; the scheme and the token are separated by one or
// more spaces; a second space-separated word, or a character outside
// b64token, is Malformed.
func Parse(values []string) (token string, status Status, description string) {
	switch len(values) {
	case 0:
		return "", Missing, ""
	case 1:
	default:
		return "", Malformed, descMultiple
	}
	v := values[0]
	if len(v) > MaxLength {
		return "", Malformed, descTooLong
	}
	token, status, description = parse(v)
	// An OK value is made of spaces, letters and b64token characters only,
	// so it cannot hold a control character: the scan for them is needed
	// only when the answer would be Missing or Malformed, and then it takes
	// precedence. This keeps the OK path to a single pass.
	if status != OK && hasControl(v) {
		return "", Malformed, descControl
	}
	return token, status, description
}

// parse applies the rules of Parse after the length check to a single value,
// without looking for control characters: it treats them like any other
// character outside b64token.
func parse(v string) (string, Status, string) {
	// Trim surrounding spaces (net/http already strips them).
	start, end := 0, len(v)
	for start < end && v[start] == ' ' {
		start++
	}
	for end > start && v[end-1] == ' ' {
		end--
	}
	v = v[start:end]

	// Scheme: everything up to the first space.
	i := 0
	for i < len(v) && v[i] != ' ' {
		i++
	}
	if !isBearer(v[:i]) {
		return "", Missing, ""
	}
	for i < len(v) && v[i] == ' ' {
		i++
	}
	if i == len(v) {
		return "", Malformed, descNoCredential
	}

	// Token: 1*b64char *"=", then the end of the (trimmed) value.
	v = v[i:]
	i = 0
	for i < len(v) && b64[v[i]] {
		i++
	}
	if i == 0 {
		// Starts with '=' or another character outside b64token (a space
		// cannot occur here: the separating spaces were skipped).
		return "", Malformed, descInvalidChar
	}
	for i < len(v) && v[i] == '=' {
		i++
	}
	if i < len(v) {
		if v[i] == ' ' {
			// Trailing spaces were trimmed, so more text follows.
			return "", Malformed, descManyTokens
		}
		return "", Malformed, descInvalidChar
	}
	return v, OK, ""
}

// hasControl reports whether v contains a control character: 0x00-0x1F or
// 0x7F.
func hasControl(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c == 0x7F {
			return true
		}
	}
	return false
}

// isBearer reports whether s is "Bearer" in any ASCII case. (strings.EqualFold
// would also accept Unicode case folds.)
func isBearer(s string) bool {
	const want = "bearer"
	if len(s) != len(want) {
		return false
	}
	for i := 0; i < len(want); i++ {
		// want is all lowercase letters, so setting bit 0x20 maps exactly
		// the upper- and lowercase forms of each letter onto it.
		if s[i]|0x20 != want[i] {
			return false
		}
	}
	return true
}
