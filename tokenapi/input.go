package tokenapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/deplo-sh/deplo-auth/grant"
	"github.com/deplo-sh/deplo-auth/internal/jsonwire"
	"github.com/deplo-sh/deplo-auth/internal/redact"
	"github.com/deplo-sh/deplo-auth/keystore"
)

// MaxBodyBytes bounds the body of a create request.
const MaxBodyBytes = 16 << 10

// maxNameLength is the longest token name, in characters.
const maxNameLength = 100

// maxProjectLength bounds a project slug.
const maxProjectLength = 100

// createInput is a create request's body, checked.
type createInput struct {
	Name      string
	Scopes    grant.ScopeSet
	Project   string    // "" = a workspace-scoped token
	ExpiresAt time.Time // zero = no expiry
	// AllowedIPs are the normalised prefixes (keystore.ParseAllowedIPs);
	// nil = usable from anywhere.
	AllowedIPs []string
}

// inputError is a 400 invalid_request; its message names the field and
// never echoes a value.
type inputError struct{ msg string }

func (e *inputError) Error() string { return e.msg }

func invalid(format string, args ...any) *inputError {
	return &inputError{fmt.Sprintf(format, args...)}
}

// createFields are the body's fields, spelled exactly.
var createFields = []string{"name", "scopes", "project", "expires_at", "allowed_ips"}

// parseCreate reads a create request's body strictly: one JSON object of
// the known fields, each at most once and spelled exactly (package
// jsonwire), nothing after it, valid UTF-8, at most MaxBodyBytes. now is
// the instant expires_at must follow.
func parseCreate(body []byte, now time.Time) (createInput, *inputError) {
	var in createInput
	if len(body) > MaxBodyBytes {
		return in, invalid("body: larger than %d bytes", MaxBodyBytes)
	}
	if !utf8.Valid(body) {
		return in, invalid("body: not valid UTF-8")
	}
	var hasName, hasScopes bool
	err := jsonwire.ReadObject(body, createFields, func(key string, raw []byte) error {
		hasName, hasScopes = hasName || key == "name", hasScopes || key == "scopes"
		if e := in.set(key, raw, now); e != nil {
			return e
		}
		return nil
	})
	var ie *inputError
	var je *jsonwire.Error
	switch {
	case errors.As(err, &ie):
		return in, ie
	case errors.As(err, &je):
		switch je.Problem {
		case jsonwire.NotObject:
			return in, invalid("body: want a JSON object with name and scopes")
		case jsonwire.UnknownName:
			return in, invalid("body: unknown field %s (want name, scopes, project, expires_at, allowed_ips)", redact.Name(je.Name))
		case jsonwire.RepeatedName:
			return in, invalid("%s: appears more than once", je.Name)
		case jsonwire.Trailing:
			return in, invalid("body: data after the JSON object")
		}
		return in, invalid("body: malformed JSON")
	case !hasName:
		return in, invalid("name: required")
	case !hasScopes:
		return in, invalid("scopes: required")
	}
	return in, nil
}

// set checks and stores one field's value.
func (in *createInput) set(key string, raw []byte, now time.Time) *inputError {
	switch key {
	case "name":
		s, ok := jsonwire.String(raw)
		if !ok || !validName(s) {
			return invalid("name: want a string of 1 to %d printable characters", maxNameLength)
		}
		in.Name = s
	case "scopes":
		var names []*string
		if raw[0] != '[' || json.Unmarshal(raw, &names) != nil || len(names) == 0 {
			return invalid("scopes: want a non-empty array of read, deploy, delete, admin")
		}
		for _, n := range names {
			if n == nil {
				return invalid("scopes: want a non-empty array of read, deploy, delete, admin")
			}
			bit, ok := grant.ParseScope(*n)
			if !ok {
				// Named as the CLI names it; a value that looks like a
				// secret (a token pasted in the wrong field) is not echoed.
				return invalid("scopes: unknown scope %s (want read, deploy, delete or admin)", redact.Name(*n))
			}
			if in.Scopes&bit != 0 {
				return invalid("scopes: %s listed twice", *n)
			}
			in.Scopes |= bit
		}
	case "project":
		if string(raw) == "null" {
			return nil
		}
		s, ok := jsonwire.String(raw)
		if !ok || !validSlug(s) {
			return invalid("project: want a slug (lowercase letters, digits and inner hyphens, at most %d) or null", maxProjectLength)
		}
		in.Project = s
	case "allowed_ips":
		if string(raw) == "null" {
			return nil
		}
		var list []*string
		if raw[0] != '[' || json.Unmarshal(raw, &list) != nil || len(list) == 0 || slices.Contains(list, nil) {
			return invalid("allowed_ips: want a non-empty array of CIDR prefixes (at most %d) or null", keystore.MaxAllowedIPs)
		}
		strs := make([]string, len(list))
		for i, p := range list {
			strs[i] = *p
		}
		prefixes, err := keystore.ParseAllowedIPs(strs)
		if err != nil {
			return invalid("allowed_ips: %v", err)
		}
		in.AllowedIPs = keystore.FormatAllowedIPs(prefixes)
	case "expires_at":
		if string(raw) == "null" {
			return nil
		}
		s, ok := jsonwire.String(raw)
		if !ok {
			return invalid("expires_at: want an RFC 3339 time string or null")
		}
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return invalid("expires_at: want an RFC 3339 time, e.g. 2027-01-31T00:00:00Z")
		}
		if !t.After(now) {
			return invalid("expires_at: must be in the future")
		}
		in.ExpiresAt = t.UTC()
	}
	return nil
}

// validName: 1 to 100 characters, each printable (letters, marks, numbers,
// punctuation, symbols and the ASCII space; no control or format character).
func validName(s string) bool {
	n := 0
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return false
		}
		n++
	}
	return n >= 1 && n <= maxNameLength
}

// validSlug: lowercase letters and digits, words joined by single hyphens,
// as project names appear in paths (weekly-report).
func validSlug(s string) bool {
	if s == "" || len(s) > maxProjectLength || s[0] == '-' || s[len(s)-1] == '-' || strings.Contains(s, "--") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
