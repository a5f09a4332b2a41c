package jwtauth

import "errors"

// Sentinel errors. Every error returned by Verify wraps exactly one of them
// (test with errors.Is); Reason maps them to stable metric label values.
// Error texts never contain the token, a claim value, a key or the secret.
var (
	// ErrMalformed: not a compact JWS of the accepted shape (segments,
	// base64url, JSON objects, size), or a header this verifier refuses to
	// process (crit, b64).
	ErrMalformed = errors.New("jwt: malformed token")
	// ErrAlgorithm: alg missing, "none" in any spelling, unknown, or not in
	// the configured allowlist.
	ErrAlgorithm = errors.New("jwt: algorithm not accepted")
	// ErrUnknownKey: no configured key (or not exactly one, for a token
	// without kid) can verify this token.
	ErrUnknownKey = errors.New("jwt: unknown signing key")
	// ErrSignature: the signature does not verify with the selected key.
	ErrSignature = errors.New("jwt: bad signature")
	// ErrExpired: now is at or past exp plus the leeway.
	ErrExpired = errors.New("jwt: token expired")
	// ErrNotYetValid: nbf is later than now plus the leeway.
	ErrNotYetValid = errors.New("jwt: token not yet valid")
	// ErrIssuedAt: iat is later than now plus the leeway, or missing while
	// a maximum lifetime is configured.
	ErrIssuedAt = errors.New("jwt: bad issued-at time")
	// ErrLifetime: exp - iat exceeds the configured maximum lifetime.
	ErrLifetime = errors.New("jwt: token lifetime too long")
	// ErrIssuer: iss missing or not the configured issuer.
	ErrIssuer = errors.New("jwt: wrong issuer")
	// ErrAudience: aud missing or not containing the configured audience.
	ErrAudience = errors.New("jwt: wrong audience")
	// ErrType: the JOSE typ header is missing or not an accepted value
	// (a refresh token, for example).
	ErrType = errors.New("jwt: wrong token type")
	// ErrClaims: a required claim is missing or a claim has the wrong JSON
	// type or an unacceptable value.
	ErrClaims = errors.New("jwt: invalid claims")
	// ErrSessionRevoked: the session (jti or sid) was revoked.
	ErrSessionRevoked = errors.New("jwt: session revoked")
)

// reasons maps each sentinel to its label; the order is the documented one.
var reasons = [...]struct {
	err    error
	reason string
}{
	{ErrMalformed, "jwt_malformed"},
	{ErrAlgorithm, "jwt_bad_algorithm"},
	{ErrUnknownKey, "jwt_unknown_key"},
	{ErrSignature, "jwt_bad_signature"},
	{ErrExpired, "jwt_expired"},
	{ErrNotYetValid, "jwt_not_yet_valid"},
	{ErrIssuedAt, "jwt_bad_iat"},
	{ErrLifetime, "jwt_lifetime_too_long"},
	{ErrIssuer, "jwt_bad_issuer"},
	{ErrAudience, "jwt_bad_audience"},
	{ErrType, "jwt_bad_type"},
	{ErrClaims, "jwt_bad_claims"},
	{ErrSessionRevoked, "jwt_session_revoked"},
}

// ReasonInvalid is the reason for an error that wraps no sentinel.
const ReasonInvalid = "jwt_invalid"

// Reason returns a short, stable label for err, for metrics and logs: one of
// Reasons(), "jwt_invalid" for an error that wraps no sentinel, and "" for
// nil.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	if e, ok := err.(*verifyError); ok { // the common case, without errors.Is
		err = e.sentinel
	}
	for _, r := range reasons {
		if err == r.err {
			return r.reason
		}
	}
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.reason
		}
	}
	return ReasonInvalid
}

// Sentinels returns every sentinel error, in the order of Reasons.
func Sentinels() []error {
	out := make([]error, 0, len(reasons))
	for _, r := range reasons {
		out = append(out, r.err)
	}
	return out
}

// Reasons returns every label Reason can return for a non-nil error, for
// documentation and metric pre-registration.
func Reasons() []string {
	out := make([]string, 0, len(reasons)+1)
	for _, r := range reasons {
		out = append(out, r.reason)
	}
	return append(out, ReasonInvalid)
}

