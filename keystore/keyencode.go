package keystore

import (
	"time"

	"github.com/deplo-sh/deplo-auth/internal/jsonwire"
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
			b = jsonwire.AppendString(b, rs.ID)
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
	b = jsonwire.AppendString(b, e.ID)
	b = append(b, ",\n      \"name\": "...)
	b = jsonwire.AppendString(b, e.Name)
	b = append(b, ",\n      \"hash\": "...)
	b = jsonwire.AppendString(b, e.Hash)
	b = append(b, ",\n      \"workspace\": "...)
	b = jsonwire.AppendString(b, e.Workspace)
	if e.Project != nil {
		b = append(b, ",\n      \"project\": "...)
		b = jsonwire.AppendString(b, *e.Project)
	}
	b = append(b, ",\n      \"scopes\": ["...)
	for k, sc := range e.Scopes {
		if k > 0 {
			b = append(b, ',')
		}
		b = append(b, "\n        "...)
		b = jsonwire.AppendString(b, sc)
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
		b = jsonwire.AppendString(b, e.RevokedReason)
	}
	if len(e.AllowedIPs) > 0 {
		b = append(b, ",\n      \"allowed_ips\": ["...)
		for k, p := range e.AllowedIPs {
			if k > 0 {
				b = append(b, ',')
			}
			b = append(b, "\n        "...)
			b = jsonwire.AppendString(b, p)
		}
		b = append(b, "\n      ]"...)
	}
	if c := e.CreatedBy; c != nil {
		b = append(b, ",\n      \"created_by\": {\n        \"kind\": "...)
		b = jsonwire.AppendString(b, c.Kind)
		for _, f := range [...]struct{ name, v string }{{"id", c.ID}, {"subject", c.Subject}, {"session", c.Session}} {
			if f.v != "" {
				b = append(b, ",\n        \""...)
				b = append(b, f.name...)
				b = append(b, "\": "...)
				b = jsonwire.AppendString(b, f.v)
			}
		}
		b = append(b, "\n      }"...)
	}
	if e.RotatedFrom != "" {
		b = append(b, ",\n      \"rotated_from\": "...)
		b = jsonwire.AppendString(b, e.RotatedFrom)
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
