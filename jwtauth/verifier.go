// Package jwtauth verifies the dashboard's session JWTs (compact JWS) for
// deplo-auth: algorithms and keys pinned by configuration (a secret, public
// key files, a JWKS URL), strict parsing before any cryptography, the
// registered time claims with leeway, iss/aud/typ, and the mapping of claims
// to a grant.Principal. Verified results are cached by the SHA-256 of the
// token. The package does no Caddy work; the adapter wires it in.
package jwtauth

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/deplo-sh/deplo-auth/grant"
	"github.com/dgraph-io/ristretto/v2"
	"go.uber.org/zap"
)

// Defaults for Config's zero values.
const (
	DefaultJWKSRefresh     = 5 * time.Minute
	DefaultJWKSMinRefetch  = 30 * time.Second
	DefaultHTTPTimeout     = 5 * time.Second
	DefaultLeeway          = 30 * time.Second
	DefaultCacheMaxEntries = 100_000
	// MaxLeeway bounds Leeway: more would make exp meaningless for
	// 15-minute tokens.
	MaxLeeway = 5 * time.Minute
	// minJWKSInterval is the floor for JWKSRefresh and JWKSMinRefetch.
	minJWKSInterval = time.Second
	// maxCacheTTL bounds how long one verified result is kept.
	maxCacheTTL = time.Hour
	// cacheCloseGrace is how long after Close the verification cache is
	// released: far longer than a Verify that read the open flag just
	// before Close takes to reach its Get or Set.
	cacheCloseGrace = 10 * time.Second
	// maxIdentityLen bounds the subject, workspace and project claims, which
	// become request headers.
	maxIdentityLen = 1024
)

// DefaultTypes are the JOSE typ values accepted by default (RFC 9068).
var DefaultTypes = []string{"at+jwt", "application/at+jwt"}

// ClaimNames names the claims that carry the identity. Empty fields take
// the defaults "sub", "workspace", "project", "scope".
type ClaimNames struct {
	Subject, Workspace, Project, Scopes string
}

// SessionDenylist says whether a session id (the jti or the sid claim) was
// revoked. Key stores implement it; it must be cheap and safe for
// concurrent use, since it is asked on every Verify, cache hits included.
type SessionDenylist interface {
	SessionRevoked(id string) bool
}

// Config configures a Verifier. At least one key source (Secret,
// PublicKeyFiles, JWKSURL) is required.
type Config struct {
	// Issuer and Audience are checked when non-empty; aud may be a string
	// or an array in the token.
	Issuer, Audience string
	// Algorithms is the explicit allowlist: HS256 HS384 HS512 RS256 RS384
	// RS512 ES256 ES384 EdDSA. Required; "none" or an unknown name is an
	// error. A token's alg must be in it and fit the type of the key that
	// verifies it.
	Algorithms []string
	// Secret is the HS* key, the bytes as written; at least 32 bytes, and
	// never anything that parses as a public key, certificate or JWK. It has
	// no kid: tokens verified with it must carry none.
	Secret []byte
	// PublicKeyFiles are PEM files, one public key each: PKIX "PUBLIC KEY"
	// (RSA ≥ 2048 bits, EC P-256/P-384, Ed25519), "RSA PUBLIC KEY", or a
	// "CERTIFICATE". Such a key's kid is its RFC 7638 thumbprint (logged at
	// provision; see Thumbprint).
	PublicKeyFiles []string
	// JWKSURL is an https URL (http only to a loopback host) serving a JWK
	// set; it is fetched at New, every JWKSRefresh, and when a token names
	// an unknown kid (at most once per JWKSMinRefetch).
	JWKSURL        string
	JWKSRefresh    time.Duration // default 5m, at least 1s
	JWKSMinRefetch time.Duration // default 30s, at least 1s
	// HTTPClient fetches the JWKS; default: 5s timeout, at most 3 redirects,
	// each to an https (or loopback http) URL.
	HTTPClient *http.Client
	// Leeway is the clock skew allowed on exp, nbf and iat: default 30s,
	// negative for none, at most 5m.
	Leeway time.Duration
	// MaxLifetime, when set, requires iat and exp - iat ≤ MaxLifetime.
	MaxLifetime time.Duration
	// Types are the accepted JOSE typ values, compared case-insensitively;
	// default DefaultTypes. The typ header is required unless TypeOff.
	Types   []string
	TypeOff bool
	Claims  ClaimNames
	// CacheMaxEntries bounds the verification cache: default 100000,
	// negative to disable it.
	CacheMaxEntries int64
	// Sessions, when set, is asked about the jti and sid of every token.
	Sessions SessionDenylist
	Logger   *zap.Logger
	// OnJWKSRefresh, when set, is called after every JWKS fetch with its
	// error (nil on success), for metrics. It must not block.
	OnJWKSRefresh func(err error)
	// OnCacheEvict, when set, is called when the verification cache evicts
	// an entry for room (not when one expires), for metrics.
	OnCacheEvict func()

	// For tests in this package: extra static keys, and no 1s floors.
	testKeys    []*verifyKey
	testNoFloor bool
}

