package jwtauth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// alg is one of the supported JWS algorithms.
type alg uint8

const (
	algInvalid alg = iota
	algHS256
	algHS384
	algHS512
	algRS256
	algRS384
	algRS512
	algES256
	algES384
	algEdDSA
	numAlgs
)

var algNames = [numAlgs]string{
	algHS256: "HS256", algHS384: "HS384", algHS512: "HS512",
	algRS256: "RS256", algRS384: "RS384", algRS512: "RS512",
	algES256: "ES256", algES384: "ES384", algEdDSA: "EdDSA",
}

// algMethods are golang-jwt's implementations, used only for the primitive
// (hash + verify/sign) once this package has pinned the algorithm and key.
var algMethods = [numAlgs]jwt.SigningMethod{
	algHS256: jwt.SigningMethodHS256, algHS384: jwt.SigningMethodHS384, algHS512: jwt.SigningMethodHS512,
	algRS256: jwt.SigningMethodRS256, algRS384: jwt.SigningMethodRS384, algRS512: jwt.SigningMethodRS512,
	algES256: jwt.SigningMethodES256, algES384: jwt.SigningMethodES384, algEdDSA: jwt.SigningMethodEdDSA,
}

func (a alg) String() string {
	if a > algInvalid && a < numAlgs {
		return algNames[a]
	}
	return "invalid"
}

// Algorithms returns the names of the supported algorithms, in the order
// of the documentation: what an allowlist may hold.
func Algorithms() []string { return append([]string(nil), algNames[algHS256:]...) }

// parseAlg maps an algorithm name, exactly as registered by RFC 7518 / 8037,
// to an alg.
func parseAlg(s string) (alg, bool) {
	for a := algHS256; a < numAlgs; a++ {
		if algNames[a] == s {
			return a, true
		}
	}
	return algInvalid, false
}

// isNone reports whether s spells the unsecured algorithm in any case.
func isNone(s string) bool { return strings.EqualFold(s, "none") }

// algSet is a set of algs.
type algSet uint16

func setOf(as ...alg) (s algSet) {
	for _, a := range as {
		s |= 1 << a
	}
	return s
}

func (s algSet) has(a alg) bool { return a > algInvalid && a < numAlgs && s&(1<<a) != 0 }

func (s algSet) String() string {
	var b strings.Builder
	for a := algHS256; a < numAlgs; a++ {
		if s.has(a) {
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(algNames[a])
		}
	}
	return b.String()
}

// keyKind is the type of a verification key. Each kind fits a fixed family
// of algorithms; nothing in a token can change that.
type keyKind uint8

const (
	kindHMAC keyKind = iota + 1
	kindRSA
	kindP256
	kindP384
	kindEd25519
)

func (k keyKind) String() string {
	switch k {
	case kindHMAC:
		return "HMAC secret"
	case kindRSA:
		return "RSA"
	case kindP256:
		return "EC P-256"
	case kindP384:
		return "EC P-384"
	case kindEd25519:
		return "Ed25519"
	}
	return "unknown"
}

// fits returns the algorithms a key of kind k may verify.
func (k keyKind) fits() algSet {
	switch k {
	case kindHMAC:
		return setOf(algHS256, algHS384, algHS512)
	case kindRSA:
		return setOf(algRS256, algRS384, algRS512)
	case kindP256:
		return setOf(algES256)
	case kindP384:
		return setOf(algES384)
	case kindEd25519:
		return setOf(algEdDSA)
	}
	return 0
}

// RSA modulus bounds: below 2048 bits is refused as weak, above 8192 as a
// verification-cost hazard.
const (
	minRSABits = 2048
	maxRSABits = 8192
)

// publicKind classifies a public key and checks it is acceptable.
func publicKind(pub any) (keyKind, string) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N == nil || k.N.Sign() <= 0 {
			return 0, "RSA key without modulus"
		}
		if bits := k.N.BitLen(); bits < minRSABits || bits > maxRSABits {
			return 0, "RSA key must have 2048 to 8192 bits"
		}
		if k.E < 3 || k.E%2 == 0 {
			return 0, "RSA key has an unacceptable public exponent"
		}
		return kindRSA, ""
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return kindP256, ""
		case elliptic.P384():
			return kindP384, ""
		}
		return 0, "EC key on an unsupported curve (want P-256 or P-384)"
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return 0, "Ed25519 key of the wrong size"
		}
		return kindEd25519, ""
	}
	return 0, "unsupported public key type (want RSA, EC P-256/P-384 or Ed25519)"
}
