// Package identity makes the identity that the deplo-auth gateway forwards
// to its upstream verifiable, so that an upstream need not trust whatever
// can reach it. It uses only the standard library and package grant (the
// scope vocabulary, itself standard library only).
//
// # Headers
//
// After authenticating a request, the gateway strips every client-sent
// header under its prefix (default "X-Deplo-") and sets:
//
//	X-Deplo-Auth       api_key or jwt
//	X-Deplo-Subject    token id (API key) or sub claim (JWT)
//	X-Deplo-Workspace  workspace id; absent when the credential has none
//	X-Deplo-Project    project; only for a project-scoped credential
//	X-Deplo-Scopes     granted scopes from "admin delete deploy read",
//	                   sorted, single spaces; present and empty for none
//	X-Deplo-Signature  v1 kid=<key id> ts=<unix seconds> sig=<MAC>
//
// Admin satisfies any scope requirement; no other scope implies another.
//
// # Signature header
//
// The value is "v1 kid=" key id " ts=" timestamp " sig=" MAC, single
// spaces, in this order. The key id is 1 to 64 bytes of A-Z a-z 0-9 . _ -;
// the timestamp is Unix seconds in decimal, no sign, no leading zero; the MAC
// is the HMAC-SHA256 of the canonical string under the key's secret, in
// base64url without padding (43 characters).
//
// # Canonical string
//
// The canonical string is ten fields joined by "\n" (one 0x0A byte between
// fields, none at the end), taken as bytes, with no trimming, case change or
// Unicode normalisation:
//
//  1. the literal deplo-identity-v1
//  2. the key id, as in kid=
//  3. the timestamp, as in ts=
//  4. the request method, as sent (GET; not case-folded)
//  5. the request path as on the request line, still percent-encoded,
//     without the query: r.URL.EscapedPath() in Go, "/" if that is empty
//  6. the X-Deplo-Auth value
//  7. the X-Deplo-Subject value
//  8. the X-Deplo-Workspace value
//  9. the X-Deplo-Project value
//  10. the X-Deplo-Scopes value
//
// Fields 6 to 10 are the header values exactly as sent, and the empty
// string for an absent header (an absent and an empty header mean the same
// thing to the parser too). For example (test vector api-key-workspace,
// Project absent):
//
//	deplo-identity-v1
//	gw-2026-01
//	1767225600
//	GET
//	/v1/workspaces/ws_7Hq2/deployments
//	api_key
//	tok_01JGZ5X8K2M4
//	ws_7Hq2
//
//	deploy read
//
// The string is unambiguous: it always has exactly ten fields in a fixed
// order, and no field can contain "\n". Header values cannot carry a
// control character across HTTP, and SignRequest and Verify refuse one
// in-process; the method is an HTTP token; the path is percent-encoded ASCII
// without space; the key id and timestamp have fixed alphabets. So a
// canonical string splits back into its fields in one way only: no change
// of value can move bytes from one field to another and keep the MAC. The
// first line binds the MAC to this purpose and version.
//
// # Scope of the guarantee
//
// The MAC covers the identity, the method, the path and the time; not the
// query, the body, the host or other headers. A captured request can be
// replayed within MaxAge (30 s) on the same method and path; use TLS between
// the gateway and the upstream where that matters, and a separate key per
// upstream if one upstream must not accept what was signed for another. A
// request on a public route carries no identity and no signature: Verify
// returns ErrNoIdentity, which any client can cause.
//
// # Use
//
// The gateway calls Signer.SignRequest on the request it forwards, after
// setting the identity headers. An upstream wraps its handler in Middleware
// (or calls Verifier.Verify) and reads the Identity with FromContext.
// Implementations in other languages: see README.md and
// testdata/vectors.json.
package identity
