package tokenapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/deplo-sh/deplo-auth/apikey"
	"github.com/deplo-sh/deplo-auth/grant"
	"github.com/deplo-sh/deplo-auth/internal/jsonwire"
	"github.com/deplo-sh/deplo-auth/internal/redact"
	"github.com/deplo-sh/deplo-auth/keystore"
	"github.com/deplo-sh/deplo-auth/throttle"
)

// Defaults of the limits (options of deplo_auth_tokens).
const (
	// DefaultCreateRate tokens per DefaultCreateWindow per credential.
	DefaultCreateRate   = 60
	DefaultCreateWindow = time.Minute
	// DefaultMaxTokens live tokens per workspace.
	DefaultMaxTokens = 10_000
	// MaxGrace is the longest overlap of a rotation.
	MaxGrace = 7 * 24 * time.Hour
)

// Limits bound what the API creates. The zero value limits nothing.
type Limits struct {
	// CreateRate, if set, bounds the tokens one credential creates (and
	// rotates) per window: past it, 429 with Retry-After. Build it with
	// NewCreateRate.
	CreateRate *throttle.Limiter
	// MaxTokens, if positive, is the most live tokens a workspace holds:
	// past it, 409 limit_reached.
	MaxTokens int
	// MaxLifetime, if positive, caps every new token's expiry at now +
	// MaxLifetime.
	MaxLifetime time.Duration
}

// NewCreateRate returns the limiter of create_rate n/window.
func NewCreateRate(n int, window time.Duration) (*throttle.Limiter, error) {
	return throttle.New(throttle.Config{Failures: n, Window: window})
}

// Operation names and results of the lineage requests.
const (
	OpCreate          = "create"
	OpRevoke          = "revoke"
	OpRotate          = "rotate"
	OpRevokeCreatedBy = "revoke_created_by"

	// ResultRateLimited: past create_rate (429).
	ResultRateLimited = "rate_limited"
	// ResultLimitReached: past max_tokens (409).
	ResultLimitReached = "limit_reached"
	// ResultReused: a second rotation of a token (409); logged at WARN.
	ResultReused = "token_reused"
	// ResultCreatorInactive: the caller was revoked or expired by the time
	// of the write (401).
	ResultCreatorInactive = "creator_inactive"
	// ResultInactive: the token to rotate is revoked or expired (409).
	ResultInactive = "token_inactive"
)

// creatorOf is who the caller is, as recorded on the tokens it creates.
func creatorOf(who *grant.Principal, session string) *keystore.Creator {
	switch who.Kind {
	case grant.KindAPIKey:
		return &keystore.Creator{Kind: keystore.CreatorAPIKey, ID: who.Subject}
	case grant.KindJWT:
		return &keystore.Creator{Kind: keystore.CreatorJWT, Subject: who.Subject, Session: session}
	}
	return nil
}

// mint charges one create to the caller's budget (create_rate) and makes a
// new token and id; when it cannot, a is the answer (429, or 503).
func (s *Service) mint(who *grant.Principal, op *Operation) (raw, id string, a Answer, ok bool) {
	if ok, wait := s.Limits.CreateRate.Take(who.Kind.String()+":"+who.Subject, s.now()); !ok {
		a := refuse(op, http.StatusTooManyRequests, ResultRateLimited, "rate_limited",
			"this credential created too many tokens; try again later")
		a.Header.Set("Retry-After", strconv.Itoa(int(wait/time.Second)))
		return "", "", a, false
	}
	raw, err := s.newToken()
	if err == nil {
		id, err = s.newID()
	}
	if err != nil {
		return "", "", storeFailed(op, err), false
	}
	return raw, id, Answer{}, true
}

