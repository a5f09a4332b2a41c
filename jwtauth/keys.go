package jwtauth

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"strings"
	"time"
)

// verifyKey is one configured verification key, pinned to its type and to
// the algorithms it may verify (the allowlist ∩ what the key type fits ∩ the
// JWK's alg, if it names one). Keys are immutable and compared by pointer:
// a cache entry remembers the key that verified it.
type verifyKey struct {
	kid    string // explicit kid; for a public key without one, its RFC 7638 thumbprint
	kind   keyKind
	algs   algSet
	pub    any        // []byte (HMAC), *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey
	fp     [32]byte   // identity: SHA-256 over the kind and the key (never shown anywhere)
	source string     // "secret", "file", "jwks": for logs
	macs   *hmacPools // HMAC keys only
	since  time.Time  // when the key came into force (kept across JWKS refreshes)
}

// verifySig is the signature layer: it checks sig over signingInput with
// key k for algorithm a, refusing any alg the key is not pinned to. Verify
// and the Wycheproof tests both go through it.
func verifySig(a alg, k *verifyKey, signingInput string, sig []byte) bool {
	if k == nil || !k.algs.has(a) || !k.kind.fits().has(a) {
		return false
	}
	if k.kind == kindHMAC {
		return verifyHMAC(a, k, signingInput, sig)
	}
	return algMethods[a].Verify(signingInput, sig, k.pub) == nil
}

// newSecretKey makes the HMAC key from the configured secret.
func newSecretKey(secret []byte, allow algSet) (*verifyKey, error) {
	if len(secret) < 32 {
		return nil, fmt.Errorf("jwt secret: %d bytes, want at least 32", len(secret))
	}
	if what := looksLikePublicKey(secret); what != "" {
		return nil, fmt.Errorf("jwt secret: it is %s; an HMAC secret must never be a public key's bytes (configure the key with public_key or jwks instead)", what)
	}
	algs := allow & kindHMAC.fits()
	if algs == 0 {
		return nil, errors.New("jwt secret: configured, but no HS256/HS384/HS512 algorithm is allowed")
	}
	k := &verifyKey{kind: kindHMAC, algs: algs, pub: bytes.Clone(secret), source: "secret", since: time.Now()}
	h := sha256.New()
	h.Write([]byte("deplo-auth hmac key\x00"))
	h.Write(secret)
	h.Sum(k.fp[:0])
	newHMACPools(k)
	return k, nil
}

// looksLikePublicKey says what secret is when it parses as a public key,
// certificate or JWK in any common form, and "" otherwise.
func looksLikePublicKey(secret []byte) string {
	if bytes.Contains(secret, []byte("-----BEGIN")) {
		return "a PEM block"
	}
	if isDERKey(secret) {
		return "a DER-encoded key or certificate"
	}
	trimmed := bytes.TrimSpace(secret)
	if len(trimmed) > 0 && trimmed[0] == '{' {
		var m map[string]json.RawMessage
		if json.Unmarshal(trimmed, &m) == nil {
			if _, ok := m["kty"]; ok {
				return "a JWK"
			}
			if _, ok := m["keys"]; ok {
				return "a JWK set"
			}
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if der, err := enc.DecodeString(string(trimmed)); err == nil && isDERKey(der) {
			return "a base64-encoded DER key or certificate"
		}
	}
	for _, p := range []string{"ssh-rsa ", "ssh-ed25519 ", "ecdsa-sha2-"} {
		if bytes.HasPrefix(trimmed, []byte(p)) {
			return "an SSH public key"
		}
	}
	return ""
}

func isDERKey(der []byte) bool {
	if _, err := x509.ParsePKIXPublicKey(der); err == nil {
		return true
	}
	if _, err := x509.ParsePKCS1PublicKey(der); err == nil {
		return true
	}
	if _, err := x509.ParseCertificate(der); err == nil {
		return true
	}
	return false
}

// maxKeyFile bounds a PEM file read at provision.
const maxKeyFile = 1 << 20

// loadPublicKeyFile reads one public key from a PEM file: PKIX "PUBLIC
// KEY", PKCS #1 "RSA PUBLIC KEY" or a "CERTIFICATE" (its key; the first
// certificate of a chain). Private keys are refused: the gateway needs only
// the public half.
func loadPublicKeyFile(path string, allow algSet) (*verifyKey, error) {
	data, err := readKeyFile("jwt public key", path)
	if err != nil {
		return nil, err
	}
	pub, err := parsePublicKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("jwt public key %s: %w", path, err)
	}
	k, err := newPublicKey(pub, "", allow, "file")
	if err != nil {
		return nil, fmt.Errorf("jwt public key %s: %w", path, err)
	}
	return k, nil
}

func parsePublicKeyPEM(data []byte) (any, error) {
	var pub any
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if strings.Contains(block.Type, "PRIVATE KEY") {
			return nil, errors.New("the file holds a private key; configure its public key")
		}
		var (
			p   any
			err error
		)
		switch block.Type {
		case "PUBLIC KEY":
			p, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			p, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			if pub != nil {
				continue // the rest of a chain: not signing keys
			}
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
				p = cert.PublicKey
			}
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parsing %s block: %w", block.Type, err)
		}
		if pub != nil {
			return nil, errors.New("more than one public key in the file; use one file per key")
		}
		pub = p
	}
	if pub == nil {
		return nil, errors.New("no PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE PEM block")
	}
	return pub, nil
}