// Session is a verified token's identity. It is the caller's copy, but
// UnknownScopes is shared between callers and must not be modified.
type Session struct {
	// Principal has Kind grant.KindJWT, Subject = sub, Workspace, Project
	// and the known scopes.
	Principal grant.Principal
	// UnknownScopes are scope names the token carries that are none of the
	// four scopes: never granted, for the caller to log.
	UnknownScopes []string
	ExpiresAt     time.Time
	// SessionID is the sid claim, else the jti claim, else "".
	SessionID string
	// KeyID is the kid of the key that verified the token ("" for the
	// secret).
	KeyID string
}

// Stats are counters for tests and metrics.
type Stats struct {
	CacheHits, CacheMisses    uint64
	JWKSFetches, JWKSFailures uint64
	// KeySetGeneration grows by one each time the JWKS keys change.
	KeySetGeneration uint64
	JWKSKeys         int
	// JWKS says whether a JWKS URL is configured; JWKSLastSuccess is when
	// it was last fetched successfully (zero: never).
	JWKS            bool
	JWKSLastSuccess time.Time
	// CacheEntries is the number of verified tokens cached.
	CacheEntries int64
}

// Verifier verifies tokens. It is safe for concurrent use.
type Verifier struct {
	allow       algSet
	issuer      string
	audience    string
	leeway      time.Duration
	maxLifetime time.Duration
	types       []string // nil: typ not checked
	names       ClaimNames
	claimSlots  [numClaims]string
	sessions    SessionDenylist
	log         *zap.Logger
	onRefresh   func(error)

	static []*verifyKey
	keys   atomic.Pointer[keySet]
	swapMu sync.Mutex
	jwks   *fetcher

	cache *ristretto.Cache[uint64, *cacheEntry]
	// cacheClosed is set by Close. ristretto's Close is not safe against a
	// Get or Set running at the same moment; rather than a lock around every
	// Get, Verify reads this flag and the cache is released cacheCloseGrace
	// after Close.
	cacheClosed atomic.Bool

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once

	hits, misses, fetches, fetchFailures atomic.Uint64
	jwksOK                               atomic.Int64 // Unix ns of the last successful JWKS fetch

	failMu      sync.Mutex
	lastFailLog time.Time
	failures    int
}

