package jwtauth

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/deplo-sh/deplo-auth/grant"
	"github.com/deplo-sh/deplo-auth/internal/jsonwire"
)

// maxNumericDate is 9999-12-31T23:59:59Z: later time claims are refused.
const maxNumericDate = 253402300799

// The claims judgeClaims reads, as indexes into Verifier.claimSlots.
const (
	claimExp = iota
	claimNbf
	claimIat
	claimIss
	claimAud
	claimSub
	claimWorkspace
	claimProject
	claimScope
	claimScp
	claimScopes
	claimJti
	claimSid
	numClaims
)

// claimSlots names the claims read, in the order of the claim constants.
func claimSlots(n ClaimNames) [numClaims]string {
	return [numClaims]string{"exp", "nbf", "iat", "iss", "aud", n.Subject, n.Workspace, n.Project, n.Scopes, "scp", "scopes", "jti", "sid"}
}

// judgeClaims parses the payload of an authentic token and checks its
// claims at now: types first, then iss, aud, the identity, the time claims,
// the lifetime and the session denylist. A claim it reads may appear only
// once.
func (v *Verifier) judgeClaims(payload []byte, now time.Time) (*cacheEntry, *verifyError) {
	var (
		m    [numClaims][]byte // raw values; nil when absent
		dup  bool
		null = []byte("null")
	)
	ok := jsonwire.Members(payload, func(name string, val []byte) bool {
		for i := range v.claimSlots {
			if v.claimSlots[i] != name {
				continue
			}
			if m[i] != nil {
				dup = true
				return false
			}
			m[i] = val
		}
		return true
	})
	if dup {
		return nil, errClaimDuplicate
	}
	if !ok {
		return nil, errPayloadJSON
	}
	e := new(cacheEntry)

	// Time claims: exp required; all NumericDate (JSON numbers).
	if m[claimExp] == nil {
		return nil, errExpMissing
	}
	exp, verr := numericDate(m[claimExp], errExpType)
	if verr != nil {
		return nil, verr
	}
	var nbf, iat time.Time
	if m[claimNbf] != nil {
		if nbf, verr = numericDate(m[claimNbf], errNbfType); verr != nil {
			return nil, verr
		}
	}
	if m[claimIat] != nil {
		if iat, verr = numericDate(m[claimIat], errIatType); verr != nil {
			return nil, verr
		}
	}

	// iss and aud.
	if v.issuer != "" {
		if m[claimIss] == nil {
			return nil, errIssuerMissing
		}
		iss, ok := jsonwire.String(m[claimIss])
		if !ok {
			return nil, errIssType
		}
		if iss != v.issuer {
			return nil, errIssuer
		}
	}
	if v.audience != "" {
		if m[claimAud] == nil {
			return nil, errAudMissing
		}
		if verr := checkAudience(m[claimAud], v.audience); verr != nil {
			return nil, verr
		}
	}

	// Identity.
	p := &e.session.Principal
	p.Kind = grant.KindJWT
	if raw := m[claimSub]; raw == nil || string(raw) == string(null) {
		return nil, errSubMissing
	}
	if p.Subject, ok = jsonwire.String(m[claimSub]); !ok {
		return nil, errSubType
	}
	if p.Subject == "" {
		return nil, errSubMissing
	}
	if p.Workspace, verr = optionalString(m[claimWorkspace], errWorkspaceType); verr != nil {
		return nil, verr
	}
	if p.Project, verr = optionalString(m[claimProject], errProjectType); verr != nil {
		return nil, verr
	}
	for _, s := range [...]string{p.Subject, p.Workspace, p.Project} {
		if !headerSafe(s) {
			return nil, errIdentityValue
		}
	}
	names, verr := scopeNames(m[claimScope], m[claimScp], m[claimScopes])
	if verr != nil {
		return nil, verr
	}
	p.Scopes, e.session.UnknownScopes = grant.ParseScopeNames(names)
	if e.jti, verr = optionalString(m[claimJti], errSessionIDType); verr != nil {
		return nil, verr
	}
	if e.sid, verr = optionalString(m[claimSid], errSessionIDType); verr != nil {
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
func numericDate(raw []byte, typeErr *verifyError) (time.Time, *verifyError) {
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
func checkAudience(raw []byte, want string) *verifyError {
	if s, ok := jsonwire.String(raw); ok {
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
		s, ok := jsonwire.String(r)
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

// optionalString returns the raw claim as a string: "" when absent (nil)
// or null, typeErr when of another type.
func optionalString(raw []byte, typeErr *verifyError) (string, *verifyError) {
	if raw == nil || isJSONNull(raw) {
		return "", nil
	}
	s, ok := jsonwire.String(raw)
	if !ok {
		return "", typeErr
	}
	return s, nil
}

// scopeNames reads the scope claim: a space-delimited string or an array of
// strings; when it is absent (or null), "scp" and then "scopes" are read the
// same way.
func scopeNames(candidates ...[]byte) ([]string, *verifyError) {
	var raw []byte
	for _, r := range candidates {
		if r != nil && !isJSONNull(r) {
			raw = r
			break
		}
	}
	if raw == nil {
		return nil, nil
	}
	if s, ok := jsonwire.String(raw); ok {
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
		s, ok := jsonwire.String(r)
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
	// HTTP trims spaces around a header value in transit, so " alice" would
	// reach the upstream as "alice": refuse rather than change identity.
	if s != "" && (s[0] == ' ' || s[len(s)-1] == ' ') {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}
