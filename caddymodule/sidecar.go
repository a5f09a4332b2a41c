package caddymodule

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/deplo-sh/deplo-auth/decide"
)

func init() {
	caddy.RegisterModule(Sidecar{})
}

// Sidecar is the deplo_auth_sidecar app: an authorizer that another proxy
// (nginx auth_request, Traefik ForwardAuth, Envoy ext_authz, Caddy
// forward_auth, ingress-nginx auth-url) asks about a request before it
// forwards it. It owns its listeners: every request on them is a question
// about the original request the caller names, answered 200 with the
// identity as response headers, or with the refusal. There is no routing,
// host matching or other handler that a request could reach instead.
//
// It takes every option of the deplo_auth handler (keys, cache, jwt,
// routes, default, throttle, …), and shares the key store, token cache and
// change feed with deplo_auth handlers of the same store configuration.
type Sidecar struct {
	// Listen are the addresses to answer on, in Caddy's network address
	// form: "unix//run/deplo-auth/verify.sock|0660" (a Unix socket and its
	// file mode) or "127.0.0.1:9191". Required. They are bound when the
	// app starts (never by `caddy validate`) and kept across config reloads.
	Listen []string `json:"listen,omitempty"`

	// VerifyConfig: from, trusted, trusted_proxies, path_prefix.
	VerifyConfig

	// Handler holds every deplo_auth option (its JSON fields sit beside
	// listen): the decision is the handler's.
	Handler

	ctx      caddy.Context
	rules    *sidecarRules
	servers  []*sidecarServer
	listened []string // pool keys held by servers
}

// VerifyConfig says how the sidecar reads the original request and whom it
// believes.
type VerifyConfig struct {
	// From says where the original request is named: "forwarded"
	// (X-Forwarded-Method + X-Forwarded-Uri: Traefik ForwardAuth, Caddy
	// forward_auth), "original" (X-Original-Method with X-Original-URI or
	// X-Original-URL: nginx auth_request, ingress-nginx auth-url), "envoy"
	// (the request's own method and path less PathPrefix: Envoy ext_authz
	// HTTP service) or "auto" (forwarded when either forwarded header is
	// present, else original; when both kinds are present they must name
	// the same request). Default "auto".
	From string `json:"from,omitempty"`
	// Trusted are the TCP callers (CIDRs or addresses) that may name an
	// original request; any other caller gets 400. A caller on a Unix
	// socket is trusted: the socket's owner, group and mode say who may
	// connect. Default 127.0.0.0/8 and ::1.
	Trusted []string `json:"trusted,omitempty"`
	// TrustedProxies are the hops (CIDRs or addresses) skipped when
	// X-Forwarded-For is walked from the right to find the client: add a
	// load balancer's range here, so that one client's failures never
	// throttle another behind it. Default: Trusted.
	TrustedProxies []string `json:"trusted_proxies,omitempty"`
	// PathPrefix is removed from the request's path to get the original
	// path, with From "envoy" (required there, and only there): Envoy's
	// http_service path_prefix. It starts with "/" and does not end with
	// one.
	PathPrefix string `json:"path_prefix,omitempty"`
}

// defaultTrusted is trusted when none is given: loopback only.
var defaultTrusted = []string{"127.0.0.0/8", "::1"}

// sidecarRules is a compiled VerifyConfig: where the original request is
// named, which callers may name it, and which hops X-Forwarded-For skips.
type sidecarRules struct {
	from    decide.Source
	trusted decide.Ranges
	proxies decide.Ranges
	prefix  string
}

// compile checks the configuration, naming the field of any mistake.
func (c *VerifyConfig) compile() (*sidecarRules, error) {
	v := &sidecarRules{prefix: c.PathPrefix}
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
	trusted := c.Trusted
	if len(trusted) == 0 {
		trusted = defaultTrusted
	}
	var err error
	if v.trusted, err = decide.ParseRanges(trusted); err != nil {
		return nil, fmt.Errorf("trusted: %w", err)
	}
	v.proxies = v.trusted
	if len(c.TrustedProxies) > 0 {
		if v.proxies, err = decide.ParseRanges(c.TrustedProxies); err != nil {
			return nil, fmt.Errorf("trusted_proxies: %w", err)
		}
	}
	return v, nil
}