// New checks cfg, loads the static keys, fetches the JWKS once (a failure
// is an error) and starts refreshing it until ctx is done or Close is
// called.
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	v := &Verifier{
		issuer:      cfg.Issuer,
		audience:    cfg.Audience,
		leeway:      cfg.Leeway,
		maxLifetime: cfg.MaxLifetime,
		names:       cfg.Claims,
		sessions:    cfg.Sessions,
		log:         cfg.Logger,
		onRefresh:   cfg.OnJWKSRefresh,
	}
	if v.log == nil {
		v.log = zap.NewNop()
	}
	if err := v.configure(&cfg); err != nil {
		return nil, err
	}
	if len(cfg.Secret) > 0 {
		k, err := newSecretKey(cfg.Secret, v.allow)
		if err != nil {
			return nil, err
		}
		v.static = append(v.static, k)
	}
	for _, path := range cfg.PublicKeyFiles {
		k, err := loadPublicKeyFile(path, v.allow)
		if err != nil {
			return nil, err
		}
		v.static = append(v.static, k)
		v.log.Info("jwt public key loaded", zap.String("file", path), zap.String("type", k.kind.String()),
			zap.String("algorithms", k.algs.String()), zap.String("kid", k.kid))
	}
	v.static = append(v.static, cfg.testKeys...)
	if len(v.static) == 0 && cfg.JWKSURL == "" {
		return nil, errNoKeyConfigured
	}
	v.keys.Store(newKeySet(1, v.static, nil))

	v.ctx, v.cancel = context.WithCancel(ctx)
	if cfg.JWKSURL != "" {
		u, err := checkJWKSURL(cfg.JWKSURL)
		if err != nil {
			v.cancel()
			return nil, err
		}
		client := cfg.HTTPClient
		if client == nil {
			client = defaultHTTPClient()
		}
		v.jwks = &fetcher{url: u, client: client, minRefetch: cfg.JWKSMinRefetch}
		if _, err := v.refreshJWKS(false); err != nil {
			v.cancel()
			return nil, fmt.Errorf("jwt: initial JWKS fetch: %w", err)
		}
	}
	v.warnUnusableAlgorithms()

	if cfg.CacheMaxEntries >= 0 {
		n := cfg.CacheMaxEntries
		if n == 0 {
			n = DefaultCacheMaxEntries
		}
		c, err := ristretto.NewCache(&ristretto.Config[uint64, *cacheEntry]{
			NumCounters:        10 * n,
			MaxCost:            n, // every entry costs 1
			BufferItems:        64,
			IgnoreInternalCost: true,
			OnEvict:            evictionCounter[*cacheEntry](cfg.OnCacheEvict),
		})
		if err != nil {
			v.cancel()
			return nil, fmt.Errorf("jwt: verification cache: %w", err)
		}
		v.cache = c
	}

	if v.jwks != nil {
		v.wg.Add(1)
		go v.refreshLoop(cfg.JWKSRefresh)
	}
	return v, nil
}

// warnUnusableAlgorithms logs allowed algorithms that no key can verify.
func (v *Verifier) warnUnusableAlgorithms() {
	if v.jwks != nil {
		return // JWKS keys may come and go
	}
	ks := v.keys.Load()
	var unusable algSet
	for a := algHS256; a < numAlgs; a++ {
		if v.allow.has(a) && ks.count[a] == 0 {
			unusable |= setOf(a)
		}
	}
	if unusable != 0 {
		v.log.Warn("jwt algorithms allowed but no configured key can verify them; tokens using them are refused",
			zap.String("algorithms", unusable.String()))
	}
}

// Close stops the JWKS refresher and releases the cache. Verify keeps
// working after Close, without the cache and without refetching.
func (v *Verifier) Close() {
	v.closeOnce.Do(func() {
		v.cancel()
		v.wg.Wait()
		if v.cache != nil {
			v.cacheClosed.Store(true)
			time.AfterFunc(cacheCloseGrace, v.cache.Close)
		}
	})
}

// Stats returns the counters.
func (v *Verifier) Stats() Stats {
	ks := v.keys.Load()
	st := Stats{
		CacheHits:        v.hits.Load(),
		CacheMisses:      v.misses.Load(),
		JWKSFetches:      v.fetches.Load(),
		JWKSFailures:     v.fetchFailures.Load(),
		KeySetGeneration: ks.gen,
		JWKSKeys:         len(ks.jwks),
		JWKS:             v.jwks != nil,
	}
	if ns := v.jwksOK.Load(); ns != 0 {
		st.JWKSLastSuccess = time.Unix(0, ns)
	}
	if v.cache != nil && !v.cacheClosed.Load() {
		st.CacheEntries = v.cache.MaxCost() - v.cache.RemainingCost()
	}
	return st
}

