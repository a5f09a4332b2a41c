package decide

import (
	"errors"
	"net/http"

	"github.com/deplo-sh/deplo-auth/bearer"
	"github.com/deplo-sh/deplo-auth/grant"
	"github.com/deplo-sh/deplo-auth/jwtauth"
	"github.com/deplo-sh/deplo-auth/policy"
)

// Challenge says which WWW-Authenticate value (RFC 6750 §3) a refusal gets.
type Challenge uint8

const (
	// ChallengeNone: no WWW-Authenticate (400 bad path, 429, 503).
	ChallengeNone Challenge = iota
	// ChallengeBare: Bearer realm="…" (no credential).
	ChallengeBare
	// ChallengeInvalidRequest: error="invalid_request".
	ChallengeInvalidRequest
	// ChallengeInvalidToken: error="invalid_token".
	ChallengeInvalidToken
	// ChallengeInsufficientScope: error="insufficient_scope", with scope=
	// when the outcome carries the route's scopes.
	ChallengeInsufficientScope
)

// Refusal is one kind of refusal. The set is fixed (see All): a front door
// may index per-refusal state by ID, and every field is a constant that
// never holds request data or secrets.
type Refusal struct {
	// ID is dense, from 0 to len(All())-1.
	ID int
	// Status is the HTTP status.
	Status int
	// Reason is the metric label and log field value (the documented list).
	Reason string
	// Code is the RFC 6750 error code ("unauthorized" for no credential,
	// "too_many_requests", "temporarily_unavailable"): the "error" of a JSON
	// body and {http.auth.error}.
	Code string
	// Description is a fixed text for the client.
	Description string
	// Challenge is the WWW-Authenticate form.
	Challenge Challenge
	// Error reports a technical failure (outcome "error"), not a denial.
	Error bool
}

var all []*Refusal

func newRefusal(status int, reason, description string) *Refusal {
	r := &Refusal{ID: len(all), Status: status, Reason: reason, Description: description}
	switch {
	case status == http.StatusBadRequest:
		r.Code, r.Challenge = "invalid_request", ChallengeInvalidRequest
		if reason == ReasonBadPath || reason == ReasonUntrustedCaller || reason == ReasonBadOriginal {
			r.Challenge = ChallengeNone // not about the credential
		}
	case status == http.StatusUnauthorized && reason == ReasonNoCredential:
		r.Code, r.Challenge = "unauthorized", ChallengeBare
	case status == http.StatusUnauthorized:
		r.Code, r.Challenge = "invalid_token", ChallengeInvalidToken
	case status == http.StatusForbidden && reason == ReasonIPNotAllowed:
		// Not about the token's validity nor its scopes: no challenge.
		r.Code = "forbidden"
	case status == http.StatusForbidden:
		r.Code, r.Challenge = "insufficient_scope", ChallengeInsufficientScope
	case status == http.StatusTooManyRequests:
		r.Code = "too_many_requests"
	default:
		r.Code, r.Error = "temporarily_unavailable", true
	}
	all = append(all, r)
	return r
}

// All returns every refusal, indexed by ID.
func All() []*Refusal { return all }

// Reasons decided before the policy; the policy's own are policy.Reasons()
// and the JWT ones jwtauth.Reasons().
const (
	ReasonBadPath          = "bad_path"
	ReasonNoCredential     = "no_credential"
	ReasonMalformedRequest = "malformed_request"
	ReasonMalformedToken   = "malformed_token"
	ReasonUnknownToken     = "unknown_token"
	ReasonRevokedToken     = "revoked_token"
	ReasonExpiredToken     = "expired_token"
	ReasonStoreError       = "store_error"
	ReasonThrottled        = "throttled"
	// ReasonUntrustedCaller: a verify request from outside verify.trusted.
	ReasonUntrustedCaller = "untrusted_caller"
	// ReasonBadOriginal: a verify request that names no complete,
	// well-formed original request (OriginalOf).
	ReasonBadOriginal = "bad_original"
	// ReasonIPNotAllowed: a valid API token used from a client address
	// outside its allowed_ips.
	ReasonIPNotAllowed = "ip_not_allowed"
)

// The refusals decided before the policy.
var (
	RefuseBadPath        = newRefusal(http.StatusBadRequest, ReasonBadPath, "non-canonical request path")
	RefuseNoCredential   = newRefusal(http.StatusUnauthorized, ReasonNoCredential, "a Bearer credential is required")
	RefuseNotAToken      = newRefusal(http.StatusUnauthorized, ReasonMalformedToken, "the credential is neither a deplo API token nor an accepted session token")
	RefuseMalformedToken = newRefusal(http.StatusUnauthorized, ReasonMalformedToken, "malformed API token")
	RefuseUnknownToken   = newRefusal(http.StatusUnauthorized, ReasonUnknownToken, "unknown API token")
	RefuseRevokedToken   = newRefusal(http.StatusUnauthorized, ReasonRevokedToken, "the API token has been revoked")
	RefuseExpiredToken   = newRefusal(http.StatusUnauthorized, ReasonExpiredToken, "the API token has expired")
	RefuseStoreError     = newRefusal(http.StatusServiceUnavailable, ReasonStoreError, "the key store is unavailable; retry later")
	RefuseThrottled      = newRefusal(http.StatusTooManyRequests, ReasonThrottled, "too many failed authentications from this client; retry later")
	// The refusals of the verify front door, decided before Decide.
	RefuseUntrustedCaller = newRefusal(http.StatusBadRequest, ReasonUntrustedCaller, "this caller may not ask for a decision")
	RefuseBadOriginal     = newRefusal(http.StatusBadRequest, ReasonBadOriginal, "the verify request names no complete original request")
	// RefuseIPNotAllowed: a valid token from an address outside its
	// allowed_ips, decided before the policy says anything.
	RefuseIPNotAllowed = newRefusal(http.StatusForbidden, ReasonIPNotAllowed, "the API token is not allowed from this address")
)