// checkListen checks the listen addresses without binding them.
func checkListen(addrs []string) error {
	if len(addrs) == 0 {
		return errors.New("listen: at least one address is required (unix/<path>|<mode> or <host>:<port>)")
	}
	for _, addr := range addrs {
		na, err := caddy.ParseNetworkAddress(addr)
		if err != nil || na.PortRangeSize() != 1 {
			return fmt.Errorf("listen: %q is not one network address", addr)
		}
		if !na.IsUnixNetwork() && na.Network != "tcp" && na.Network != "tcp4" && na.Network != "tcp6" {
			return fmt.Errorf("listen: %q: want a Unix socket or a TCP address", addr)
		}
	}
	return nil
}

// CaddyModule returns the Caddy module information.
func (Sidecar) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "deplo_auth_sidecar",
		New: func() caddy.Module { return new(Sidecar) },
	}
}

// Provision checks the configuration and opens (or shares) the key store,
// cache and verifiers. It binds nothing: that is Start's job.
func (s *Sidecar) Provision(ctx caddy.Context) error {
	s.ctx = ctx
	if err := checkListen(s.Listen); err != nil {
		return err
	}
	var err error
	if s.rules, err = s.VerifyConfig.compile(); err != nil {
		return err
	}
	return s.Handler.Provision(ctx)
}

// Validate checks the provisioned app.
func (s *Sidecar) Validate() error { return s.Handler.Validate() }

// Start binds the listeners (through Caddy's listener pool, so a reload
// that keeps an address keeps its socket) and serves them.
func (s *Sidecar) Start() error {
	for _, addr := range s.Listen {
		ln, key, err := acquireListener(s.ctx, addr)
		if err != nil {
			s.stopServers()
			return fmt.Errorf("listen %q: %w", addr, err)
		}
		srv := newSidecarServer(http.HandlerFunc(s.serve), s.logger.Named("server"))
		srv.ln = ln
		s.servers = append(s.servers, srv)
		s.listened = append(s.listened, key)
		go func() { _ = srv.Serve(ln); close(srv.served) }()
		s.logger.Info("answering", zap.String("listen", addr))
	}
	return nil
}

// Stop stops serving; the sockets stay open while a newer config uses
// them, so a reload refuses no connection.
func (s *Sidecar) Stop() error {
	s.stopServers()
	return nil
}

func (s *Sidecar) stopServers() {
	var wg sync.WaitGroup
	for _, srv := range s.servers {
		wg.Add(1)
		go func() { defer wg.Done(); srv.stop(5 * time.Second) }()
	}
	wg.Wait()
	for _, key := range s.listened {
		releaseListener(key)
	}
	s.servers, s.listened = nil, nil
}

// sidecarServer is one listener's HTTP server. It stops without dropping
// a request it has accepted, which http.Server.Shutdown would do to a
// request read after shutdown began (on a connection the new config could
// not have taken over).
type sidecarServer struct {
	*http.Server
	ln     net.Listener
	served chan struct{} // closed when Serve has returned
	busy   sync.Map      // net.Conn → struct{}: connections with a request to answer (New, Active)
}

func newSidecarServer(h http.Handler, logger *zap.Logger) *sidecarServer {
	srv := &sidecarServer{served: make(chan struct{})}
	srv.Server = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          zap.NewStdLog(logger),
		ConnState: func(c net.Conn, st http.ConnState) {
			if st == http.StateNew || st == http.StateActive {
				srv.busy.Store(c, struct{}{})
			} else {
				srv.busy.Delete(c)
			}
		},
	}
	return srv
}

// stop closes the server's listener (the socket goes on), waits for Serve
// to return, turns keep-alive off (idle connections close now; a busy one
// closes after its answer), waits up to grace for every accepted request to
// be answered, then closes what is left.
func (srv *sidecarServer) stop(grace time.Duration) {
	deadline := time.Now().Add(grace)
	_ = srv.ln.Close()
	// Once Serve has returned, every connection it accepted is tracked.
	select {
	case <-srv.served:
	case <-time.After(grace):
	}
	srv.SetKeepAlivesEnabled(false)
	for time.Now().Before(deadline) {
		idle := true
		srv.busy.Range(func(any, any) bool { idle = false; return false })
		if idle {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	_ = srv.Close()
}

// Cleanup releases the store and cache references.
func (s *Sidecar) Cleanup() error { return s.Handler.Cleanup() }

// Interface guards
var (
	_ caddy.App          = (*Sidecar)(nil)
	_ caddy.Provisioner  = (*Sidecar)(nil)
	_ caddy.Validator    = (*Sidecar)(nil)
	_ caddy.CleanerUpper = (*Sidecar)(nil)
)
