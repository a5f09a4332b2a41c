package caddymodule

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/deplo-sh/deplo-auth/grant"
	"github.com/deplo-sh/deplo-auth/keystore"
	"github.com/deplo-sh/deplo-auth/policy"
	"github.com/deplo-sh/deplo-auth/tokencache"
)

// The collectors are made once per process and registered on the registry
// of every config load (Caddy makes a new one per load), so counts survive a
// reload and the children resolved below stay valid.
var (
	metricRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "deplo_auth_requests_total",
		Help: "Requests decided by deplo_auth, by credential method (api_key, jwt, none), outcome (allowed, denied, error) and reason.",
	}, []string{"method", "outcome", "reason"})

	metricDecision = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "deplo_auth_decision_duration_seconds",
		Help: "Time deplo_auth spends deciding a request, by credential method, store lookups included.",
		// 1 µs … 2.5 s: cached decisions take microseconds, store misses milliseconds.
		Buckets: []float64{1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1, 2.5},
	}, []string{"method"})

	metricCacheLookups = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "deplo_auth_cache_lookups_total",
		Help: "Token cache lookups by result (hit, negative_hit, miss).",
	}, []string{"result"})

	metricStoreRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "deplo_auth_store_requests_total",
		Help: "Key store lookups by store (file, postgres) and result (found, not_found, error).",
	}, []string{"store", "result"})

	metricStoreDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "deplo_auth_store_duration_seconds",
		Help:    "Key store lookup latency by store.",
		Buckets: []float64{1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1, 2.5, 5},
	}, []string{"store"})

	metricJWKSRefreshes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "deplo_auth_jwks_refreshes_total",
		Help: "JWKS fetches (at provision, on the interval, and for unknown kids) by result (success, error).",
	}, []string{"result"})

	metricRevocations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "deplo_auth_revocations_total",
		Help: "Token changes pushed to the caches, by source: postgres (one token, by NOTIFY or the change-log poll), postgres_resync (every entry dropped: a TRUNCATE, a change log pruned past this instance, a malformed notification; without a change log, a listener reconnect), admin_purge.",
	}, []string{"source"})

	metricReconnects = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "deplo_auth_store_reconnects_total",
		Help: "Reconnects of a key store's change listener (PostgreSQL LISTEN), by store.",
	}, []string{"store"})

	metricListening = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "deplo_auth_store_listening",
		Help: "1 while a key store's change listener has proven within its heartbeat that it receives notifications (PostgreSQL LISTEN), 0 while it is down or deaf (changes then arrive by the change-log poll only).",
	}, []string{"store"})

	metricKeyFileReloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "deplo_auth_keyfile_reloads_total",
		Help: "Key file reloads after a change, by path and result (success; error: the last good tokens stay in force).",
	}, []string{"path", "result"})

	metricCacheEvictions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "deplo_auth_cache_evictions_total",
		Help: "Entries evicted to make room (not expired) from a full cache, by cache (api_key, api_key_negative, jwt).",
	}, []string{"cache"})

	metricTokensLeaked = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "deplo_auth_tokens_leaked_total",
		Help: "Tokens reported leaked to deplo_auth_tokens' leaks endpoint, by result (revoked: live and revoked now; inactive: a token already revoked or expired; false_positive: no token of the store).",
	}, []string{"result"})
	metricTokenOperations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "deplo_auth_token_operations_total",
		Help: "Token API creates and revokes (deplo_auth_tokens), by operation (create, revoke) and result (ok, invalid_request, forbidden, not_found, error).",
	}, []string{"operation", "result"})

	metricKeyFile = &keyFileCollector{
		tokens: prometheus.NewDesc("deplo_auth_keyfile_tokens",
			"Tokens in the key file currently in force.", []string{"path"}, nil),
		lastReload: prometheus.NewDesc("deplo_auth_keyfile_last_reload_timestamp_seconds",
			"Unix time the key file in force was read.", []string{"path"}, nil),
		healthy: prometheus.NewDesc("deplo_auth_keyfile_last_reload_success",
			"1 if the last attempt to read the key file succeeded, 0 if the last good contents are kept in force.", []string{"path"}, nil),
	}

	metricState = &stateCollector{
		cacheEntries: prometheus.NewDesc("deplo_auth_cache_entries",
			"Entries held now, by cache (api_key, api_key_negative, jwt), summed over the caches in force.", []string{"cache"}, nil),
		jwksKeys: prometheus.NewDesc("deplo_auth_jwks_keys",
			"Keys in force from a JWKS, by JWKS (its URL without credentials or query).", []string{"jwks"}, nil),
		jwksLastSuccess: prometheus.NewDesc("deplo_auth_jwks_last_success_timestamp_seconds",
			"Unix time of the last successful fetch of a JWKS (time() minus this is the key set's age).", []string{"jwks"}, nil),
	}

	allCollectors = []prometheus.Collector{metricRequests, metricDecision, metricCacheLookups,
		metricStoreRequests, metricStoreDuration, metricJWKSRefreshes, metricRevocations, metricReconnects, metricListening, metricKeyFile,
		metricKeyFileReloads, metricCacheEvictions, metricTokenOperations, metricTokensLeaked, metricState}
)

