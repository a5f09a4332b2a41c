package caddymodule

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/deplo-sh/deplo-auth/decide"
	"github.com/deplo-sh/deplo-auth/grant"
	"github.com/deplo-sh/deplo-auth/internal/jsonwire"
)

// retryAfterStoreError is the Retry-After of a 503, in seconds.
var retryAfterStoreError = []string{"5"}

// refusalAnswer is what Caddy needs to answer one decide.Refusal, built
// once, so that refusing a request (the path an attacker drives) allocates
// next to nothing: the handler error and the placeholders are shared.
type refusalAnswer struct {
	refusal *decide.Refusal
	err     error // a caddyhttp.HandlerError
	repl    caddy.ReplacerFunc
	// body is the JSON body the shipped Caddyfile's handle_errors gives
	// this refusal, which the verify front door writes itself; bodyLen is
	// its Content-Length.
	body    []byte
	bodyLen []string
	// requests holds the deplo_auth_requests_total child of each credential
	// kind, resolved on first use: a label lookup costs more than the rest
	// of a refusal, and resolving eagerly would export series never seen.
	requests [3]atomic.Pointer[prometheus.Counter]
}

// answers holds the answer of every refusal, by decide.Refusal.ID.
var answers = func() []*refusalAnswer {
	out := make([]*refusalAnswer, len(decide.All()))
	for _, f := range decide.All() {
		a := &refusalAnswer{refusal: f}
		a.err = caddyhttp.HandlerError{StatusCode: f.Status, Err: refusalError{f}}
		a.repl = a.placeholder
		a.body = jsonwire.ErrorBody(f.Code, f.Description) // as the shipped handle_errors writes it
		a.bodyLen = []string{strconv.Itoa(len(a.body))}
		out[f.ID] = a
	}
	return out
}()

// placeholder serves {http.auth.error} and {http.auth.error_description}
// for handle_errors.
func (a *refusalAnswer) placeholder(key string) (any, bool) {
	switch key {
	case "http.auth.error":
		return a.refusal.Code, true
	case "http.auth.error_description":
		return a.refusal.Description, true
	}
	return nil, false
}

// counter returns the deplo_auth_requests_total child of this refusal for
// kind. Two first uses at once resolve the same child, so the race is benign.
func (a *refusalAnswer) counter(kind grant.Kind) prometheus.Counter {
	if p := a.requests[kind].Load(); p != nil {
		return *p
	}
	outcome := outcomeDenied
	if a.refusal.Error {
		outcome = outcomeError
	}
	ctr := metricRequests.WithLabelValues(kind.String(), outcome, a.refusal.Reason)
	a.requests[kind].Store(&ctr)
	return ctr
}

type refusalError struct{ f *decide.Refusal }

func (e refusalError) Error() string { return e.f.Code + ": " + e.f.Description }

// challenges holds every WWW-Authenticate value, built once at provision.
// Each is a one-element slice with cap 1, so an append by a later handler
// copies instead of writing into the shared array.
type challenges struct {
	missing, invalidRequest, invalidToken, forbidden []string
	forbiddenScope                                   [16][]string // by grant.ScopeSet
}

func newChallenges(realm string) challenges {
	one := func(s string) []string { return []string{s}[:1:1] }
	base := `Bearer realm="` + realm + `"`
	c := challenges{
		missing:        one(base),
		invalidRequest: one(base + `, error="invalid_request"`),
		invalidToken:   one(base + `, error="invalid_token"`),
		forbidden:      one(base + `, error="insufficient_scope"`),
	}
	for s := range c.forbiddenScope {
		c.forbiddenScope[s] = one(c.forbidden[0] + `, scope="` + grant.ScopeSet(s).String() + `"`)
	}
	return c
}

// of returns the WWW-Authenticate value of a refused outcome (nil: none).
func (c *challenges) of(out *decide.Outcome) []string {
	switch out.Refusal.Challenge {
	case decide.ChallengeBare:
		return c.missing
	case decide.ChallengeInvalidRequest:
		return c.invalidRequest
	case decide.ChallengeInvalidToken:
		return c.invalidToken
	case decide.ChallengeInsufficientScope:
		if out.Scope != 0 {
			return c.forbiddenScope[out.Scope&0xf]
		}
		return c.forbidden
	}
	return nil
}

// refuse answers a refused outcome: the challenge or Retry-After header,
// placeholders for handle_errors ({http.auth.error},
// {http.auth.error_description}), one log entry, a count, and a handler
// error that Caddy turns into the status.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, start time.Time, out *decide.Outcome) error {
	a := h.answer(w, r, start, out)
	if c := h.logger.Check(zapcore.InfoLevel, "request refused"); c != nil {
		c.Write(refusalFields(out, clientIP(r))...)
	}
	return a.err
}

// answer does what every front door does for a refused outcome: the count,
// the decision time, the WWW-Authenticate or Retry-After header and the
// placeholders. It returns the refusal's answer.
func (h *Handler) answer(w http.ResponseWriter, r *http.Request, start time.Time, out *decide.Outcome) *refusalAnswer {
	a := answers[out.Refusal.ID]
	a.counter(out.Kind).Inc()
	hot.decision[out.Kind].Observe(time.Since(start).Seconds())
	if v := h.challenge.of(out); v != nil {
		w.Header()["Www-Authenticate"] = v
	}
	switch {
	case out.Refusal.Error:
		w.Header()["Retry-After"] = retryAfterStoreError
	case out.RetryAfter > 0:
		w.Header()["Retry-After"] = []string{strconv.Itoa(int(out.RetryAfter / time.Second))}
	}
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Map(a.repl)
	}
	return a
}

// refusalFields are the fields of a refusal's log entry, with room for the
// verify front door's own.
func refusalFields(out *decide.Outcome, client string) []zap.Field {
	route := "none"
	switch {
	case out.Match.Route != nil:
		route = out.Match.Route.Pattern()
	case out.Match.VariantOf != nil: // the route it spells differently
		route = out.Match.VariantOf.Pattern()
	}
	fields := make([]zap.Field, 6, 10)
	fields[0] = zap.Int("status", out.Refusal.Status)
	fields[1] = zap.String("reason", out.Refusal.Reason)
	fields[2] = zap.String("route", route)
	fields[3] = zap.String("credential", out.Kind.String())
	fields[4] = zap.String("subject", out.Subject)
	fields[5] = zap.String("client_ip", client)
	return fields
}