// lineageFailed answers a lineage error of the store.
func lineageFailed(op *Operation, err error) Answer {
	var reuse *keystore.ReuseError
	switch {
	case errors.As(err, &reuse) || errors.Is(err, keystore.ErrTokenReused):
		return refuse(op, http.StatusConflict, ResultReused, "token_reused",
			"the token was already rotated: it and every token rotated from it are revoked")
	case errors.Is(err, keystore.ErrCreatorInactive):
		return refuse(op, http.StatusUnauthorized, ResultCreatorInactive, "invalid_token",
			"the credential was revoked or expired")
	case errors.Is(err, keystore.ErrLimitReached):
		return refuse(op, http.StatusConflict, ResultLimitReached, "limit_reached",
			"the workspace holds the most live tokens allowed; revoke some first")
	case errors.Is(err, keystore.ErrTokenInactive):
		return refuse(op, http.StatusConflict, ResultInactive, "token_inactive", "the token is revoked or expired")
	case errors.Is(err, keystore.ErrNotFound):
		return refuse(op, http.StatusNotFound, ResultNotFound, codeNotFound, "no such token in this workspace")
	}
	return storeFailed(op, err)
}

// rotation reports whether t names base/{id}/rotate (or base/self/rotate:
// id "self").
func (t Target) rotation() (id string, ok bool) {
	if !t.Item {
		return "", false
	}
	id, ok = strings.CutSuffix(t.ID, "/rotate")
	return id, ok && ValidID(id)
}

// selfID names the caller's own token in base/self/rotate. No token id is
// "self" (keystore.NewTokenID makes tok_…).
const selfID = "self"

// rotate answers POST base/{id}/rotate and base/self/rotate.
func (s *Service) rotate(ctx context.Context, req *Request, who *grant.Principal, id string, op *Operation) Answer {
	if req.Method != http.MethodPost {
		return methodNotAllowed(http.MethodPost)
	}
	t := req.Target
	if id == selfID {
		if who.Kind != grant.KindAPIKey {
			return refuse(op, http.StatusForbidden, ResultForbidden, codeForbidden,
				"only an API token rotates itself; name the token to rotate")
		}
		id = who.Subject
		op.TokenID = id
	} else {
		t.ID, op.TokenID = id, id
		if a, ok := s.manageable(ctx, who, t, op, "rotate"); !ok {
			return a
		}
	}
	grace, bad := readRotate(req)
	if bad != nil {
		return refuse(op, bad.status, ResultInvalid, bad.code, bad.msg)
	}
	raw, newID, a, ok := s.mint(who, op)
	if !ok {
		return a
	}
	e, err := s.Store.Rotate(ctx, keystore.RotateRequest{
		ID: id, Workspace: t.Workspace, NewID: newID, NewHash: apikey.Sum(raw).String(), Grace: grace,
		Caller: creatorOf(who, req.CallerSession), Now: s.now().UTC().Truncate(time.Second),
		MaxLive: s.Limits.MaxTokens, MaxLifetime: s.Limits.MaxLifetime,
	})
	if err != nil {
		var reuse *keystore.ReuseError
		if errors.As(err, &reuse) {
			op.Revoked = reuse.Revoked
		}
		return lineageFailed(op, err)
	}
	op.Scopes, _ = grant.ParseScopeNames(e.Scopes)
	op.NewTokenID, op.Result = e.ID, ResultOK
	a = jsonAnswer(http.StatusCreated, createdToken{Token: raw, tokenJSON: shown(&e)})
	a.Header.Set("Location", t.Collection+"/"+e.ID)
	return a
}

var errGraceType = errors.New("grace: not a string")

// rotateError is a refused rotate body.
type rotateError struct {
	status    int
	code, msg string
}

