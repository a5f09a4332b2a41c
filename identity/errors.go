package identity

import (
	"errors"

	"github.com/deplo-sh/deplo-auth/grant"
)

// Sentinel errors. Every error returned by this package wraps exactly one of
// them; check with errors.Is. The wrapping error adds which header or field
// was at fault, never a header value or a secret.
var (
	// ErrNoIdentity: the request carries no identity. From Verify, this
	// means no identity header and no signature header at all (an anonymous
	// request, such as one on a public route); from FromRequest and Parse,
	// that the Auth or Subject header is missing or empty.
	ErrNoIdentity = errors.New("identity: no identity")
	// ErrNoSignature: identity headers without a signature header.
	ErrNoSignature = errors.New("identity: no signature")
	// ErrBadSignature: the signature does not match the request.
	ErrBadSignature = errors.New("identity: bad signature")
	// ErrUnknownKey: the signature names a key that is not configured.
	ErrUnknownKey = errors.New("identity: unknown key")
	// ErrExpired: the signature is older than MaxAge, or dated further in
	// the future than MaxSkew.
	ErrExpired = errors.New("identity: signature expired or from the future")
	// ErrMalformed: a header has several values, a value that could not have
	// crossed the wire, or is not in the form the gateway sends (an unknown
	// credential kind or scope, unsorted scopes, a malformed signature
	// header). It is grant.ErrMalformed, which the scope parsers wrap.
	ErrMalformed = grant.ErrMalformed
	// ErrConfig: the Signer or Verifier is misconfigured (no key, a bad key
	// id, a short secret, a duplicate key id, a bad prefix or duration).
	ErrConfig = errors.New("identity: invalid configuration")
)
