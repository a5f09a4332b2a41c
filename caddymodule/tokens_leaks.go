package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/deplo-sh/deplo-auth/keystore"
	"github.com/deplo-sh/deplo-auth/tokenapi"
)

// LeaksConfig serves GitHub's secret-scanning partner endpoint at Path:
// signed reports of tokens found in public code, each live one revoked at
// once (see tokenapi.RevokeLeaked). Exactly one of KeysFile and KeysURL
// names the signing keys.
type LeaksConfig struct {
	// Path is the endpoint's exact path, e.g. /v1/token-leaks/github.
	// Required; not under base.
	Path string `json:"path"`
	// KeysFile is a JSON file in GitHub's format,
	// {"public_keys":[{"key_identifier","key","is_current"}]}, read at
	// provision.
	KeysFile string `json:"keys_file,omitempty"`
	// KeysURL serves that document (GitHub's:
	// https://api.github.com/meta/public_keys/secret_scanning). It is
	// fetched at provision, every hour, and at most every 30 s when a
	// report names a key identifier not held.
	KeysURL string `json:"keys_url,omitempty"`

	keys *leakKeySource
}

// How often keys_url is fetched again.
const (
	leakKeysRefresh    = time.Hour
	leakKeysMinRefetch = 30 * time.Second
)

// leakKeySource holds the keys in force, fetching keys_url again when due.
type leakKeySource struct {
	url    string
	client *http.Client
	logger *zap.Logger

	mu        sync.Mutex
	keys      tokenapi.LeakKeys
	fetchedAt time.Time // last success
	triedAt   time.Time // last attempt
}

func (c *LeaksConfig) provision(logger *zap.Logger, base *tokenapi.Base) error {
	if c.Path == "" || c.Path[0] != '/' {
		return errors.New("leaks: a path starting with / is required, e.g. /v1/token-leaks/github")
	}
	if _, under := base.Match(c.Path); under {
		return fmt.Errorf("leaks: path %s lies under base %s; give it a path of its own", c.Path, base)
	}
	switch {
	case (c.KeysFile == "") == (c.KeysURL == ""):
		return errors.New("leaks: give exactly one of keys_file and keys_url")
	case c.KeysFile != "":
		data, err := os.ReadFile(c.KeysFile)
		if err != nil {
			return fmt.Errorf("leaks: keys_file: %w", err)
		}
		keys, err := tokenapi.ParseLeakKeys(data)
		if err != nil {
			return fmt.Errorf("leaks: keys_file %s: %w", c.KeysFile, err)
		}
		c.keys = &leakKeySource{keys: keys}
		return nil
	}
	u, err := url.Parse(c.KeysURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return errors.New("leaks: keys_url: want an http(s) URL, e.g. https://api.github.com/meta/public_keys/secret_scanning")
	}
	c.keys = &leakKeySource{url: c.KeysURL, logger: logger, client: &http.Client{Timeout: 10 * time.Second}}
	// A failure here is not fatal: the gateway starts, reports are
	// refused (401, GitHub retries) until a fetch succeeds.
	c.keys.refresh(context.Background(), time.Now())
	return nil
}

// get returns the keys in force; with want set (a key identifier the keys
// do not hold) it fetches keys_url again first, at most every 30 s.
func (s *leakKeySource) get(ctx context.Context, want string) tokenapi.LeakKeys {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.url == "" {
		return s.keys
	}
	now := time.Now()
	_, held := s.keys[want]
	if (now.Sub(s.fetchedAt) >= leakKeysRefresh || want != "" && !held) && now.Sub(s.triedAt) >= leakKeysMinRefetch {
		s.refreshLocked(ctx, now)
	}
	return s.keys
}

func (s *leakKeySource) refresh(ctx context.Context, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refreshLocked(ctx, now)
}

func (s *leakKeySource) refreshLocked(ctx context.Context, now time.Time) {
	s.triedAt = now
	keys, err := s.fetch(ctx)
	if err != nil {
		s.logger.Error("leaks: fetching keys_url failed; the keys in force stay", zap.String("keys_url", s.url), zap.Error(err))
		return
	}
	s.keys, s.fetchedAt = keys, now
}

func (s *leakKeySource) fetch(ctx context.Context) (tokenapi.LeakKeys, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	return tokenapi.ParseLeakKeys(data)
}

// publicStoreVar holds the key store of a deplo_auth that let a request
// through on a public route (no caller): the leaks endpoint, which GitHub
// calls without a credential, revokes in it. Like decisionVar, a "vars"
// directive cannot forge it.
const publicStoreVar = "deplo_auth.public_store"

// publicStore is the value under publicStoreVar.
type publicStore struct{ admin keystore.TokenManager }

// leakStore returns the key store to revoke leaked tokens in: the one of
// the deplo_auth that let the request through.
func leakStore(ctx context.Context) keystore.HashRevoker {
	var admin keystore.TokenManager
	if d, ok := DecisionFromContext(ctx); ok {
		admin = d.tokens
	} else if p, ok := caddyhttp.GetVar(ctx, publicStoreVar).(*publicStore); ok && p != nil {
		admin = p.admin
	}
	hashes, _ := admin.(keystore.HashRevoker)
	return hashes
}