// readRotate reads a rotate request's body: empty, or one JSON object
// whose only field is "grace", a Go duration from 0 to MaxGrace (default
// 0), spelled exactly and given once; a body needs Content-Type:
// application/json.
func readRotate(req *Request) (time.Duration, *rotateError) {
	body := []byte(nil)
	if req.Body != nil {
		var err error
		body, err = io.ReadAll(io.LimitReader(req.Body, MaxBodyBytes+1))
		if err != nil {
			return 0, &rotateError{http.StatusBadRequest, codeInvalid, "body: could not be read"}
		}
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return 0, nil
	}
	if mt, _, err := mime.ParseMediaType(req.ContentType); err != nil || mt != "application/json" {
		return 0, &rotateError{http.StatusUnsupportedMediaType, codeMediaType, "send the body with Content-Type: application/json"}
	}
	bad := func(msg string) (time.Duration, *rotateError) {
		return 0, &rotateError{http.StatusBadRequest, codeInvalid, msg}
	}
	if len(body) > MaxBodyBytes || !utf8.Valid(body) {
		return bad("body: larger than 16 KiB or not UTF-8")
	}
	var grace *string
	err := jsonwire.ReadObject(body, []string{"grace"}, func(_ string, raw []byte) error {
		v, ok := jsonwire.String(raw)
		if !ok {
			return errGraceType
		}
		grace = &v
		return nil
	})
	var je *jsonwire.Error
	switch {
	case errors.Is(err, errGraceType):
		return bad(`grace: want a duration string such as "1h" or "0s"`)
	case errors.As(err, &je) && je.Problem == jsonwire.UnknownName:
		return bad("body: unknown field " + redact.Name(je.Name) + " (want grace)")
	case errors.As(err, &je) && je.Problem == jsonwire.RepeatedName:
		return bad("grace: appears more than once")
	case err != nil:
		return bad(`body: want a JSON object such as {"grace": "1h"}`)
	case grace == nil:
		return 0, nil
	}
	d, err := time.ParseDuration(*grace)
	if err != nil || d < 0 || d > MaxGrace {
		return bad(`grace: want a duration from "0s" to "168h" (7 days)`)
	}
	return d, nil
}

// revokeCreatedBy answers DELETE base?created_by=…: every token the
// credential named created, with their subtrees, is revoked now. Admin
// only; a project-scoped caller reaches its project's tokens only.
func (s *Service) revokeCreatedBy(ctx context.Context, req *Request, who *grant.Principal, op *Operation) Answer {
	q, err := url.ParseQuery(req.Query)
	vals := q["created_by"]
	if err != nil || len(vals) != 1 || len(q) != 1 {
		return refuse(op, http.StatusBadRequest, ResultInvalid, codeInvalid,
			`created_by: give it once, the only query parameter: a token id, "session:<sid>" or "user:<sub>"`)
	}
	f, err := keystore.ParseCreatorFilter(vals[0])
	if err != nil {
		return refuse(op, http.StatusBadRequest, ResultInvalid, codeInvalid, err.Error())
	}
	if who.Scopes&grant.ScopeAdmin == 0 {
		return refuse(op, http.StatusForbidden, ResultForbidden, codeForbidden,
			"only an admin credential revokes by creator")
	}
	ids, err := s.Store.RevokeCreatedBy(ctx, req.Target.Workspace, who.Project, f, s.now().UTC().Truncate(time.Second))
	if err != nil {
		return storeFailed(op, err)
	}
	if ids == nil {
		ids = []string{}
	}
	op.Result, op.Revoked = ResultOK, ids
	return jsonAnswer(http.StatusOK, struct {
		Revoked []string `json:"revoked"`
	}{ids})
}

// shown is what an answer shows of a stored entry.
func shown(e *keystore.TokenEntry) tokenJSON {
	scopes := e.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	j := tokenJSON{ID: e.ID, Name: e.Name, Workspace: e.Workspace, Project: e.Project,
		Scopes: scopes, CreatedAt: e.CreatedAt, ExpiresAt: e.ExpiresAt, CreatedBy: e.CreatedBy,
		AllowedIPs: allowedIPs(e.AllowedIPs)}
	if e.RotatedFrom != "" {
		r := e.RotatedFrom
		j.RotatedFrom = &r
	}
	return j
}
