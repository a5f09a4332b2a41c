package caddymodule

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/deplo-sh/deplo-auth/tokenapi"
)

// CreateRate is create_rate <tokens>/<window>.
type CreateRate struct {
	// Tokens per Window. Default 60.
	Tokens int `json:"tokens,omitempty"`
	// Window of the budget, at least 1s. Default 1m.
	Window caddy.Duration `json:"window,omitempty"`
}

// provisionLimits validates the limits and builds what the API uses.
func (h *TokensHandler) provisionLimits() (tokenapi.Limits, error) {
	rate := CreateRate{}
	if h.CreateRate != nil {
		rate = *h.CreateRate
	}
	if rate.Tokens == 0 {
		rate.Tokens = tokenapi.DefaultCreateRate
	}
	if rate.Window == 0 {
		rate.Window = caddy.Duration(tokenapi.DefaultCreateWindow)
	}
	var l tokenapi.Limits
	var err error
	if rate.Tokens < 0 || rate.Window < 0 {
		return l, errors.New("create_rate: want a positive number of tokens per a window of at least 1s")
	}
	if l.CreateRate, err = tokenapi.NewCreateRate(rate.Tokens, time.Duration(rate.Window)); err != nil {
		return l, fmt.Errorf("create_rate: %w", err)
	}
	switch {
	case h.MaxTokens < 0:
		return l, errors.New("max_tokens: want a positive number (default 10000)")
	case h.MaxTokens == 0:
		l.MaxTokens = tokenapi.DefaultMaxTokens
	default:
		l.MaxTokens = h.MaxTokens
	}
	if h.MaxLifetime < 0 {
		return l, errors.New("max_lifetime: want a positive duration")
	}
	l.MaxLifetime = time.Duration(h.MaxLifetime)
	return l, nil
}

// unmarshalLimit parses one of create_rate <n>/<window>, max_tokens <n>
// and max_lifetime <duration> (syntax only; Provision validates).
func (h *TokensHandler) unmarshalLimit(d *caddyfile.Dispenser) error {
	name := d.Val()
	if !d.NextArg() {
		return d.ArgErr()
	}
	arg := d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	switch name {
	case "create_rate":
		if h.CreateRate != nil {
			return d.Err("create_rate given twice")
		}
		n, w, ok := strings.Cut(arg, "/")
		tokens, err := strconv.Atoi(n)
		if !ok || err != nil {
			return d.Errf("create_rate %q: want <tokens>/<window>, e.g. 60/1m", arg)
		}
		window, err := caddy.ParseDuration(w)
		if err != nil {
			return d.Errf("create_rate %q: window: %v", arg, err)
		}
		h.CreateRate = &CreateRate{Tokens: tokens, Window: caddy.Duration(window)}
	case "max_tokens":
		if h.MaxTokens != 0 {
			return d.Err("max_tokens given twice")
		}
		n, err := strconv.Atoi(arg)
		if err != nil {
			return d.Errf("max_tokens %q: want a number", arg)
		}
		h.MaxTokens = n
	case "max_lifetime":
		if h.MaxLifetime != 0 {
			return d.Err("max_lifetime given twice")
		}
		x, err := caddy.ParseDuration(arg)
		if err != nil {
			return d.Errf("max_lifetime %q: %v", arg, err)
		}
		h.MaxLifetime = caddy.Duration(x)
	}
	return nil
}
