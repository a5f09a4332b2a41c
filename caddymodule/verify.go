package caddymodule

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/deplo-sh/deplo-auth/decide"
)

// VerifyConfig is the verify front door: another proxy sends a request
// naming the original request it is about to forward, and the handler
// answers the decision about that original request.
type VerifyConfig struct {
	// From says where the original request is named: "forwarded"
	// (X-Forwarded-Method + X-Forwarded-Uri: Traefik ForwardAuth, Caddy
	// forward_auth), "original" (X-Original-Method with X-Original-URI or
	// X-Original-URL: nginx auth_request, ingress-nginx auth-url), "envoy"
	// (the verify request's own method and path less PathPrefix: Envoy
	// ext_authz HTTP service) or "auto" (forwarded when either forwarded
	// header is present, else original; when both kinds are present they
	// must name the same request). Default "auto".
	From string `json:"from,omitempty"`
	// Trusted are the callers (CIDRs or addresses) that may name an
	// original request; any other caller gets 400. A caller on a Unix
	// socket is trusted: the socket's file mode says who may connect.
	// Default 127.0.0.0/8 and ::1.
	Trusted []string `json:"trusted,omitempty"`
	// PathPrefix is removed from the verify request's path to get the
	// original path, with From "envoy" (required there, and only there):
	// Envoy's http_service path_prefix. It starts with "/" and does not end
	// with one.
	PathPrefix string `json:"path_prefix,omitempty"`
	// Listen are network addresses, in Caddy's form
	// ("unix//run/deplo-auth/verify.sock|0222", "127.0.0.1:9191"), on which
	// the handler also answers verify requests itself with a plain net/http
	// server: no site, matcher, log or other handler of Caddy's runs for
	// them, which takes Caddy's per-request work off the sidecar's path
	// (bench/SIDECAR.md). The same trust rules apply. Default: none (only
	// the site the handler is in answers).
	Listen []string `json:"listen,omitempty"`
}

// defaultTrusted is verify.trusted when none is given: loopback only.
var defaultTrusted = []string{"127.0.0.0/8", "::1"}

// verifier is a compiled VerifyConfig.
type verifier struct {
	from    decide.Source
	trusted []netip.Prefix
	prefix  string
}

// compile checks the configuration, naming the field of any mistake.
func (c *VerifyConfig) compile() (*verifier, error) {
	v := &verifier{prefix: c.PathPrefix}
	var ok bool
	if v.from, ok = decide.ParseSource(c.From); !ok {
		return nil, fmt.Errorf("from: %q is not auto, forwarded, original or envoy", c.From)
	}
	switch {
	case v.from == decide.SourceEnvoy && c.PathPrefix == "":
		return nil, fmt.Errorf("path_prefix: required with from envoy (the prefix Envoy puts before the original path)")
	case v.from != decide.SourceEnvoy && c.PathPrefix != "":
		return nil, fmt.Errorf("path_prefix: only used with from envoy")
	case c.PathPrefix != "" && (!strings.HasPrefix(c.PathPrefix, "/") || strings.HasSuffix(c.PathPrefix, "/")):
		return nil, fmt.Errorf("path_prefix: %q must start with / and not end with /", c.PathPrefix)
	}
	for _, addr := range c.Listen {
		na, err := caddy.ParseNetworkAddress(addr)
		if err != nil || na.PortRangeSize() != 1 {
			return nil, fmt.Errorf("listen: %q is not one network address", addr)
		}
	}
	trusted := c.Trusted
	if len(trusted) == 0 {
		trusted = defaultTrusted
	}
	for _, s := range trusted {
		p, err := parseTrusted(s)
		if err != nil {
			return nil, fmt.Errorf("trusted: %q is not a CIDR or an IP address", s)
		}
		v.trusted = append(v.trusted, p)
	}
	return v, nil
}

