package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/deplo-sh/deplo-auth/apikey"
	"github.com/deplo-sh/deplo-auth/jwtauth"
	"github.com/deplo-sh/deplo-auth/keystore"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI serves deplo_auth's admin endpoints under Caddy's admin
// listener (and its access controls):
//
//	GET  /deplo-auth/status   key stores, caches and routes of the running handlers
//	POST /deplo-auth/purge    {"id": "tok_…"} | {"hash": "sha256:…"} | {"all": true}
//	POST /deplo-auth/reload   {"path": "<key file>"} | {}
//
// Purging drops cache entries at once, so a revocation takes effect
// immediately even where a cache TTL would otherwise keep it alive.
// Reloading reads a key file now and answers once its contents are in
// force, caches included: the CLI calls it after each change, so the change
// is in force when the command returns.
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.deplo_auth",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Routes returns the admin routes.
func (AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/deplo-auth/status", Handler: caddy.AdminHandlerFunc(handleStatus)},
		{Pattern: "/deplo-auth/purge", Handler: caddy.AdminHandlerFunc(handlePurge)},
		{Pattern: "/deplo-auth/reload", Handler: caddy.AdminHandlerFunc(handleReload)},
	}
}

// live is the set of provisioned handlers the admin API reports on.
var live = struct {
	sync.Mutex
	handlers map[*Handler]struct{}
}{handlers: make(map[*Handler]struct{})}

func addLive(h *Handler) {
	live.Lock()
	live.handlers[h] = struct{}{}
	live.Unlock()
}

func removeLive(h *Handler) {
	live.Lock()
	delete(live.handlers, h)
	live.Unlock()
}

func liveHandlers() []*Handler {
	live.Lock()
	defer live.Unlock()
	out := make([]*Handler, 0, len(live.handlers))
	for h := range live.handlers {
		out = append(out, h)
	}
	return out
}

type storeStatus struct {
	Kind       string    `json:"kind"`
	Path       string    `json:"path,omitempty"`
	Database   string    `json:"database,omitempty"` // PostgreSQL: host:port/name, never credentials
	Tokens     int       `json:"tokens,omitempty"`
	LastReload time.Time `json:"last_reload,omitzero"`
	LastError  string    `json:"last_error,omitempty"`
	Healthy    bool      `json:"healthy"`
	// Key file only: its directory is watched (false: the poll alone
	// brings changes in, within 0.5 s).
	Watched bool `json:"watched,omitempty"`
	// PostgreSQL only. Ready: the server has been reached; Listening:
	// the change listener has proven it hears (false: down or deaf, and
	// changes arrive by the poll only); Following: the change log was read
	// within about two poll intervals; LastChange: its last sequence
	// applied.
	Ready          *bool  `json:"ready,omitempty"`
	Listening      *bool  `json:"listening,omitempty"`
	Following      *bool  `json:"following,omitempty"`
	LastChange     int64  `json:"last_change,omitempty"`
	PoolConns      int32  `json:"pool_conns,omitempty"`
	PoolIdle       int32  `json:"pool_idle,omitempty"`
	DroppedTouches uint64 `json:"dropped_last_used_writes,omitempty"`
}

type handlerStatus struct {
	Store           string     `json:"store"`
	Routes          int        `json:"routes"`
	Default         string     `json:"default"`
	CacheEntries    int64      `json:"cache_entries"`
	CacheNegEntries int64      `json:"cache_negative_entries"`
	CacheHits       uint64     `json:"cache_hits"`
	CacheNegHits    uint64     `json:"cache_negative_hits"`
	CacheMisses     uint64     `json:"cache_misses"`
	HitRatio        float64    `json:"cache_hit_ratio"`
	JWT             *jwtStatus `json:"jwt,omitempty"`
}