// KeyInfo describes a key in force, for status output. It never holds key
// material.
type KeyInfo struct {
	// ID is the kid (for a public key without one, its RFC 7638
	// thumbprint); "" for the HS* secret.
	ID string `json:"kid"`
	// Algorithms the key is pinned to, space separated.
	Algorithms string `json:"algorithms"`
	// Source is "secret", "file" (public_key) or "jwks".
	Source string `json:"source"`
	// Since is when the key came into force.
	Since time.Time `json:"since"`
}

// Keys lists the keys in force: configured ones first, then the JWKS's.
func (v *Verifier) Keys() []KeyInfo {
	ks := v.keys.Load()
	out := make([]KeyInfo, 0, len(ks.static)+len(ks.jwks))
	for _, list := range [][]*verifyKey{ks.static, ks.jwks} {
		for _, k := range list {
			out = append(out, KeyInfo{ID: k.kid, Algorithms: k.algs.String(), Source: k.source, Since: k.since})
		}
	}
	return out
}

// evictionCounter returns a ristretto OnEvict that calls fn for entries
// evicted for room. Every entry is set with a TTL, so an evicted item
// without an expiration is a capacity victim, not an expired entry.
func evictionCounter[V any](fn func()) func(*ristretto.Item[V]) {
	if fn == nil {
		return nil
	}
	return func(it *ristretto.Item[V]) {
		if it.Expiration.IsZero() {
			fn()
		}
	}
}

// cacheEntry is a verified token, kept under the SHA-256 of the token.
type cacheEntry struct {
	hash    [sha256.Size]byte
	key     *verifyKey    // the key that verified it
	gen     atomic.Uint64 // the last key-set generation known to hold key
	session Session
	times   timeLimits
	jti     string
	sid     string
}

// timeLimits are the time claims with the leeway applied.
type timeLimits struct {
	expLimit time.Time // invalid at or after
	nbfLimit time.Time // invalid before (zero: no nbf)
	iatLimit time.Time // invalid before (zero: no iat)
}

func (t *timeLimits) check(now time.Time) *verifyError {
	if !now.Before(t.expLimit) {
		return errExpired
	}
	if now.Before(t.nbfLimit) {
		return errNotYetValid
	}
	if now.Before(t.iatLimit) {
		return errIATFuture
	}
	return nil
}

func cacheKey(sum *[sha256.Size]byte) uint64 { return binary.LittleEndian.Uint64(sum[:8]) }

// Verify checks token at now and returns the identity it carries, or an
// error wrapping one of the sentinel errors (see Reason). The token itself
// never appears in an error.
func (v *Verifier) Verify(token string, now time.Time) (*Session, error) {
	if token == "" {
		return nil, errEmpty
	}
	if len(token) > MaxTokenLength {
		return nil, errTooLong
	}
	var sum [sha256.Size]byte
	if v.cache != nil {
		sum = sha256.Sum256(stringBytes(token))
		var e *cacheEntry
		if !v.cacheClosed.Load() {
			e, _ = v.cache.Get(cacheKey(&sum))
		}
		if e != nil && e.hash == sum {
			if s, stale, err := v.fromCache(e, now); !stale {
				v.hits.Add(1)
				return s, err
			}
		}
		v.misses.Add(1)
	}
	e, err := v.verify(token, now)
	if err != nil {
		return nil, err
	}
	s := new(Session)
	*s = e.session
	if v.cache != nil {
		// Kept until exp at the latest (within the leeway, tokens are
		// verified afresh), at most maxCacheTTL.
		ttl := min(e.session.ExpiresAt.Sub(now), maxCacheTTL)
		if ttl > 0 {
			e.hash = sum
			if !v.cacheClosed.Load() {
				v.cache.SetWithTTL(cacheKey(&sum), e, 1, ttl)
			}
		}
	}
	return s, nil
}

