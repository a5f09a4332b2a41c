package jwtauth

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/deplo-sh/deplo-auth/policy"
)

// maxNumericDate is 9999-12-31T23:59:59Z: later time claims are refused.
const maxNumericDate = 253402300799

// judgeClaims parses the payload of an authentic token and checks its
// claims at now: types first, then iss, aud, the identity, the time claims,
// the lifetime and the session denylist.
func (v *Verifier) judgeClaims(payload []byte, now time.Time) (*cacheEntry, *verifyError) {
	var m map[string]json.RawMessage
	if json.Unmarshal(payload, &m) != nil || m == nil {
		return nil, errPayloadJSON
	}
	e := new(cacheEntry)

	// Time claims: exp required; all NumericDate (JSON numbers).
	raw, ok := m["exp"]
	if !ok {
		return nil, errExpMissing
	}
	exp, verr := numericDate(raw, errExpType)
	if verr != nil {
		return nil, verr
	}
	var nbf, iat time.Time
	if raw, ok := m["nbf"]; ok {
		if nbf, verr = numericDate(raw, errNbfType); verr != nil {
			return nil, verr
		}
	}
	if raw, ok := m["iat"]; ok {
		if iat, verr = numericDate(raw, errIatType); verr != nil {
			return nil, verr
		}
	}

	// iss and aud.
	if v.issuer != "" {
		raw, ok := m["iss"]
		if !ok {
			return nil, errIssuerMissing
		}
		iss, ok := jsonString(raw)
		if !ok {
			return nil, errIssType
		}
		if iss != v.issuer {
			return nil, errIssuer
		}
	}
	if v.audience != "" {
		raw, ok := m["aud"]
		if !ok {
			return nil, errAudMissing
		}
		if verr := checkAudience(raw, v.audience); verr != nil {
			return nil, verr
		}
	}

	// Identity.
	p := &e.session.Principal
	p.Kind = policy.KindJWT
	raw, ok = m[v.names.Subject]
	if !ok || isJSONNull(raw) {
		return nil, errSubMissing
	}
	if p.Subject, ok = jsonString(raw); !ok {
		return nil, errSubType
	}
	if p.Subject == "" {
		return nil, errSubMissing
	}
	if p.Workspace, verr = optionalString(m, v.names.Workspace, errWorkspaceType); verr != nil {
		return nil, verr
	}
	if p.Project, verr = optionalString(m, v.names.Project, errProjectType); verr != nil {
		return nil, verr
	}
	for _, s := range [...]string{p.Subject, p.Workspace, p.Project} {
		if !headerSafe(s) {
			return nil, errIdentityValue
		}
	}
	names, verr := v.scopeNames(m)
	if verr != nil {
		return nil, verr
	}
	p.Scopes, e.session.UnknownScopes = policy.ParseScopes(names)
	if e.jti, verr = optionalString(m, "jti", errSessionIDType); verr != nil {
		return nil, verr
	}
	if e.sid, verr = optionalString(m, "sid", errSessionIDType); verr != nil {
		return nil, verr
	}
	e.session.SessionID = e.sid
	if e.session.SessionID == "" {
		e.session.SessionID = e.jti
	}
	e.session.ExpiresAt = exp

	// Time, lifetime, revocation.
	e.times.expLimit = exp.Add(v.leeway)
	if !nbf.IsZero() {
		e.times.nbfLimit = nbf.Add(-v.leeway)
	}
	if !iat.IsZero() {
		e.times.iatLimit = iat.Add(-v.leeway)
	}
	if verr := e.times.check(now); verr != nil {
		return nil, verr
	}
	if v.maxLifetime > 0 {
		if iat.IsZero() {
			return nil, errIATMissing
		}
		if exp.Sub(iat) > v.maxLifetime {
			return nil, errLifetime
		}
	}
	if v.revoked(e.jti, e.sid) {
		return nil, errSessionRevoked
	}
	return e, nil
}

// numericDate parses a NumericDate: a JSON number of seconds since the
// epoch, from 0 to the year 9999; fractions are kept. typeErr is returned
// for any other JSON type.
func numericDate(raw json.RawMessage, typeErr *verifyError) (time.Time, *verifyError) {
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return time.Time{}, typeErr
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		return time.Time{}, typeErr
	}
	if math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return time.Time{}, errTimeRange
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
}

// checkAudience accepts a string equal to want or an array of strings
// containing it.
func checkAudience(raw json.RawMessage, want string) *verifyError {
	if s, ok := jsonString(raw); ok {
		if s == want {
			return nil
		}
		return errAudience
	}
	if len(raw) == 0 || raw[0] != '[' {
		return errAudType
	}
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) != nil {
		return errAudType
	}
	found := false
	for _, r := range list {
		s, ok := jsonString(r)
		if !ok {
			return errAudType
		}
		found = found || s == want
	}
	if !found {
		return errAudience
	}
	return nil
}

// optionalString returns claim name as a string: "" when absent or null,
// typeErr when of another type.
func optionalString(m map[string]json.RawMessage, name string, typeErr *verifyError) (string, *verifyError) {
	raw, ok := m[name]
	if !ok || isJSONNull(raw) {
		return "", nil
	}
	s, ok := jsonString(raw)
	if !ok {
		return "", typeErr
	}
	return s, nil
}

// scopeNames reads the scope claim: a space-delimited string or an array of
// strings; when it is absent, "scp" and then "scopes" are read the same way.
func (v *Verifier) scopeNames(m map[string]json.RawMessage) ([]string, *verifyError) {
	var raw json.RawMessage
	for _, name := range [...]string{v.names.Scopes, "scp", "scopes"} {
		if r, ok := m[name]; ok && !isJSONNull(r) {
			raw = r
			break
		}
	}
	if raw == nil {
		return nil, nil
	}
	if s, ok := jsonString(raw); ok {
		var names []string
		for _, f := range strings.Split(s, " ") {
			if f != "" {
				names = append(names, f)
			}
		}
		return names, nil
	}
	if raw[0] != '[' {
		return nil, errScopesType
	}
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) != nil {
		return nil, errScopesType
	}
	names := make([]string, 0, len(list))
	for _, r := range list {
		s, ok := jsonString(r)
		if !ok {
			return nil, errScopesType
		}
		if s != "" {
			names = append(names, s)
		}
	}
	return names, nil
}

// headerSafe reports whether an identity value can go into a request
// header: bounded, without control characters.
func headerSafe(s string) bool {
	if len(s) > maxIdentityLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}