// jwtStatus is the dashboard-session side of a handler: its keys (ids,
// algorithms, source and since when in force; never key material), JWKS
// health and verification cache.
type jwtStatus struct {
	Keys            []jwtauth.KeyInfo `json:"keys"`
	JWKS            string            `json:"jwks,omitempty"` // without credentials or query
	JWKSLastSuccess time.Time         `json:"jwks_last_success,omitzero"`
	JWKSFetches     uint64            `json:"jwks_fetches,omitempty"`
	JWKSFailures    uint64            `json:"jwks_failures,omitempty"`
	CacheEntries    int64             `json:"cache_entries"`
	CacheHits       uint64            `json:"cache_hits"`
	CacheMisses     uint64            `json:"cache_misses"`
}

func handleStatus(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("use GET")}
	}
	var out struct {
		Stores   []storeStatus   `json:"stores"`
		Handlers []handlerStatus `json:"handlers"`
	}
	out.Stores = []storeStatus{}
	out.Handlers = []handlerStatus{}
	stores.Range(func(_, v any) bool {
		switch s := v.(type) {
		case sharedFileStore:
			at, err := s.LastReload()
			st := storeStatus{Kind: "file", Path: s.Path(), Tokens: s.Len(), LastReload: at, Healthy: err == nil,
				Watched: s.Watched()}
			if err != nil {
				st.LastError = err.Error()
			}
			out.Stores = append(out.Stores, st)
		case sharedPostgresStore:
			ps := s.Pool().Stat()
			ready, listening, following := s.Ready(), s.Hearing(), s.Following()
			out.Stores = append(out.Stores, storeStatus{Kind: "postgres", Database: s.Name(),
				Healthy: ready && following, Ready: &ready, Listening: &listening, Following: &following,
				LastChange: s.LastChange(), PoolConns: ps.TotalConns(), PoolIdle: ps.IdleConns(),
				DroppedTouches: s.DroppedTouches()})
		}
		return true
	})
	for _, h := range liveHandlers() {
		s := h.tokens.Stats()
		hs := handlerStatus{Store: h.storeName, Routes: len(h.Routes), Default: h.Default,
			CacheEntries: s.Entries, CacheNegEntries: s.NegativeEntries,
			CacheHits: s.Hits, CacheNegHits: s.NegativeHits, CacheMisses: s.Misses}
		if h.jwt != nil {
			js := h.jwt.Stats()
			hs.JWT = &jwtStatus{Keys: h.jwt.Keys(), JWKSLastSuccess: js.JWKSLastSuccess,
				JWKSFetches: js.JWKSFetches, JWKSFailures: js.JWKSFailures,
				CacheEntries: js.CacheEntries, CacheHits: js.CacheHits, CacheMisses: js.CacheMisses}
			if js.JWKS && h.JWT != nil {
				hs.JWT.JWKS = redactURL(h.JWT.JWKS)
			}
		}
		if hs.Default == "" {
			hs.Default = "deny"
		}
		if total := s.Hits + s.NegativeHits + s.Misses; total > 0 {
			hs.HitRatio = float64(s.Hits+s.NegativeHits) / float64(total)
		}
		out.Handlers = append(out.Handlers, hs)
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(out)
}

// decodePost decodes the JSON body of a POST into req (fields spelled
// exactly, at most 8 KiB; an empty body only if emptyOK), or returns the
// admin API's 405 or 400, the latter saying want.
func decodePost(r *http.Request, req any, emptyOK bool, want string) error {
	if r.Method != http.MethodPost {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("use POST")}
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 8192))
	dec.DisallowUnknownFields()
	if err := dec.Decode(req); err != nil && (!emptyOK || !errors.Is(err, io.EOF)) {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New(want)}
	}
	return nil
}

type purgeRequest struct {
	ID   string `json:"id,omitempty"`
	Hash string `json:"hash,omitempty"`
	All  bool   `json:"all,omitempty"`
}

