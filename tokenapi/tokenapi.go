// Package tokenapi serves the token lifecycle over HTTP (docs/tokens.md;
// docs/design.md, "Token lifecycle"): create a token (shown once), list, read and revoke
// the tokens of one workspace, for a caller that deplo_auth has already
// verified and bound to that workspace. It imports nothing from Caddy: the
// module deplo_auth_tokens translates a request in and an Answer out, and
// tests and fuzzers call Serve directly.
//
// No escalation: the workspace is the path's and must be the caller's; a
// caller never creates (or revokes) a token with a scope it does not hold
// (admin may grant and revoke any); a project-scoped caller creates, sees
// and revokes only its project's tokens; another workspace's (or project's) token answers 404,
// exactly as an unknown id does. Who may call at all is deplo_auth's route
// policy (read to list, admin to manage, in the shipped configuration).
package tokenapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"time"

	"github.com/deplo-sh/deplo-auth/apikey"
	"github.com/deplo-sh/deplo-auth/grant"
	"github.com/deplo-sh/deplo-auth/internal/jsonwire"
	"github.com/deplo-sh/deplo-auth/keystore"
)

// Service answers token API requests from one key store.
type Service struct {
	// Store is the key store's admin interface. Required.
	Store keystore.TokenManager
	// Now, NewToken and NewID default to time.Now, apikey.Generate and
	// keystore.NewTokenID; tests replace them.
	Now      func() time.Time
	NewToken func() (string, error)
	NewID    func() (string, error)
	// Limits bound creates (create_rate, max_tokens, max_lifetime).
	Limits Limits
}

// Request is one token API request.
type Request struct {
	// Method as sent.
	Method string
	// Target is what the path names (see Base.Match).
	Target Target
	// Caller is the verified principal deplo_auth decided.
	Caller *grant.Principal
	// ContentType is the Content-Type header ("" when absent).
	ContentType string
	// Body is read up to MaxBodyBytes+1 bytes, for POST only.
	Body io.Reader
	// Query is the raw query string (DELETE base?created_by=…).
	Query string
	// CallerSession is the session id (sid, else jti) of a session JWT
	// caller, recorded as the creator of the tokens it creates.
	CallerSession string
}

// Answer is the response to write.
type Answer struct {
	Status int
	Header http.Header
	Body   []byte
	// Op is set for every create and revoke, for the one log line and the
	// count each gets.
	Op *Operation
}

// Operation describes a create or revoke for the log and metrics: never
// the token or its hash.
type Operation struct {
	// Name is "create" or "revoke".
	Name string
	// Result is one of the Result* values.
	Result string
	// TokenID is the token created or revoked ("" when none was named
	// validly or created).
	TokenID string
	// Scopes are the token's scopes (requested, for a refused create).
	Scopes grant.ScopeSet
	// Reason is the refusal's description, or the store's error.
	Reason string
	// NewTokenID is the token a rotation created.
	NewTokenID string
	// Revoked are the tokens a revocation by creator, or a rotation found
	// reused, revoked.
	Revoked []string
}

// The results of an operation: the label values of
// deplo_auth_token_operations_total{result}.
const (
	ResultOK        = "ok"
	ResultInvalid   = "invalid_request"
	ResultForbidden = "forbidden"
	ResultNotFound  = "not_found"
	ResultError     = "error"
)

// Operations and Results list the label values, for metrics.
var (
	Operations = []string{OpCreate, OpRevoke, OpRotate, OpRevokeCreatedBy}
	Results    = []string{ResultOK, ResultInvalid, ResultForbidden, ResultNotFound, ResultError,
		ResultRateLimited, ResultLimitReached, ResultReused, ResultCreatorInactive, ResultInactive}
)

// Error codes of the JSON error bodies.
const (
	codeInvalid     = "invalid_request"
	codeForbidden   = "insufficient_scope"
	codeNotFound    = "not_found"
	codeMethod      = "method_not_allowed"
	codeMediaType   = "unsupported_media_type"
	codeUnavailable = "temporarily_unavailable"
)

