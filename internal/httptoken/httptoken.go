// Package httptoken is the RFC 9110 token rule (section 5.6.2), the syntax
// of an HTTP method and a header field name: one or more tchar.
package httptoken

// Char reports whether c is an RFC 9110 tchar: a letter, a digit or one of
// !#$%&'*+-.^_`|~.
func Char(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// Valid reports whether s is a token: not empty, every byte a tchar. Case
// is kept: methods are case-sensitive.
func Valid(s string) bool {
	for i := 0; i < len(s); i++ {
		if !Char(s[i]) {
			return false
		}
	}
	return s != ""
}
