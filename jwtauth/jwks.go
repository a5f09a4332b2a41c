package jwtauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/deplo-sh/deplo-auth/internal/jsonwire"
)

// Bounds on a JWKS document.
const (
	maxJWKSBody = 1 << 20 // bytes
	maxJWKSKeys = 100     // usable keys kept from one document
	// maxFetchTime bounds one fetch whatever the HTTPClient's timeout; a
	// client without timeout gets DefaultHTTPTimeout.
	maxFetchTime = 30 * time.Second
)

// privateMembers are JWK members that carry private key material.
var privateMembers = [...]string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// parseJWKS parses a JWK set and returns its usable verification keys and,
// for each key it skipped, why (never with key material). Keys that cannot
// verify (use other than "sig", key_ops without "verify"), name an alg that
// is not allowed or does not fit the key, are symmetric or private, or are
// malformed, are skipped.
func parseJWKS(body []byte, allow algSet) (keys []*verifyKey, skipped []string, err error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(body, &doc); err != nil || doc == nil {
		return nil, nil, errors.New("not a JSON object")
	}
	rawKeys, ok := doc["keys"]
	if !ok {
		return nil, nil, errors.New(`no "keys" member`)
	}
	var list []json.RawMessage
	if err := json.Unmarshal(rawKeys, &list); err != nil {
		return nil, nil, errors.New(`"keys" is not an array`)
	}
	for i, raw := range list {
		k, why := parseJWK(raw, allow)
		switch {
		case why != "":
			skipped = append(skipped, fmt.Sprintf("key %d: %s", i, why))
		case isDuplicate(keys, k):
			skipped = append(skipped, fmt.Sprintf("key %d: duplicate", i))
		case len(keys) == maxJWKSKeys:
			skipped = append(skipped, fmt.Sprintf("key %d: more than %d usable keys", i, maxJWKSKeys))
		default:
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, skipped, errors.New("no usable signature verification key")
	}
	return keys, skipped, nil
}

// isDuplicate reports whether keys already holds k under the same kid.
func isDuplicate(keys []*verifyKey, k *verifyKey) bool {
	for _, x := range keys {
		if x.kid == k.kid && sameKey(x, k) {
			return true
		}
	}
	return false
}

// parseJWK turns one JWK into a key pinned to the algorithms it may verify,
// or says why it is skipped.
func parseJWK(raw json.RawMessage, allow algSet) (*verifyKey, string) {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil || m == nil {
		return nil, "not a JSON object"
	}
	str := func(name string) (string, bool, string) {
		v, present := m[name]
		if !present {
			return "", false, ""
		}
		s, ok := jsonwire.String(v)
		if !ok {
			return "", true, name + " is not a string"
		}
		return s, true, ""
	}
	for _, name := range privateMembers {
		if _, ok := m[name]; ok {
			return nil, "carries private or symmetric key material"
		}
	}
	kty, _, bad := str("kty")
	if bad != "" {
		return nil, bad
	}
	use, hasUse, bad := str("use")
	if bad != "" {
		return nil, bad
	}
	if hasUse && use != "sig" {
		return nil, "use is not sig"
	}
	if v, ok := m["key_ops"]; ok {
		var ops []string
		if json.Unmarshal(v, &ops) != nil {
			return nil, "key_ops is not an array of strings"
		}
		verify := false
		for _, op := range ops {
			verify = verify || op == "verify"
		}
		if !verify {
			return nil, "key_ops does not include verify"
		}
	}
	kid, _, bad := str("kid")
	if bad != "" {
		return nil, bad
	}
	if len(kid) > MaxKIDLength {
		return nil, "kid too long"
	}
	algName, hasAlg, bad := str("alg")
	if bad != "" {
		return nil, bad
	}
	algs := allow
	if hasAlg {
		a, ok := parseAlg(algName)
		if !ok || !allow.has(a) {
			return nil, "alg is not in the allowlist"
		}
		algs = setOf(a)
	}
	member := func(name string, size int) ([]byte, string) {
		s, present, bad := str(name)
		if bad != "" {
			return nil, bad
		}
		if !present || s == "" {
			return nil, name + " missing"
		}
		b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
		if err != nil {
			return nil, name + " is not base64url"
		}
		if size > 0 && len(b) != size {
			return nil, name + " has the wrong length"
		}
		return b, ""
	}
	var pub any
	switch kty {
	case "RSA":
		n, bad := member("n", 0)
		if bad != "" {
			return nil, bad
		}
		e, bad := member("e", 0)
		if bad != "" {
			return nil, bad
		}
		if len(e) > 4 {
			return nil, "e too large"
		}
		ei := new(big.Int).SetBytes(e)
		pub = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(ei.Int64())}
	case "EC":
		crv, _, bad := str("crv")
		if bad != "" {
			return nil, bad
		}
		var curve elliptic.Curve
		switch crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		default:
			return nil, "unsupported curve"
		}
		size := (curve.Params().BitSize + 7) / 8
		x, bad := member("x", size)
		if bad != "" {
			return nil, bad
		}
		y, bad := member("y", size)
		if bad != "" {
			return nil, bad
		}
		point := append(append([]byte{4}, x...), y...)
		p, err := ecdsa.ParseUncompressedPublicKey(curve, point) // checks the point is on the curve
		if err != nil {
			return nil, "EC point is not on the curve"
		}
		pub = p
	case "OKP":
		crv, _, bad := str("crv")
		if bad != "" {
			return nil, bad
		}
		if crv != "Ed25519" {
			return nil, "unsupported curve"
		}
		x, bad := member("x", ed25519.PublicKeySize)
		if bad != "" {
			return nil, bad
		}
		pub = ed25519.PublicKey(x)
	case "":
		return nil, "kty missing"
	default:
		return nil, "unsupported kty"
	}
	k, err := newPublicKey(pub, kid, algs, "jwks")
	if err != nil {
		return nil, err.Error()
	}
	return k, ""
}