// verifyError is a sentinel with a fixed detail. All of them are package
// variables, so refusing a token allocates nothing, and no detail can carry
// request data.
type verifyError struct {
	sentinel error
	detail   string
}

func (e *verifyError) Error() string { return e.sentinel.Error() + ": " + e.detail }
func (e *verifyError) Unwrap() error { return e.sentinel }

func fail(sentinel error, detail string) *verifyError {
	return &verifyError{sentinel: sentinel, detail: detail}
}

// The refusals, one variable each.
var (
	errEmpty           = fail(ErrMalformed, "empty token")
	errTooLong         = fail(ErrMalformed, "token longer than 8 KiB")
	errSegments        = fail(ErrMalformed, "want exactly three dot-separated segments")
	errEmptySegment    = fail(ErrMalformed, "empty segment")
	errAlphabet        = fail(ErrMalformed, "character outside the base64url alphabet (padding included)")
	errBase64          = fail(ErrMalformed, "non-canonical base64url")
	errHeaderJSON      = fail(ErrMalformed, "header is not a JSON object")
	errPayloadJSON     = fail(ErrMalformed, "payload is not a JSON object")
	errHeaderMember    = fail(ErrMalformed, "header member of the wrong JSON type")
	errHeaderDuplicate = fail(ErrMalformed, "header member repeated")
	errClaimDuplicate  = fail(ErrClaims, "claim repeated")
	errCrit            = fail(ErrMalformed, "crit header present; no extension is supported")
	errB64             = fail(ErrMalformed, "b64 header other than true; unencoded payloads are not supported")
	errAlgNone         = fail(ErrAlgorithm, "unsecured (none) tokens are never accepted")
	errAlgMissing      = fail(ErrAlgorithm, "alg header missing")
	errAlgUnknown      = fail(ErrAlgorithm, "unsupported algorithm")
	errAlgNotAllowed   = fail(ErrAlgorithm, "algorithm not in the configured allowlist")
	errKIDTooLong      = fail(ErrUnknownKey, "kid too long")
	errKIDUnknown      = fail(ErrUnknownKey, "no key with this kid for this algorithm")
	errNoKey           = fail(ErrUnknownKey, "no configured key can verify this algorithm")
	errAmbiguousKey    = fail(ErrUnknownKey, "token has no kid and several keys fit its algorithm")
	errBadSignature    = fail(ErrSignature, "signature does not verify")
	errExpired         = fail(ErrExpired, "exp is in the past")
	errNotYetValid     = fail(ErrNotYetValid, "nbf is in the future")
	errIATFuture       = fail(ErrIssuedAt, "iat is in the future")
	errIATMissing      = fail(ErrIssuedAt, "iat is required when a maximum lifetime is configured")
	errLifetime        = fail(ErrLifetime, "exp - iat exceeds the maximum lifetime")
	errIssuerMissing   = fail(ErrIssuer, "iss missing")
	errIssuer          = fail(ErrIssuer, "iss is not the configured issuer")
	errAudMissing      = fail(ErrAudience, "aud missing")
	errAudience        = fail(ErrAudience, "aud does not contain the configured audience")
	errTypMissing      = fail(ErrType, "typ header missing")
	errTyp             = fail(ErrType, "typ header is not an accepted type")
	errExpMissing      = fail(ErrClaims, "exp missing")
	errExpType         = fail(ErrClaims, "exp is not a number")
	errNbfType         = fail(ErrClaims, "nbf is not a number")
	errIatType         = fail(ErrClaims, "iat is not a number")
	errTimeRange       = fail(ErrClaims, "time claim out of range")
	errIssType         = fail(ErrClaims, "iss is not a string")
	errAudType         = fail(ErrClaims, "aud is not a string or an array of strings")
	errSubMissing      = fail(ErrClaims, "subject claim missing or empty")
	errSubType         = fail(ErrClaims, "subject claim is not a string")
	errWorkspaceType   = fail(ErrClaims, "workspace claim is not a string")
	errProjectType     = fail(ErrClaims, "project claim is not a string")
	errScopesType      = fail(ErrClaims, "scope claim is not a string or an array of strings")
	errSessionIDType   = fail(ErrClaims, "jti or sid is not a string")
	errIdentityValue   = fail(ErrClaims, "identity claim too long or contains control characters")
	errSessionRevoked  = fail(ErrSessionRevoked, "session revoked")
)
