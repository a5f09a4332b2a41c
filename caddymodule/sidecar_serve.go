package caddymodule

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/deplo-sh/deplo-auth/decide"
	"github.com/deplo-sh/deplo-auth/identity"
)

var noStore = []string{"no-store"}

// jsonContentType is the Content-Type of a refusal body.
var jsonContentType = []string{"application/json"}

// serveVerify answers a verify request: the decision about the original
// request it names, never passing it on. Allowed: 200, empty body, the
// identity as response headers. Refused: the proxy-mode status, challenge,
// Retry-After and JSON body.
func (s *Sidecar) serveVerify(w http.ResponseWriter, r *http.Request) error {
	h := &s.Handler
	start := time.Now()
	hdr := w.Header()
	hdr["Cache-Control"] = noStore
	la, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	caller := decide.CallerOf(la != nil && la.Network() == "unix", r.RemoteAddr)
	if !s.rules.trusted.Trusts(caller) {
		out := decide.Outcome{Refusal: decide.RefuseUntrustedCaller}
		return h.refuseVerify(w, r, start, &out, nil, addrString(caller.Addr))
	}
	// Read the original request before Strip: X-Original-URL is one of the
	// override headers it removes.
	orig, err := decide.OriginalOf(s.rules.from, r.Header, r.Method, r.URL.RequestURI(), s.rules.prefix)
	client := addrString(decide.ClientOf(r.Header, caller, s.rules.proxies))
	h.headers.Strip(r)
	if err != nil {
		out := decide.Outcome{Refusal: decide.RefuseBadOriginal}
		return h.refuseVerify(w, r, start, &out, nil, client)
	}
	req := decide.Request{
		Method:        orig.Method,
		Path:          orig.Path,
		RawPath:       orig.RawPath,
		Authorization: r.Header["Authorization"],
		Client:        client,
		Preflight:     h.preflight(r),
		Now:           start,
	}
	out := h.engine.Decide(r.Context(), &req)
	h.noteCredential(&out, start)
	if out.Refusal != nil {
		return h.refuseVerify(w, r, start, &out, &orig, client)
	}
	if out.Public {
		hot.public.Inc()
		w.WriteHeader(http.StatusOK)
		return nil
	}
	var values identity.HeaderValues
	id := identityOf(out.Principal)
	if err := h.headers.Write(hdr, &id, orig.Method, orig.EscapedPath, start, &values); err != nil {
		return fmt.Errorf("signing the identity: %w", err)
	}
	h.observeAllowed(&out, start)
	w.WriteHeader(http.StatusOK)
	return nil
}

// refuseVerify answers a refused verify request as proxy mode does (count,
// challenge, Retry-After, placeholders), writes the JSON body itself, so
// the answer is the same as proxy mode's under Caddyfile.example, and logs
// the original method and path (orig nil: none was named) rather than the
// verify request's URI.
func (h *Handler) refuseVerify(w http.ResponseWriter, r *http.Request, start time.Time, out *decide.Outcome, orig *decide.Original, client string) error {
	a := h.answer(w, r, start, out)
	if c := h.logger.Check(zapcore.InfoLevel, "request refused"); c != nil {
		fields := append(refusalFields(out, client), zap.String("caller", r.RemoteAddr))
		if orig != nil {
			fields = append(fields, zap.String("original_method", orig.Method), zap.String("original_path", orig.EscapedPath))
		}
		c.Write(fields...)
	}
	hdr := w.Header()
	hdr["Content-Type"] = jsonContentType
	hdr["Content-Length"] = a.bodyLen
	w.WriteHeader(out.Refusal.Status)
	_, _ = w.Write(a.body)
	return nil
}

// serve is the handler of every sidecar listener.
func (s *Sidecar) serve(w http.ResponseWriter, r *http.Request) {
	if err := s.serveVerify(w, r); err != nil {
		s.logger.Error("verify", zap.Error(err))
		w.WriteHeader(http.StatusInternalServerError)
	}
}

// addrString is a client address for the guard and logs ("" when unknown:
// a Unix-socket caller that named no client).
func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}
