// Package redact keeps secrets out of messages and logs: an API token
// (sk_…) or its stored hash (sha256:…) pasted where an id or a field name
// goes is never echoed.
package redact

import (
	"strconv"
	"strings"
)

// LooksSecret reports whether s looks like a raw API token or a stored hash,
// which must never appear as an id (ids are echoed in messages and logs).
func LooksSecret(s string) bool {
	return strings.HasPrefix(s, "sk_") || strings.HasPrefix(s, "sha256:")
}

// ID returns id for use in messages, or "" when it must not be echoed: it
// looks secret or is longer than 200 bytes.
func ID(id string) string {
	if LooksSecret(id) || len(id) > 200 {
		return ""
	}
	return id
}

// Name quotes a field name read from client or file input for a message,
// or returns "(not shown)" when it is longer than 40 bytes or looks secret.
func Name(k string) string {
	if len(k) > 40 || LooksSecret(k) {
		return "(not shown)"
	}
	return strconv.Quote(k)
}