// serveLeaks answers a leak report: 401 unless signed by a key in force
// (nothing revoked), else each live reported token revoked at once, logged
// and counted, and the labels answered.
func (h *TokensHandler) serveLeaks(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return writeTokenAnswer(w, tokenapi.ErrorAnswer(http.StatusMethodNotAllowed, "method_not_allowed", "allowed methods: POST"), "POST")
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, tokenapi.MaxLeakBodyBytes+1))
	if err != nil {
		return writeTokenAnswer(w, tokenapi.ErrorAnswer(http.StatusBadRequest, "invalid_request", "body: could not be read"), "")
	}
	keyID, sig := r.Header.Get("Github-Public-Key-Identifier"), r.Header.Get("Github-Public-Key-Signature")
	keys := h.Leaks.keys.get(r.Context(), "")
	err = tokenapi.VerifyLeak(keys, keyID, sig, body)
	if errors.Is(err, tokenapi.ErrUnknownLeakKey) {
		err = tokenapi.VerifyLeak(h.Leaks.keys.get(r.Context(), keyID), keyID, sig, body)
	}
	if err != nil {
		if ok, suppressed := h.leakLog.allow(time.Now()); ok {
			h.logger.Warn("leak report refused: "+err.Error(), zap.String("client_ip", clientIP(r)),
				zap.Uint64("suppressed_since_last", suppressed))
		}
		return writeTokenAnswer(w, tokenapi.ErrorAnswer(http.StatusUnauthorized, "invalid_signature",
			"the report is not signed by a key in force (Github-Public-Key-Identifier, Github-Public-Key-Signature)"), "")
	}
	store := leakStore(r.Context())
	if store == nil {
		return h.misconfigured(w, "no deplo_auth with a key store let the leak report through: "+
			"deplo_auth must come before deplo_auth_tokens, with a public POST route for the leaks path")
	}
	reports, err := tokenapi.ParseLeakReports(body)
	if err != nil {
		return writeTokenAnswer(w, tokenapi.ErrorAnswer(http.StatusBadRequest, "invalid_request", err.Error()), "")
	}
	labels, outcomes, err := tokenapi.RevokeLeaked(r.Context(), store, reports, time.Now().UTC().Truncate(time.Second))
	for _, o := range outcomes {
		h.recordLeak(o)
	}
	if err != nil {
		h.logger.Error("leak report: the key store failed; answering 503 (GitHub retries)", zap.Error(err))
		a := tokenapi.ErrorAnswer(http.StatusServiceUnavailable, "temporarily_unavailable", "the key store did not answer; try again")
		a.Header.Set("Retry-After", "5")
		return writeTokenAnswer(w, a, "")
	}
	return writeTokenAnswer(w, tokenapi.LeakAnswer(labels), "")
}

// recordLeak logs and counts one report: never the token.
func (h *TokensHandler) recordLeak(o tokenapi.LeakOutcome) {
	result := "false_positive"
	switch {
	case o.Revoked:
		result = "revoked"
		h.logger.Warn("leaked token revoked", zap.String("token_id", o.TokenID), zap.String("workspace", o.Workspace),
			zap.String("url", o.URL), zap.String("source", o.Source))
	case o.Label == tokenapi.LabelTruePositive:
		result = "inactive"
		h.logger.Info("leaked token reported, already revoked or expired", zap.String("token_id", o.TokenID),
			zap.String("workspace", o.Workspace), zap.String("url", o.URL), zap.String("source", o.Source))
	default:
		h.logger.Info("leak report names no token of this store", zap.String("url", o.URL), zap.String("source", o.Source))
	}
	metricTokensLeaked.WithLabelValues(result).Inc()
}

func writeTokenAnswer(w http.ResponseWriter, a tokenapi.Answer, allow string) error {
	if allow != "" {
		a.Header.Set("Allow", allow)
	}
	return writeAnswer(w, a.Status, a.Header, a.Body)
}

// unmarshalLeaks parses "leaks <path> { keys_file <json> | keys_url <url> }".
func (h *TokensHandler) unmarshalLeaks(d *caddyfile.Dispenser) error {
	if h.Leaks != nil {
		return d.Err("leaks given twice")
	}
	c := &LeaksConfig{}
	if !d.AllArgs(&c.Path) {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var dst *string
		switch d.Val() {
		case "keys_file":
			dst = &c.KeysFile
		case "keys_url":
			dst = &c.KeysURL
		default:
			return d.Errf("leaks: unknown subdirective %q (want keys_file or keys_url)", d.Val())
		}
		if *dst != "" {
			return d.Errf("leaks: %s given twice", d.Val())
		}
		if !d.AllArgs(dst) {
			return d.ArgErr()
		}
	}
	if (c.KeysFile == "") == (c.KeysURL == "") {
		return d.Err("leaks: give exactly one of keys_file and keys_url")
	}
	h.Leaks = c
	return nil
}
