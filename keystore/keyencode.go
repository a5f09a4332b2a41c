package keystore

import (
	"time"
	"unicode/utf8"
)

// marshalKeyFile returns the file form of kf: indented JSON, nil scopes as
// [], absent expires_at/revoked_at as null, project omitted when nil,
// revoked_sessions omitted when empty. The bytes are those of
// encoding/json's Encoder with SetIndent("", "  ") and SetEscapeHTML(false)
// (a test compares them), written directly: reflection and the separate
// indentation pass were most of the time of a change to a big file.
func marshalKeyFile(kf *KeyFile) ([]byte, error) {
	// About 300 bytes per token in this form.
	b := make([]byte, 0, 64+320*len(kf.Tokens)+128*len(kf.RevokedSessions))
	b = append(b, "{\n  \"tokens\": ["...)
	var err error
	for i := range kf.Tokens {
		if i > 0 {
			b = append(b, ',')
		}
		if b, err = appendEntry(b, &kf.Tokens[i]); err != nil {
			return nil, err
		}
	}
	if len(kf.Tokens) > 0 {
		b = append(b, "\n  "...)
	}
	b = append(b, ']')
	if len(kf.RevokedSessions) > 0 {
		b = append(b, ",\n  \"revoked_sessions\": ["...)
		for i, rs := range kf.RevokedSessions {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, "\n    {\n      \"id\": "...)
			b = appendJSONString(b, rs.ID)
			b = append(b, ",\n      \"revoked_at\": "...)
			if b, err = appendJSONTime(b, rs.RevokedAt); err != nil {
				return nil, err
			}
			b = append(b, ",\n      \"expires_at\": "...)
			if b, err = appendJSONTimeOrNull(b, rs.ExpiresAt); err != nil {
				return nil, err
			}
			b = append(b, "\n    }"...)
		}
		b = append(b, "\n  ]"...)
	}
	b = append(b, "\n}\n"...)
	return b, nil
}

func appendEntry(b []byte, e *TokenEntry) ([]byte, error) {
	b = append(b, "\n    {\n      \"id\": "...)
	b = appendJSONString(b, e.ID)
	b = append(b, ",\n      \"name\": "...)
	b = appendJSONString(b, e.Name)
	b = append(b, ",\n      \"hash\": "...)
	b = appendJSONString(b, e.Hash)
	b = append(b, ",\n      \"workspace\": "...)
	b = appendJSONString(b, e.Workspace)
	if e.Project != nil {
		b = append(b, ",\n      \"project\": "...)
		b = appendJSONString(b, *e.Project)
	}
	b = append(b, ",\n      \"scopes\": ["...)
	for k, sc := range e.Scopes {
		if k > 0 {
			b = append(b, ',')
		}
		b = append(b, "\n        "...)
		b = appendJSONString(b, sc)
	}
	if len(e.Scopes) > 0 {
		b = append(b, "\n      "...)
	}
	b = append(b, "],\n      \"created_at\": "...)
	var err error
	if b, err = appendJSONTime(b, e.CreatedAt); err != nil {
		return nil, err
	}
	b = append(b, ",\n      \"expires_at\": "...)
	if b, err = appendJSONTimeOrNull(b, e.ExpiresAt); err != nil {
		return nil, err
	}
	b = append(b, ",\n      \"revoked_at\": "...)
	if b, err = appendJSONTimeOrNull(b, e.RevokedAt); err != nil {
		return nil, err
	}
	if e.RevokedReason != "" {
		b = append(b, ",\n      \"revoked_reason\": "...)
		b = appendJSONString(b, e.RevokedReason)
	}
	if len(e.AllowedIPs) > 0 {
		b = append(b, ",\n      \"allowed_ips\": ["...)
		for k, p := range e.AllowedIPs {
			if k > 0 {
				b = append(b, ',')
			}
			b = append(b, "\n        "...)
			b = appendJSONString(b, p)
		}
		b = append(b, "\n      ]"...)
	}
	if c := e.CreatedBy; c != nil {
		b = append(b, ",\n      \"created_by\": {\n        \"kind\": "...)
		b = appendJSONString(b, c.Kind)
		for _, f := range [...]struct{ name, v string }{{"id", c.ID}, {"subject", c.Subject}, {"session", c.Session}} {
			if f.v != "" {
				b = append(b, ",\n        \""...)
				b = append(b, f.name...)
				b = append(b, "\": "...)
				b = appendJSONString(b, f.v)
			}
		}
		b = append(b, "\n      }"...)
	}
	if e.RotatedFrom != "" {
		b = append(b, ",\n      \"rotated_from\": "...)
		b = appendJSONString(b, e.RotatedFrom)
	}
	return append(b, "\n    }"...), nil
}

// appendJSONTime appends t as time.Time's MarshalJSON writes it (RFC 3339
// with nanoseconds; an error for a year it cannot write).
func appendJSONTime(b []byte, t time.Time) ([]byte, error) {
	b = append(b, '"')
	b, err := t.AppendText(b)
	if err != nil {
		return nil, err
	}
	return append(b, '"'), nil
}

func appendJSONTimeOrNull(b []byte, t *time.Time) ([]byte, error) {
	if t == nil {
		return append(b, "null"...), nil
	}
	return appendJSONTime(b, *t)
}

// appendJSONString appends s quoted as encoding/json does without HTML
// escaping: \" \\ \b \f \n \r \t, other control characters as \u00XX,
// invalid UTF-8 as \ufffd, U+2028 and U+2029 as \u2028 and \u2029.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