// checkJWKSURL accepts https URLs, and http ones to a loopback host.
func checkJWKSURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("jwks: not a URL")
	}
	if u.Host == "" {
		return nil, errors.New("jwks: URL has no host")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			return nil, errors.New("jwks: http is only allowed to a loopback host; use https")
		}
	default:
		return nil, errors.New("jwks: URL scheme must be https")
	}
	return u, nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// safeURL is the URL for logs and errors: scheme, host and path only (a
// query or user info might hold a credential).
func safeURL(u *url.URL) string {
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}

// defaultHTTPClient has a 5 s timeout and follows at most 3 redirects, each
// to a URL that checkJWKSURL accepts.
func defaultHTTPClient() *http.Client {
	return &http.Client{
		Timeout: 5 * time.Second,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 3 {
				return errors.New("too many redirects")
			}
			if _, err := checkJWKSURL(req.URL.String()); err != nil {
				return err
			}
			return nil
		},
	}
}

// fetcher fetches the JWKS. Fetches are shared: a caller that arrives while
// one is in flight waits for it instead of starting another
// (singleflight), and unknown-kid refetches are throttled to one per
// minRefetch.
type fetcher struct {
	url        *url.URL
	client     *http.Client
	minRefetch time.Duration

	mu          sync.Mutex
	inflight    *fetchCall
	lastAttempt time.Time
}

type fetchCall struct {
	done    chan struct{}
	changed bool
	err     error
}

// fetch returns the keys of the JWKS document, bounded in time and size.
func (f *fetcher) fetch(ctx context.Context, allow algSet) ([]*verifyKey, []string, error) {
	limit := f.client.Timeout
	switch {
	case limit <= 0:
		limit = DefaultHTTPTimeout
	case limit > maxFetchTime:
		limit = maxFetchTime
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	where := safeURL(f.url)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.url.String(), nil)
	if err != nil {
		return nil, nil, fmt.Errorf("jwks %s: %w", where, err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) { // its text repeats the full URL
			err = uerr.Err
		}
		return nil, nil, fmt.Errorf("jwks %s: %w", where, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, nil, fmt.Errorf("jwks %s: HTTP status %d", where, resp.StatusCode)
	}
	if resp.ContentLength > maxJWKSBody {
		return nil, nil, fmt.Errorf("jwks %s: document larger than 1 MiB", where)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBody+1))
	if err != nil {
		return nil, nil, fmt.Errorf("jwks %s: reading: %w", where, err)
	}
	if len(body) > maxJWKSBody {
		return nil, nil, fmt.Errorf("jwks %s: document larger than 1 MiB", where)
	}
	keys, skipped, err := parseJWKS(body, allow)
	if err != nil {
		return nil, skipped, fmt.Errorf("jwks %s: %w", where, err)
	}
	return keys, skipped, nil
}

// shared runs do unless a fetch is in flight, in which case it waits for
// that one. With throttle set, it runs do only when the last attempt is at
// least minRefetch ago; ran reports whether a fetch ran or was joined.
func (f *fetcher) shared(throttle bool, do func() (bool, error)) (ran, changed bool, err error) {
	f.mu.Lock()
	if c := f.inflight; c != nil {
		f.mu.Unlock()
		<-c.done
		return true, c.changed, c.err
	}
	if throttle && !f.lastAttempt.IsZero() && time.Since(f.lastAttempt) < f.minRefetch {
		f.mu.Unlock()
		return false, false, nil
	}
	c := &fetchCall{done: make(chan struct{})}
	f.inflight = c
	f.lastAttempt = time.Now()
	f.mu.Unlock()

	defer func() {
		f.mu.Lock()
		f.inflight = nil
		f.mu.Unlock()
		close(c.done)
	}()
	c.changed, c.err = do()
	return true, c.changed, c.err
}