// refuseMalformed holds one 400 per bearer.Parse problem, whose fixed
// description is the client's hint.
var refuseMalformed = func() map[string]*Refusal {
	m := make(map[string]*Refusal)
	for _, d := range bearer.Descriptions() {
		m[d] = newRefusal(http.StatusBadRequest, ReasonMalformedRequest, d)
	}
	return m
}()

func refuseMalformedRequest(description string) *Refusal {
	if r, ok := refuseMalformed[description]; ok {
		return r
	}
	return refuseMalformed[bearer.Descriptions()[0]]
}

// refuseByPolicy holds the 403 of each policy reason.
var refuseByPolicy = func() map[policy.Reason]*Refusal {
	m := make(map[policy.Reason]*Refusal)
	for _, r := range []policy.Reason{policy.ReasonNoRoute, policy.ReasonNoWorkspace, policy.ReasonWorkspaceMismatch,
		policy.ReasonProjectMismatch, policy.ReasonProjectTokenNotAllowed, policy.ReasonInsufficientScope,
		policy.ReasonRouteVariant} {
		m[r] = newRefusal(http.StatusForbidden, r.String(), forbiddenDescription(r))
	}
	return m
}()

func forbiddenDescription(r policy.Reason) string {
	switch r {
	case policy.ReasonInsufficientScope:
		return "the credential lacks a scope this route requires"
	case policy.ReasonWorkspaceMismatch, policy.ReasonNoWorkspace:
		return "the credential is not valid for this workspace"
	case policy.ReasonProjectMismatch, policy.ReasonProjectTokenNotAllowed:
		return "the credential is not valid for this project"
	case policy.ReasonRouteVariant:
		return "the request spells a listed route differently (letter case or trailing slash)"
	}
	return "no route allows this request"
}

// refuseKindNotAllowed is the 401 of a route that does not accept the
// credential's kind (`via`), by kind.
var refuseKindNotAllowed = [...]*Refusal{
	grant.KindNone:   newRefusal(http.StatusUnauthorized, policy.ReasonKindNotAllowed.String(), "this route does not accept this kind of credential"),
	grant.KindAPIKey: newRefusal(http.StatusUnauthorized, policy.ReasonKindNotAllowed.String(), "this route does not accept API tokens"),
	grant.KindJWT:    newRefusal(http.StatusUnauthorized, policy.ReasonKindNotAllowed.String(), "this route does not accept dashboard session tokens"),
}

// refusalForPolicy returns the refusal of a policy denial.
func refusalForPolicy(d policy.Decision, kind grant.Kind) *Refusal {
	if d.Reason == policy.ReasonKindNotAllowed {
		return refuseKindNotAllowed[kind]
	}
	if r, ok := refuseByPolicy[d.Reason]; ok {
		return r
	}
	return refuseByPolicy[policy.ReasonNoRoute]
}

// jwtRefusals maps each jwtauth sentinel to its 401; the label is
// jwtauth.Reason's, the description chosen here by sentinel.
var jwtRefusals = func() []struct {
	sentinel error
	refusal  *Refusal
} {
	descriptions := map[error]string{
		jwtauth.ErrExpired:        "the session token has expired",
		jwtauth.ErrSessionRevoked: "the session has been revoked",
		jwtauth.ErrLifetime:       "the session token lives longer than this API accepts",
		jwtauth.ErrType:           "not an access token (a refresh token is not a Bearer credential)",
	}
	var out []struct {
		sentinel error
		refusal  *Refusal
	}
	for _, s := range jwtauth.Sentinels() {
		d, ok := descriptions[s]
		if !ok {
			d = "invalid session token"
		}
		out = append(out, struct {
			sentinel error
			refusal  *Refusal
		}{s, newRefusal(http.StatusUnauthorized, jwtauth.Reason(s), d)})
	}
	return out
}()

// refuseJWTInvalid answers a verification error that wraps no sentinel.
var refuseJWTInvalid = newRefusal(http.StatusUnauthorized, jwtauth.ReasonInvalid, "invalid session token")

func refusalForJWT(err error) *Refusal {
	for _, j := range jwtRefusals {
		if errors.Is(err, j.sentinel) {
			return j.refusal
		}
	}
	return refuseJWTInvalid
}

// Reasons returns every refusal reason label, each once, in the order the
// refusals were defined.
func Reasons() []string {
	seen := make(map[string]bool)
	var out []string
	for _, r := range all {
		if !seen[r.Reason] {
			seen[r.Reason] = true
			out = append(out, r.Reason)
		}
	}
	return out
}
