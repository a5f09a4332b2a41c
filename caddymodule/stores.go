package caddymodule

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/deplo-sh/deplo-auth/keystore"
	"github.com/deplo-sh/deplo-auth/keystore/pgstore"
	"github.com/deplo-sh/deplo-auth/tokencache"
)

// stores shares one open key store (file poller, or PostgreSQL pool and
// listener) between every handler and config generation that names it;
// caches shares one token cache between handlers with the same store and
// cache settings. A config reload takes a new reference before the old
// config releases its own, so nothing is reopened and nothing leaks.
var (
	stores = caddy.NewUsagePool()
	caches = caddy.NewUsagePool()
)

type sharedFileStore struct{ *keystore.FileStore }

func (s sharedFileStore) Destruct() error { return s.Close() }

type sharedPostgresStore struct{ *pgstore.Store }

func (s sharedPostgresStore) Destruct() error { return s.Close() }

type sharedCache struct {
	*tokencache.Cache
	stopWatch func()
}

func (c sharedCache) Destruct() error {
	if c.stopWatch != nil {
		c.stopWatch()
	}
	c.Close()
	return nil
}

// openKeys opens (or shares) the configured key store and its cache.
func (h *Handler) openKeys(ctx caddy.Context) (keystore.Store, error) {
	k := h.Keys // checked by checkConfig: one store
	var store keystore.Store
	var kind string
	var err error
	if k.File != "" {
		kind = "file"
		store, h.storeKey, err = openFileStore(k.File)
		if err != nil {
			return nil, fmt.Errorf("keys file: %w", err)
		}
		h.storeName = h.storeKey // "file:" and the absolute path
	} else {
		kind = "postgres"
		var pg *pgstore.Store
		pg, h.storeKey, err = openPostgresStore(ctx, k.Postgres)
		if err != nil {
			return nil, fmt.Errorf("keys postgres: %w", err)
		}
		store = pg
		h.storeName = "postgres:" + pg.Name()
		if k.Postgres.RecordLastUsed {
			h.engine.Usage = pg
		}
		// Change-log rows outlive this cache's entries, so a reconnect
		// catches up instead of dropping them.
		ttl := tokencache.DefaultTTL
		if h.Cache != nil && h.Cache.TTL > 0 {
			ttl = time.Duration(h.Cache.TTL)
		}
		pg.KeepChangesFor(ttl)
	}

	cfg := tokencache.Config{
		OnUnknownScopes: func(id string, unknown []string) {
			caddy.Log().Named("http.handlers.deplo_auth").Warn("token carries unknown scopes; they are ignored",
				zap.String("token_id", id), zap.Strings("scopes", unknown))
		},
		OnStoreLookup: storeObserver(kind),
		OnEvict:       observeTokenCacheEviction,
	}
	if _, pushes := store.(keystore.Watcher); pushes {
		cfg.OnInvalidate = revocationObserver(kind)
	}
	if c := h.Cache; c != nil {
		cfg.TTL = time.Duration(c.TTL)
		cfg.NegativeTTL = time.Duration(c.NegativeTTL)
		cfg.MaxEntries = c.MaxEntries
		cfg.StaleIfError = time.Duration(c.StaleIfError)
	}
	h.cacheKey = fmt.Sprintf("%s|ttl=%v|neg=%v|max=%d|stale=%v", h.storeKey, cfg.TTL, cfg.NegativeTTL, cfg.MaxEntries, cfg.StaleIfError)
	v, _, err := caches.LoadOrNew(h.cacheKey, func() (caddy.Destructor, error) {
		c, err := tokencache.New(store, cfg)
		if err != nil {
			return nil, err
		}
		return sharedCache{Cache: c, stopWatch: c.Watch()}, nil
	})
	if err != nil {
		h.cacheKey = ""
		return nil, err
	}
	h.tokens = v.(sharedCache).Cache
	return store, nil
}

// releaseKeys drops this handler's references to its cache and store.
func (h *Handler) releaseKeys() error {
	var errs []error
	if h.cacheKey != "" {
		if _, err := caches.Delete(h.cacheKey); err != nil {
			errs = append(errs, fmt.Errorf("releasing token cache: %w", err))
		}
		h.cacheKey = ""
	}
	if h.storeKey != "" {
		if _, err := stores.Delete(h.storeKey); err != nil {
			errs = append(errs, fmt.Errorf("releasing key store: %w", err))
		}
		h.storeKey = ""
	}
	return errors.Join(errs...)
}

func openFileStore(path string) (keystore.Store, string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, "", err
	}
	key := "file:" + abs
	v, _, err := stores.LoadOrNew(key, func() (caddy.Destructor, error) {
		fs, err := keystore.OpenFile(abs, keystore.FileOptions{
			Logger:   caddy.Log().Named("deplo_auth.keys"),
			OnReload: keyFileReloadObserver(abs),
		})
		if err != nil {
			return nil, err
		}
		return sharedFileStore{fs}, nil
	})
	if err != nil {
		return nil, "", err
	}
	return v.(sharedFileStore), key, nil
}

func openPostgresStore(ctx caddy.Context, c *PostgresConfig) (*pgstore.Store, string, error) {
	dsn, err := resolveSecret(c.DSN)
	if err != nil {
		return nil, "", fmt.Errorf("dsn: %w", err)
	}
	var listenDSN string
	if c.ListenDSN != "" {
		if listenDSN, err = resolveSecret(c.ListenDSN); err != nil {
			return nil, "", fmt.Errorf("listen_dsn: %w", err)
		}
	}
	// The key holds the DSNs only in memory, to share one pool per database
	// and query; it is never logged.
	key := fmt.Sprintf("postgres:%s|%s|%s|%d|%v|%v|%v", dsn, listenDSN, c.LookupQuery, c.MaxConns, c.QueryTimeout, c.Poll, c.RecordLastUsed)
	v, _, err := stores.LoadOrNew(key, func() (caddy.Destructor, error) {
		pg, err := pgstore.Open(ctx, pgstore.Options{
			DSN:            dsn,
			ListenDSN:      listenDSN,
			LookupQuery:    c.LookupQuery,
			MaxConns:       c.MaxConns,
			QueryTimeout:   time.Duration(c.QueryTimeout),
			Poll:           time.Duration(c.Poll),
			RecordLastUsed: c.RecordLastUsed,
			Migrate:        c.Migrate,
			Logger:         caddy.Log().Named("deplo_auth.keys"),
			OnReconnect:    reconnectObserver("postgres"),
			OnHearing:      hearingObserver("postgres"),
			// A gateway starts while its database is down, and answers
			// 503 for uncached tokens until it is back.
			StartWithoutServer: true,
		})
		if err != nil {
			return nil, err
		}
		return sharedPostgresStore{pg}, nil
	})
	if err != nil {
		return nil, "", err
	}
	return v.(sharedPostgresStore).Store, key, nil
}