// Cached returns the session of token only when the verification cache
// already holds it and it is still valid at now: no parsing, no signature
// check, no JWKS fetch. The brute-force guard uses it to let a throttled
// client through with a credential already known to be valid.
func (v *Verifier) Cached(token string, now time.Time) *Session {
	if v.cache == nil || v.cacheClosed.Load() || token == "" || len(token) > MaxTokenLength {
		return nil
	}
	sum := sha256.Sum256(stringBytes(token))
	e, _ := v.cache.Get(cacheKey(&sum))
	if e == nil || e.hash != sum {
		return nil
	}
	s, stale, err := v.fromCache(e, now)
	if stale || err != nil {
		return nil
	}
	return s
}

// fromCache answers from a cache entry: the time claims and the denylist
// are judged again at now. stale means the key that verified the entry is
// no longer configured, and the token must be verified again.
func (v *Verifier) fromCache(e *cacheEntry, now time.Time) (s *Session, stale bool, err error) {
	ks := v.keys.Load()
	if e.gen.Load() != ks.gen {
		if _, present := ks.members[e.key]; !present {
			return nil, true, nil
		}
		e.gen.Store(ks.gen)
	}
	if verr := e.times.check(now); verr != nil {
		return nil, false, verr
	}
	if v.revoked(e.jti, e.sid) {
		return nil, false, errSessionRevoked
	}
	s = new(Session)
	*s = e.session
	return s, false, nil
}

func (v *Verifier) revoked(jti, sid string) bool {
	if v.sessions == nil {
		return false
	}
	return jti != "" && v.sessions.SessionRevoked(jti) || sid != "" && v.sessions.SessionRevoked(sid)
}

// verify is the full check: shape, header, key, signature, then claims.
func (v *Verifier) verify(token string, now time.Time) (*cacheEntry, error) {
	c, verr := parseCompact(token)
	if verr != nil {
		return nil, verr
	}
	if !isJSONObject(c.payload) {
		return nil, errPayloadJSON
	}
	k, verr := v.checkSignature(c)
	if verr != nil {
		return nil, verr
	}
	// From here on the token is authentic; its contents may be judged.
	if v.types != nil {
		if !c.hdr.hasTyp {
			return nil, errTypMissing
		}
		if !v.typeAccepted(c.hdr.typ) {
			return nil, errTyp
		}
	}
	e, verr := v.judgeClaims(c.payload, now)
	if verr != nil {
		return nil, verr
	}
	e.key = k
	e.gen.Store(v.keys.Load().gen)
	e.session.KeyID = k.kid
	if k.kind == kindHMAC {
		e.session.KeyID = ""
	}
	return e, nil
}

func (v *Verifier) typeAccepted(typ string) bool {
	for _, t := range v.types {
		if strings.EqualFold(t, typ) {
			return true
		}
	}
	return false
}

// checkSignature selects the key for c (alg from the allowlist, fitting the
// key's type; kid) and verifies the signature. It judges nothing in the
// payload.
func (v *Verifier) checkSignature(c *compact) (*verifyKey, *verifyError) {
	h := &c.hdr
	switch {
	case isNone(h.alg):
		return nil, errAlgNone
	case h.alg == "":
		return nil, errAlgMissing
	}
	a, ok := parseAlg(h.alg)
	if !ok {
		return nil, errAlgUnknown
	}
	if !v.allow.has(a) {
		return nil, errAlgNotAllowed
	}
	if len(h.kid) > MaxKIDLength {
		return nil, errKIDTooLong
	}
	k, verr := v.keys.Load().lookup(a, h.kid)
	if verr == errKIDUnknown && v.jwks != nil {
		if ran, _ := v.refreshJWKS(true); ran {
			k, verr = v.keys.Load().lookup(a, h.kid)
		}
	}
	if verr != nil {
		return nil, verr
	}
	if !verifySig(a, k, c.signingInput, c.sig) {
		return nil, errBadSignature
	}
	return k, nil
}