// parseTrusted reads a CIDR, or an address as a one-address prefix.
func parseTrusted(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// trusts reports whether the caller of r (the proxy, not its client) may
// name an original request: it connected over a Unix socket, or from an
// address in trusted.
func (v *verifier) trusts(r *http.Request) bool {
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok && la.Network() == "unix" {
		return true
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	return v.contains(ap.Addr())
}

// listenVerify starts a plain net/http server on each verify.listen
// address. The listeners come from Caddy's pool, so a config reload that
// keeps an address hands the socket over without a gap.
func (h *Handler) listenVerify(ctx caddy.Context) error {
	for _, addr := range h.Verify.Listen {
		na, err := caddy.ParseNetworkAddress(addr)
		if err != nil {
			return fmt.Errorf("listen %q: %w", addr, err)
		}
		l, err := na.Listen(ctx, 0, net.ListenConfig{})
		if err != nil {
			return fmt.Errorf("listen %q: %w", addr, err)
		}
		ln, ok := l.(net.Listener)
		if !ok {
			return fmt.Errorf("listen %q: not a stream listener", addr)
		}
		srv := &http.Server{
			Handler:           http.HandlerFunc(h.serveVerifyDirect),
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       5 * time.Minute,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          zap.NewStdLog(h.logger.Named("verify")),
		}
		h.verifyServers = append(h.verifyServers, srv)
		go func() { _ = srv.Serve(ln) }()
	}
	return nil
}

// closeVerifyListeners stops the verify.listen servers (their listeners go
// back to Caddy's pool): requests in flight get up to two seconds to finish,
// since the stores they use are released next.
func (h *Handler) closeVerifyListeners() {
	if len(h.verifyServers) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, srv := range h.verifyServers {
		if srv.Shutdown(ctx) != nil {
			_ = srv.Close()
		}
	}
	h.verifyServers = nil
}

// serveVerifyDirect is a verify.listen server's handler.
func (h *Handler) serveVerifyDirect(w http.ResponseWriter, r *http.Request) {
	if err := h.serveVerify(w, r); err != nil {
		h.logger.Error("verify", zap.Error(err))
		w.WriteHeader(http.StatusInternalServerError)
	}
}

func (v *verifier) contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range v.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientOf is the original client's address as a trusted caller reports
// it: the last X-Forwarded-For entry (the one the caller appended; earlier
// ones are the client's word), else X-Real-IP, else the caller's address.
// X-Forwarded-For comes first because proxies append to it but pass a
// client's own X-Real-IP along (Caddy's forward_auth does).
func clientOf(r *http.Request) string {
	if v := r.Header["X-Forwarded-For"]; len(v) > 0 {
		last := v[len(v)-1]
		if i := strings.LastIndexByte(last, ','); i >= 0 {
			last = last[i+1:]
		}
		if a, err := netip.ParseAddr(strings.TrimSpace(last)); err == nil {
			return a.Unmap().String()
		}
	}
	if v := r.Header["X-Real-Ip"]; len(v) == 1 {
		if a, err := netip.ParseAddr(strings.TrimSpace(v[0])); err == nil {
			return a.Unmap().String()
		}
	}
	return callerIP(r)
}

// callerIP is the caller's address as Caddy determines it, or the peer
// address on a verify.listen server (no Caddy vars there).
func callerIP(r *http.Request) string {
	if ip := clientIP(r); ip != "" {
		return ip
	}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return ap.Addr().Unmap().String()
	}
	return r.RemoteAddr
}

var noStore = []string{"no-store"}

// jsonContentType is the Content-Type of a refusal body.
var jsonContentType = []string{"application/json"}

// serveVerify answers a verify request: the decision about the original
// request it names, never passing it on. Allowed: 200, empty body, the
// identity as response headers. Refused: the proxy-mode status, challenge,
// Retry-After and JSON body.
func (h *Handler) serveVerify(w http.ResponseWriter, r *http.Request) error {
	start := time.Now()
	hdr := w.Header()
	hdr["Cache-Control"] = noStore
	if !h.verify.trusts(r) {
		out := decide.Outcome{Refusal: decide.RefuseUntrustedCaller}
		return h.refuseVerify(w, r, start, &out, nil, callerIP(r))
	}
	// Read the original request before Strip: X-Original-URL is one of the
	// override headers it removes.
	orig, err := decide.OriginalOf(h.verify.from, r.Header, r.Method, r.URL.RequestURI(), h.verify.prefix)
	client := clientOf(r)
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
	// The answer carries no identity header but the ones written here,
	// whatever ran before in the route.
	for name := range hdr {
		if h.headers.Matches(name) {
			delete(hdr, name)
		}
	}
	if out.Public {
		hot.public.Inc()
		w.WriteHeader(http.StatusOK)
		return nil
	}
	// As in proxy mode, one allocation backs the header values and the
	// placeholders.
	d := &Decision{Principal: out.Principal, Match: out.Match}
	id := identityOf(out.Principal)
	if err := h.headers.Write(hdr, &id, orig.Method, orig.EscapedPath, start, &d.headerValues); err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, fmt.Errorf("signing the identity: %w", err))
	}
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Map(d.placeholder)
	}
	h.observeAllowed(&out, start)
	w.WriteHeader(http.StatusOK)
	return nil
}

// refuseVerify answers a refused verify request as proxy mode does (count,
// challenge, Retry-After, placeholders), writes the JSON body itself, so
// the answer does not depend on the verify site's handle_errors, and logs
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