// Serve answers req.
func (s *Service) Serve(ctx context.Context, req *Request) Answer {
	who := req.Caller
	t := req.Target
	var op *Operation
	_, rotation := t.rotation()
	switch {
	case rotation:
		if req.Method == http.MethodPost {
			op = &Operation{Name: OpRotate}
		}
	case !t.Item && req.Method == http.MethodPost:
		op = &Operation{Name: OpCreate}
	case !t.Item && req.Method == http.MethodDelete:
		op = &Operation{Name: OpRevokeCreatedBy}
	case t.Item && req.Method == http.MethodDelete:
		op = &Operation{Name: OpRevoke}
	}
	if op != nil && t.Item && ValidID(t.ID) {
		op.TokenID = t.ID
	}
	a := s.serve(ctx, req, who, op)
	a.Op = op
	return a
}

func (s *Service) serve(ctx context.Context, req *Request, who *grant.Principal, op *Operation) Answer {
	t := req.Target
	// deplo_auth bound the workspace to the caller when its route binds
	// {workspace}; this holds even where it does not.
	if who == nil || who.Workspace == "" || who.Workspace != t.Workspace {
		return refuse(op, http.StatusForbidden, ResultForbidden, codeForbidden, "the credential does not belong to this workspace")
	}
	switch {
	case !t.Item:
		switch req.Method {
		case http.MethodGet, http.MethodHead:
			return s.list(ctx, who, t)
		case http.MethodPost:
			return s.create(ctx, req, who, op)
		case http.MethodDelete:
			return s.revokeCreatedBy(ctx, req, who, op)
		}
		return methodNotAllowed(t.Methods())
	}
	if id, ok := t.rotation(); ok {
		return s.rotate(ctx, req, who, id, op)
	}
	if !ValidID(t.ID) {
		// Checked before the method, so that a path trick never learns
		// more than "no such token".
		return refuse(op, http.StatusNotFound, ResultNotFound, codeNotFound, "no such token in this workspace")
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead:
		rec, a, ok := s.visible(ctx, who, t, nil)
		if !ok {
			return a
		}
		return jsonAnswer(http.StatusOK, listed(rec))
	case http.MethodDelete:
		return s.revoke(ctx, who, t, op)
	}
	return methodNotAllowed(t.Methods())
}

// visible returns the token t names when the caller may see it: of the
// path's workspace and, for a project-scoped caller, of its project. Any
// other token is reported exactly as an unknown one.
func (s *Service) visible(ctx context.Context, who *grant.Principal, t Target, op *Operation) (keystore.TokenRecord, Answer, bool) {
	rec, err := s.Store.Token(ctx, t.ID)
	switch {
	case errors.Is(err, keystore.ErrNotFound):
	case err != nil:
		return rec, storeFailed(op, err), false
	case rec.Workspace == t.Workspace && (who.Project == "" || project(rec) == who.Project):
		return rec, Answer{}, true
	}
	return rec, refuse(op, http.StatusNotFound, ResultNotFound, codeNotFound, "no such token in this workspace"), false
}

func (s *Service) list(ctx context.Context, who *grant.Principal, t Target) Answer {
	recs, err := s.Store.ListTokens(ctx, t.Workspace)
	if err != nil {
		return storeFailed(nil, err)
	}
	out := struct {
		Tokens []listedToken `json:"tokens"`
	}{Tokens: make([]listedToken, 0, len(recs))}
	for _, rec := range recs {
		// The store filters by workspace; checked again, as visible does.
		if rec.Workspace == t.Workspace && (who.Project == "" || project(rec) == who.Project) {
			out.Tokens = append(out.Tokens, listed(rec))
		}
	}
	return jsonAnswer(http.StatusOK, out)
}

