package pgstore

import (
	"errors"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// Password patterns, for DSNs that do not parse.
var (
	urlPassword = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*://[^:@/]*:([^@/]*)@`)
	kvPassword  = regexp.MustCompile(`(?:^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|[^\s]+)`)
)

// dsnSecrets returns the password spellings a DSN contains, as written and
// decoded, so they can be removed from error messages.
func dsnSecrets(dsn string) []string {
	var out []string
	add := func(s string) {
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	if m := urlPassword.FindStringSubmatch(dsn); m != nil {
		add(m[1])
		if d, err := url.PathUnescape(m[1]); err == nil {
			add(d)
		}
	}
	if u, err := url.Parse(dsn); err == nil {
		if u.User != nil {
			if pw, ok := u.User.Password(); ok {
				add(pw)
			}
		}
		if q, err := url.ParseQuery(u.RawQuery); err == nil {
			add(q.Get("password"))
		}
	}
	for _, m := range kvPassword.FindAllStringSubmatch(dsn, -1) {
		v := m[1]
		add(v)
		if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
			add(v[1 : len(v)-1])
			add(strings.NewReplacer(`\'`, `'`, `\\`, `\`).Replace(v[1 : len(v)-1]))
		}
	}
	// Longest first, so a password containing another is removed whole.
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

// scrub returns err, or, when its message contains one of secrets, an error
// with the same message and every secret replaced by "xxxxx". The
// replacement does not wrap err, so the secret cannot be reached through
// errors.Unwrap.
func scrub(err error, secrets []string) error {
	if err == nil || len(secrets) == 0 {
		return err
	}
	msg := err.Error()
	clean := msg
	for _, s := range secrets {
		clean = strings.ReplaceAll(clean, s, "xxxxx")
	}
	if clean == msg {
		return err
	}
	return errors.New(clean)
}