// Outcome label values.
const (
	outcomeAllowed = "allowed"
	outcomeDenied  = "denied"
	outcomeError   = "error"
)

// hot holds the children of the request path, resolved once so that a
// request does no label lookup.
var hot = struct {
	public   prometheus.Counter
	allowed  [3]prometheus.Counter  // by grant.Kind
	decision [3]prometheus.Observer // by grant.Kind
	cache    [4]prometheus.Counter  // by tokencache.Result
}{}

func init() {
	hot.public = metricRequests.WithLabelValues("none", outcomeAllowed, policy.ReasonPublic.String())
	for k := grant.KindNone; k <= grant.KindJWT; k++ {
		hot.decision[k] = metricDecision.WithLabelValues(k.String())
		if k != grant.KindNone { // a request without a credential is allowed only as public
			hot.allowed[k] = metricRequests.WithLabelValues(k.String(), outcomeAllowed, "allowed")
		}
	}
	for _, r := range []tokencache.Result{tokencache.Hit, tokencache.NegativeHit, tokencache.Miss, tokencache.Stale} {
		hot.cache[r] = metricCacheLookups.WithLabelValues(r.String())
	}
}

// registerMetrics registers every collector on reg; registering the same
// collector again (several handlers in one config) is not an error.
func registerMetrics(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	for _, c := range allCollectors {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) && are.ExistingCollector == c {
				continue
			}
			return fmt.Errorf("registering metrics: %w", err)
		}
	}
	return nil
}

func observeJWKSRefresh(err error) {
	result := "success"
	if err != nil {
		result = "error"
	}
	metricJWKSRefreshes.WithLabelValues(result).Inc()
}

// revocationObserver counts pushed changes of a store.
func revocationObserver(store string) func(all bool) {
	one := metricRevocations.WithLabelValues(store)
	all := metricRevocations.WithLabelValues(store + "_resync")
	return func(everything bool) {
		if everything {
			all.Inc()
		} else {
			one.Inc()
		}
	}
}

// reconnectObserver counts listener reconnects of a store.
func reconnectObserver(store string) func() {
	c := metricReconnects.WithLabelValues(store)
	return c.Inc
}

// hearingObserver returns the pgstore hook that sets the listening gauge.
func hearingObserver(store string) func(bool) {
	g := metricListening.WithLabelValues(store)
	return func(v bool) {
		if v {
			g.Set(1)
		} else {
			g.Set(0)
		}
	}
}

// storeObserver returns the tokencache hook that times lookups of a store.
func storeObserver(store string) func(error, time.Duration) {
	found := metricStoreRequests.WithLabelValues(store, "found")
	notFound := metricStoreRequests.WithLabelValues(store, "not_found")
	failed := metricStoreRequests.WithLabelValues(store, "error")
	duration := metricStoreDuration.WithLabelValues(store)
	return func(err error, d time.Duration) {
		switch {
		case err == nil:
			found.Inc()
		case errors.Is(err, keystore.ErrNotFound):
			notFound.Inc()
		default:
			failed.Inc()
		}
		duration.Observe(d.Seconds())
	}
}