func (s *Service) create(ctx context.Context, req *Request, who *grant.Principal, op *Operation) Answer {
	// A body without Content-Type: application/json is refused before it
	// is read: an HTML form (or a fetch with no-cors) can send text/plain
	// or no type cross-site without a preflight, never application/json.
	if mt, _, err := mime.ParseMediaType(req.ContentType); err != nil || mt != "application/json" {
		a := errorAnswer(http.StatusUnsupportedMediaType, codeMediaType, "send the body with Content-Type: application/json")
		op.Result, op.Reason = ResultInvalid, "Content-Type is not application/json"
		return a
	}
	if req.Body == nil {
		req.Body = http.NoBody
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, MaxBodyBytes+1))
	if err != nil {
		return refuse(op, http.StatusBadRequest, ResultInvalid, codeInvalid, "body: could not be read")
	}
	now := s.now()
	in, bad := parseCreate(body, now)
	if bad != nil {
		return refuse(op, http.StatusBadRequest, ResultInvalid, codeInvalid, bad.msg)
	}
	op.Scopes = in.Scopes
	// No escalation: only admin grants a scope the caller lacks; a
	// project-scoped caller creates tokens of its own project only.
	if who.Scopes&grant.ScopeAdmin == 0 && !who.Scopes.Has(in.Scopes) {
		return refuse(op, http.StatusForbidden, ResultForbidden, codeForbidden,
			"scopes: a credential grants only scopes it holds ("+who.Scopes.String()+"); admin grants any")
	}
	if who.Project != "" && in.Project != who.Project {
		return refuse(op, http.StatusForbidden, ResultForbidden, codeForbidden,
			"project: a project-scoped credential creates tokens of its own project only")
	}

	raw, id, a, ok := s.mint(who, op)
	if !ok {
		return a
	}
	created := now.UTC().Truncate(time.Second)
	e := keystore.TokenEntry{
		ID:        id,
		Name:      in.Name,
		Hash:      apikey.Sum(raw).String(),
		Workspace: req.Target.Workspace,
		Scopes:    in.Scopes.Names(),
		CreatedAt: created,
	}
	if in.Project != "" {
		p := in.Project
		e.Project = &p
	}
	if !in.ExpiresAt.IsZero() {
		x := in.ExpiresAt
		e.ExpiresAt = &x
	}
	if s.Limits.MaxLifetime > 0 {
		x := created.Add(s.Limits.MaxLifetime)
		e.ExpiresAt = keystore.CapExpiry(e.ExpiresAt, &x)
	}
	e.AllowedIPs = in.AllowedIPs
	// The store checks the caller again at the write (and caps the expiry
	// at an API token caller's), under the lock the write holds.
	e.CreatedBy = creatorOf(who, req.CallerSession)
	stored, err := s.Store.Create(ctx, e, keystore.CreateOptions{Now: created, MaxLive: s.Limits.MaxTokens})
	if err != nil {
		return lineageFailed(op, err)
	}
	op.TokenID, op.Result = id, ResultOK
	a = jsonAnswer(http.StatusCreated, createdToken{Token: raw, tokenJSON: shown(&stored)})
	a.Header.Set("Location", req.Target.Collection+"/"+id)
	return a
}

// manageable reports whether who may revoke or rotate (verb) the token t
// names: it is visible (see visible), and, the mirror of create's rule, it
// holds no scope who lacks unless who is admin — a credential cannot cut
// off or replace one stronger than itself (a deploy token revoking the
// admin's). It records the token's scopes in op.
func (s *Service) manageable(ctx context.Context, who *grant.Principal, t Target, op *Operation, verb string) (Answer, bool) {
	rec, a, ok := s.visible(ctx, who, t, op)
	if !ok {
		return a, false
	}
	op.Scopes, _ = grant.ParseScopeNames(rec.Scopes)
	if who.Scopes&grant.ScopeAdmin == 0 && !who.Scopes.Has(op.Scopes) {
		return refuse(op, http.StatusForbidden, ResultForbidden, codeForbidden,
			"a credential "+verb+"s only tokens whose scopes it holds ("+who.Scopes.String()+"); admin "+verb+"s any"), false
	}
	return Answer{}, true
}