// newPublicKey checks pub, pins it to the algorithms it may verify (allow ∩
// what its type fits ∩ jwkAlg when set) and computes its identity. A key
// without kid is named by its RFC 7638 thumbprint.
func newPublicKey(pub any, kid string, allow algSet, source string) (*verifyKey, error) {
	kind, problem := publicKind(pub)
	if problem != "" {
		return nil, errors.New(problem)
	}
	algs := allow & kind.fits()
	if algs == 0 {
		return nil, fmt.Errorf("%s key, but none of %s is allowed", kind, kind.fits())
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	if kid == "" {
		if kid, err = Thumbprint(pub); err != nil {
			return nil, err
		}
	}
	return &verifyKey{kid: kid, kind: kind, algs: algs, pub: pub, fp: sha256.Sum256(der), source: source, since: time.Now()}, nil
}

// Thumbprint returns the RFC 7638 JWK thumbprint (SHA-256, base64url) of an
// RSA, EC or Ed25519 public key. Keys loaded from public key files, and
// JWKS keys without a kid, can be named by it in a token's kid header.
func Thumbprint(pub crypto.PublicKey) (string, error) {
	enc := base64.RawURLEncoding.EncodeToString
	var members string
	switch k := pub.(type) {
	case *rsa.PublicKey:
		members = `{"e":"` + enc(big.NewInt(int64(k.E)).Bytes()) + `","kty":"RSA","n":"` + enc(k.N.Bytes()) + `"}`
	case *ecdsa.PublicKey:
		kind, problem := publicKind(k)
		if problem != "" {
			return "", errors.New(problem)
		}
		raw, err := k.Bytes() // 0x04 || x || y, each padded to the field size
		if err != nil {
			return "", err
		}
		size := (len(raw) - 1) / 2
		crv := "P-256"
		if kind == kindP384 {
			crv = "P-384"
		}
		members = `{"crv":"` + crv + `","kty":"EC","x":"` + enc(raw[1:1+size]) + `","y":"` + enc(raw[1+size:]) + `"}`
	case ed25519.PublicKey:
		members = `{"crv":"Ed25519","kty":"OKP","x":"` + enc(k) + `"}`
	default:
		return "", errors.New("unsupported public key type")
	}
	sum := sha256.Sum256([]byte(members))
	return enc(sum[:]), nil
}

// keySet is one immutable version of the configured keys: the static keys
// (secret, files) and the current JWKS keys. A new JWKS gives a new set with
// the next generation.
type keySet struct {
	gen     uint64
	static  []*verifyKey
	jwks    []*verifyKey
	byKID   map[string][]*verifyKey
	members map[*verifyKey]struct{}
	// For tokens without kid: the one key fitting each alg, and how many
	// distinct keys fit it.
	single [numAlgs]*verifyKey
	count  [numAlgs]int
}

func newKeySet(gen uint64, static, jwks []*verifyKey) *keySet {
	s := &keySet{
		gen:     gen,
		static:  static,
		jwks:    jwks,
		byKID:   make(map[string][]*verifyKey, len(static)+len(jwks)),
		members: make(map[*verifyKey]struct{}, len(static)+len(jwks)),
	}
	for _, list := range [][]*verifyKey{static, jwks} {
		for _, k := range list {
			s.members[k] = struct{}{}
			if k.kid != "" && !containsKey(s.byKID[k.kid], k) {
				s.byKID[k.kid] = append(s.byKID[k.kid], k)
			}
			for a := algHS256; a < numAlgs; a++ {
				if !k.algs.has(a) {
					continue
				}
				switch {
				case s.single[a] == nil:
					s.single[a], s.count[a] = k, 1
				case !sameKey(s.single[a], k):
					s.count[a]++
				}
			}
		}
	}
	return s
}

func sameKey(a, b *verifyKey) bool { return a.kind == b.kind && a.fp == b.fp }

func containsKey(list []*verifyKey, k *verifyKey) bool {
	for _, x := range list {
		if sameKey(x, k) {
			return true
		}
	}
	return false
}

// lookup returns the key to verify a token with alg a and kid (""
// for none). With a kid, only keys of that kid fitting a are candidates;
// without, the token is accepted only when exactly one key fits a.
func (s *keySet) lookup(a alg, kid string) (*verifyKey, *verifyError) {
	if kid == "" {
		switch s.count[a] {
		case 0:
			return nil, errNoKey
		case 1:
			return s.single[a], nil
		}
		return nil, errAmbiguousKey
	}
	var found *verifyKey
	for _, k := range s.byKID[kid] {
		if !k.algs.has(a) {
			continue
		}
		if found != nil && !sameKey(found, k) {
			return nil, errKIDUnknown // two different keys under one kid
		}
		found = k
	}
	if found == nil {
		return nil, errKIDUnknown
	}
	return found, nil
}

// readKeyFile reads the PEM file at path, of at most maxKeyFile bytes; what
// names it in errors ("jwt public key", "private key").
func readKeyFile(what, path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("%s %s: file larger than 1 MiB", what, path)
	}
	return data, nil
}