func handlePurge(w http.ResponseWriter, r *http.Request) error {
	var req purgeRequest
	if err := decodePost(r, &req, false, `want {"id": "tok_…"}, {"hash": "sha256:…"} or {"all": true}`); err != nil {
		return err
	}
	set := 0
	for _, b := range []bool{req.ID != "", req.Hash != "", req.All} {
		if b {
			set++
		}
	}
	if set != 1 {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New("give exactly one of id, hash, all")}
	}
	handlers := liveHandlers()
	switch {
	case req.All:
		for _, h := range handlers {
			h.tokens.PurgeAll()
		}
	case req.Hash != "":
		hash, err := apikey.ParseHash(req.Hash)
		if err != nil {
			return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("hash: %w", err)}
		}
		for _, h := range handlers {
			h.tokens.Invalidate(keystore.Hash(hash))
		}
	default:
		hashes := hashesOfID(req.ID)
		if len(hashes) == 0 {
			return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New("no key store knows that token id")}
		}
		for _, h := range handlers {
			for _, hash := range hashes {
				h.tokens.Invalidate(hash)
			}
		}
	}
	metricRevocations.WithLabelValues("admin_purge").Inc()
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(map[string]int{"handlers_purged": len(handlers)})
}

type reloadRequest struct {
	// Path names the key file to read; empty: every key file.
	Path string `json:"path,omitempty"`
}

type reloadedFile struct {
	Path       string `json:"path"`
	Tokens     int    `json:"tokens"`
	Generation uint64 `json:"generation"`
	LastError  string `json:"last_error,omitempty"`
}

// handleReload reads the key file named (or every key file) now, as the
// file's watch would a moment later, and answers with what is in force.
// The store's new generation makes every cache entry read before it a miss,
// so the answer means the change is in force for the next request. A path
// that no key store of this process reads is 404: the caller asked the
// wrong gateway.
func handleReload(w http.ResponseWriter, r *http.Request) error {
	var req reloadRequest
	if err := decodePost(r, &req, true, `want {"path": "<key file>"} or {}`); err != nil {
		return err
	}
	var want os.FileInfo
	if req.Path != "" {
		want, _ = os.Stat(req.Path) // nil if this host cannot see it: compared by name
	}
	out := struct {
		KeyFiles []reloadedFile `json:"key_files"`
	}{KeyFiles: []reloadedFile{}}
	stores.Range(func(_, v any) bool {
		s, ok := v.(sharedFileStore)
		if !ok || (req.Path != "" && !sameKeyFile(s.Path(), req.Path, want)) {
			return true
		}
		s.Reload()
		rf := reloadedFile{Path: s.Path(), Tokens: s.Len(), Generation: s.Generation()}
		if _, err := s.LastReload(); err != nil {
			rf.LastError = err.Error()
		}
		out.KeyFiles = append(out.KeyFiles, rf)
		return true
	})
	if req.Path != "" && len(out.KeyFiles) == 0 {
		return caddy.APIError{HTTPStatus: http.StatusNotFound,
			Err: fmt.Errorf("no key store of this Caddy reads the key file %s", req.Path)}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(out)
}

// sameKeyFile reports whether the store's file (path) is the one asked for
// (name, whose status is want, nil if it could not be read).
func sameKeyFile(path, name string, want os.FileInfo) bool {
	if want != nil {
		if have, err := os.Stat(path); err == nil {
			return os.SameFile(have, want)
		}
	}
	abs, err := filepath.Abs(name)
	return err == nil && abs == path
}

// hashesOfID finds the hash of a token id in every open key store.
func hashesOfID(id string) []keystore.Hash {
	var out []keystore.Hash
	stores.Range(func(_, v any) bool {
		var admin keystore.TokenManager
		switch s := v.(type) {
		case sharedFileStore:
			admin = &keystore.FileTokenManager{Path: s.Path()}
		case sharedPostgresStore:
			admin = s.Store
		default:
			return true
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		rec, err := admin.Token(ctx, id)
		cancel()
		if err != nil {
			return true
		}
		if h, err := keystore.ParseHash(rec.Hash); err == nil {
			out = append(out, h)
		}
		return true
	})
	return out
}

// Interface guard
var _ caddy.AdminRouter = AdminAPI{}