func (s *Service) revoke(ctx context.Context, who *grant.Principal, t Target, op *Operation) Answer {
	if a, ok := s.manageable(ctx, who, t, op, "revoke"); !ok {
		return a
	}
	// An earlier revocation stands (keystore.TokenManager), so a second DELETE
	// is a 204 that changes nothing.
	if _, err := s.Store.RevokeToken(ctx, t.ID, s.now().UTC().Truncate(time.Second)); err != nil {
		if errors.Is(err, keystore.ErrNotFound) { // removed in between
			return refuse(op, http.StatusNotFound, ResultNotFound, codeNotFound, "no such token in this workspace")
		}
		return storeFailed(op, err)
	}
	op.Result = ResultOK
	return Answer{Status: http.StatusNoContent, Header: http.Header{"Cache-Control": {"no-store"}}}
}

// tokenJSON is what every answer shows of a token.
type tokenJSON struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Workspace string     `json:"workspace"`
	Project   *string    `json:"project"`
	Scopes    []string   `json:"scopes"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at"`
	// CreatedBy is null for a token whose creator was not recorded.
	CreatedBy   *keystore.Creator `json:"created_by"`
	RotatedFrom *string           `json:"rotated_from"`
	// AllowedIPs is [] for a token usable from anywhere.
	AllowedIPs []string `json:"allowed_ips"`
}

// listedToken is a token as listed: never the token, never its hash.
type listedToken struct {
	tokenJSON
	RevokedAt *time.Time `json:"revoked_at"`
	// RevokedReason is why, when known ("leaked"); omitted otherwise.
	RevokedReason string     `json:"revoked_reason,omitempty"`
	LastUsedAt    *time.Time `json:"last_used_at"`
}

// createdToken is the answer to a create: the only time the token is shown.
type createdToken struct {
	tokenJSON
	Token string `json:"token"`
}

func listed(r keystore.TokenRecord) listedToken {
	return listedToken{tokenJSON: shown(&r.TokenEntry), RevokedAt: r.RevokedAt, RevokedReason: r.RevokedReason, LastUsedAt: r.LastUsedAt}
}

// allowedIPs shows a token's allowed_ips, [] for none.
func allowedIPs(list []string) []string {
	if list == nil {
		return []string{}
	}
	return list
}

func project(r keystore.TokenRecord) string {
	if r.Project == nil {
		return ""
	}
	return *r.Project
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Service) newToken() (string, error) {
	if s.NewToken != nil {
		return s.NewToken()
	}
	return apikey.Generate()
}

func (s *Service) newID() (string, error) {
	if s.NewID != nil {
		return s.NewID()
	}
	return keystore.NewTokenID()
}

// jsonAnswer encodes v.
func jsonAnswer(status int, v any) Answer {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil { // cannot happen with these types
		return errorAnswer(http.StatusInternalServerError, "server_error", "could not encode the answer")
	}
	return bodyAnswer(status, b.Bytes())
}

// errorAnswer is the JSON error body, as every error deplo-auth answers.
func errorAnswer(status int, code, description string) Answer {
	return bodyAnswer(status, append(jsonwire.ErrorBody(code, description), '\n'))
}

// bodyAnswer answers a JSON body. Every answer is Cache-Control: no-store:
// the create answer holds the token, the others a workspace's token list.
func bodyAnswer(status int, body []byte) Answer {
	return Answer{Status: status, Body: body, Header: http.Header{
		"Content-Type":  {"application/json"},
		"Cache-Control": {"no-store"},
	}}
}

// refuse answers an error and records it on op (nil for a read).
func refuse(op *Operation, status int, result, code, description string) Answer {
	if op != nil {
		op.Result, op.Reason = result, description
	}
	return errorAnswer(status, code, description)
}

// storeFailed answers 503: the store did not answer (its error goes to the
// log through op, never to the client).
func storeFailed(op *Operation, err error) Answer {
	if op != nil {
		op.Result, op.Reason = ResultError, err.Error()
	}
	a := errorAnswer(http.StatusServiceUnavailable, codeUnavailable, "the key store did not answer; try again")
	a.Header.Set("Retry-After", "5")
	return a
}

func methodNotAllowed(allow string) Answer {
	a := errorAnswer(http.StatusMethodNotAllowed, codeMethod, "allowed methods: "+allow)
	a.Header.Set("Allow", allow)
	return a
}
