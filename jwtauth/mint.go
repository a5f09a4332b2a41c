package jwtauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
)

// Mint signs claims as a compact JWS with header typ "at+jwt", alg, and kid
// when kid is not empty. key is the HMAC secret ([]byte, at least 32 bytes)
// for HS*, or a crypto.Signer (*rsa.PrivateKey ≥ 2048 bits for RS*,
// *ecdsa.PrivateKey on P-256 for ES256 or P-384 for ES384,
// ed25519.PrivateKey for EdDSA). It is for development (the `caddy
// deplo-auth jwt mint` command) and tests; it adds no claims of its own.
func Mint(algName string, key any, kid string, claims map[string]any) (string, error) {
	return MintWithType(algName, key, kid, "at+jwt", claims)
}

// MintWithType is Mint with another JOSE typ, e.g. "refresh+jwt" to show
// that a refresh token is refused as a Bearer credential.
func MintWithType(algName string, key any, kid, typ string, claims map[string]any) (string, error) {
	if isNone(algName) {
		return "", errors.New("jwt mint: alg none is never used")
	}
	a, ok := parseAlg(algName)
	if !ok {
		return "", fmt.Errorf("jwt mint: unsupported algorithm %q", algName)
	}
	signKey, err := mintKey(a, key)
	if err != nil {
		return "", err
	}
	if len(kid) > MaxKIDLength {
		return "", errors.New("jwt mint: kid too long")
	}
	header, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid,omitempty"`
		Typ string `json:"typ"`
	}{algNames[a], kid, typ})
	if err != nil {
		return "", err
	}
	if claims == nil {
		claims = map[string]any{}
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("jwt mint: claims: %w", err)
	}
	enc := base64.RawURLEncoding
	signingInput := enc.EncodeToString(header) + "." + enc.EncodeToString(payload)
	sig, err := algMethods[a].Sign(signingInput, signKey)
	if err != nil {
		return "", fmt.Errorf("jwt mint: signing: %w", err)
	}
	token := signingInput + "." + enc.EncodeToString(sig)
	if len(token) > MaxTokenLength {
		return "", errors.New("jwt mint: token longer than 8 KiB")
	}
	return token, nil
}

// mintKey checks that key fits algorithm a and returns it in the form
// golang-jwt signs with.
func mintKey(a alg, key any) (any, error) {
	mismatch := fmt.Errorf("jwt mint: the key does not fit %s", algNames[a])
	switch k := key.(type) {
	case []byte:
		if !kindHMAC.fits().has(a) {
			return nil, mismatch
		}
		if len(k) < 32 {
			return nil, errors.New("jwt mint: HMAC secret shorter than 32 bytes")
		}
		return k, nil
	case *rsa.PrivateKey:
		if _, problem := publicKind(&k.PublicKey); problem != "" {
			return nil, errors.New("jwt mint: " + problem)
		}
		if !kindRSA.fits().has(a) {
			return nil, mismatch
		}
		return k, nil
	case *ecdsa.PrivateKey:
		kind, problem := publicKind(&k.PublicKey)
		if problem != "" {
			return nil, errors.New("jwt mint: " + problem)
		}
		if !kind.fits().has(a) {
			return nil, mismatch
		}
		return k, nil
	case ed25519.PrivateKey:
		if a != algEdDSA || len(k) != ed25519.PrivateKeySize {
			return nil, mismatch
		}
		return k, nil
	case *ed25519.PrivateKey:
		if k == nil {
			return nil, mismatch
		}
		return mintKey(a, *k)
	case crypto.Signer:
		return nil, errors.New("jwt mint: unsupported signer type (want an RSA, ECDSA or Ed25519 private key)")
	}
	return nil, errors.New("jwt mint: key must be a []byte secret or a private key")
}

// LoadPrivateKeyPEM reads a private key from a PEM file: PKCS #8 "PRIVATE
// KEY", PKCS #1 "RSA PRIVATE KEY" or SEC 1 "EC PRIVATE KEY". Encrypted keys
// are not supported. Errors never contain key material.
func LoadPrivateKeyPEM(path string) (crypto.Signer, error) {
	data, err := readKeyFile("private key", path)
	if err != nil {
		return nil, err
	}
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("private key %s: no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY PEM block", path)
		}
		var (
			key any
			err error
		)
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, fmt.Errorf("private key %s: encrypted keys are not supported", path)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("private key %s: parsing %s block failed", path, block.Type)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("private key %s: unsupported key type", path)
		}
		switch signer.(type) {
		case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
			return signer, nil
		}
		return nil, fmt.Errorf("private key %s: unsupported key type (want RSA, ECDSA or Ed25519)", path)
	}
}