// keyFileCollector reports every open key file at scrape time.
type keyFileCollector struct{ tokens, lastReload, healthy *prometheus.Desc }

func (c *keyFileCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.tokens
	ch <- c.lastReload
	ch <- c.healthy
}

func (c *keyFileCollector) Collect(ch chan<- prometheus.Metric) {
	stores.Range(func(_, v any) bool {
		fs, ok := v.(sharedFileStore)
		if !ok {
			return true
		}
		at, err := fs.LastReload()
		ok01 := 1.0
		if err != nil {
			ok01 = 0
		}
		ch <- prometheus.MustNewConstMetric(c.tokens, prometheus.GaugeValue, float64(fs.Len()), fs.Path())
		ch <- prometheus.MustNewConstMetric(c.lastReload, prometheus.GaugeValue, float64(at.UnixNano())/1e9, fs.Path())
		ch <- prometheus.MustNewConstMetric(c.healthy, prometheus.GaugeValue, ok01, fs.Path())
		return true
	})
}

// keyFileReloadObserver counts the reloads of the key file at path.
func keyFileReloadObserver(path string) func(error) {
	ok := metricKeyFileReloads.WithLabelValues(path, "success")
	failed := metricKeyFileReloads.WithLabelValues(path, "error")
	return func(err error) {
		if err != nil {
			failed.Inc()
		} else {
			ok.Inc()
		}
	}
}

var (
	evictedAPIKey   = metricCacheEvictions.WithLabelValues("api_key")
	evictedNegative = metricCacheEvictions.WithLabelValues("api_key_negative")
	evictedJWT      = metricCacheEvictions.WithLabelValues("jwt")
)

func observeTokenCacheEviction(negative bool) {
	if negative {
		evictedNegative.Inc()
	} else {
		evictedAPIKey.Inc()
	}
}

func observeJWTCacheEviction() { evictedJWT.Inc() }

// stateCollector reports, at scrape time, the state of the caches and JWKS
// key sets of the handlers in force. Caches shared by several handlers are
// counted once.
type stateCollector struct{ cacheEntries, jwksKeys, jwksLastSuccess *prometheus.Desc }

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.cacheEntries
	ch <- c.jwksKeys
	ch <- c.jwksLastSuccess
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	var apiKey, negative, jwt int64
	seen := make(map[any]bool)
	type jwksState struct {
		keys int
		last time.Time
	}
	jwks := make(map[string]jwksState)
	for _, h := range liveHandlers() {
		if h.tokens != nil && !seen[h.tokens] {
			seen[h.tokens] = true
			s := h.tokens.Stats()
			apiKey += s.Entries
			negative += s.NegativeEntries
		}
		if h.jwt != nil && !seen[h.jwt] {
			seen[h.jwt] = true
			s := h.jwt.Stats()
			jwt += s.CacheEntries
			if s.JWKS && h.JWT != nil {
				// Several handlers may fetch one JWKS: one series for it.
				name := redactURL(h.JWT.JWKS)
				st := jwks[name]
				st.keys = max(st.keys, s.JWKSKeys)
				if s.JWKSLastSuccess.After(st.last) {
					st.last = s.JWKSLastSuccess
				}
				jwks[name] = st
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(c.cacheEntries, prometheus.GaugeValue, float64(apiKey), "api_key")
	ch <- prometheus.MustNewConstMetric(c.cacheEntries, prometheus.GaugeValue, float64(negative), "api_key_negative")
	ch <- prometheus.MustNewConstMetric(c.cacheEntries, prometheus.GaugeValue, float64(jwt), "jwt")
	for name, st := range jwks {
		ch <- prometheus.MustNewConstMetric(c.jwksKeys, prometheus.GaugeValue, float64(st.keys), name)
		if !st.last.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.jwksLastSuccess, prometheus.GaugeValue, float64(st.last.UnixNano())/1e9, name)
		}
	}
}

// redactURL keeps scheme, host and path of a URL: a metric label must not
// carry credentials or query parameters.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "invalid"
	}
	return u.Scheme + "://" + u.Host + u.Path
}
