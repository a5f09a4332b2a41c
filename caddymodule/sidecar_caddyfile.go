package caddymodule

import (
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

// sidecarOptions are the options a deplo_auth_sidecar block has beside a
// deplo_auth block's (see handlerOptions).
var sidecarOptions = []string{"listen", "from", "trusted", "trusted_proxies", "path_prefix"}

func init() {
	httpcaddyfile.RegisterGlobalOption("deplo_auth_sidecar", parseSidecarOption)
}

// parseSidecarOption reads the deplo_auth_sidecar global option into the
// app of that name.
func parseSidecarOption(d *caddyfile.Dispenser, existing any) (any, error) {
	if existing != nil {
		return nil, d.Err("deplo_auth_sidecar: only one may be configured (give it several listen addresses)")
	}
	var s Sidecar
	if err := s.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "deplo_auth_sidecar", Value: caddyconfig.JSON(s, nil)}, nil
}

// UnmarshalCaddyfile reads a deplo_auth_sidecar block: the sidecar's own
// options and every deplo_auth option. The grammar is documented once, in
// docs/reference.md.
func (s *Sidecar) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // option name
	if d.NextArg() {
		return d.ArgErr()
	}
	var routeLines []string
	for d.NextBlock(0) {
		switch sub := d.Val(); sub {
		case "listen":
			addrs := d.RemainingArgs()
			if len(addrs) == 0 {
				return d.Err("listen: want at least one address (unix/<path>|<mode> or <host>:<port>)")
			}
			s.Listen = append(s.Listen, addrs...)
		case "from":
			if !d.AllArgs(&s.From) {
				return d.Err("from: want auto, forwarded, original or envoy")
			}
		case "trusted", "trusted_proxies":
			cidrs := d.RemainingArgs()
			if len(cidrs) == 0 {
				return d.Errf("%s: want at least one CIDR", sub)
			}
			if sub == "trusted" {
				s.Trusted = append(s.Trusted, cidrs...)
			} else {
				s.TrustedProxies = append(s.TrustedProxies, cidrs...)
			}
		case "path_prefix":
			if !d.AllArgs(&s.PathPrefix) {
				return d.Err("path_prefix: want one prefix")
			}
		default:
			if err := s.Handler.parseOption(d, "deplo_auth_sidecar", &routeLines); err != nil {
				return err
			}
		}
	}
	// Check now, so that a mistake is reported with the Caddyfile's name.
	if err := checkListen(s.Listen); err != nil {
		return d.Errf("deplo_auth_sidecar %v", err)
	}
	if _, err := s.VerifyConfig.compile(); err != nil {
		return d.Errf("deplo_auth_sidecar %v", err)
	}
	return s.Handler.checkRoutes(routeLines)
}
