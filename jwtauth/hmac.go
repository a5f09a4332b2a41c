package jwtauth

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"hash"
	"sync"
	"unsafe"
)

// hmacPools keeps keyed HMAC states per algorithm (HS256, HS384, HS512), so
// a verification does not re-derive the keyed pads.
type hmacPools [3]sync.Pool

func newHMACPools(k *verifyKey) {
	secret := k.pub.([]byte)
	k.macs = new(hmacPools)
	for i, fn := range [3]func() hash.Hash{sha256.New, sha512.New384, sha512.New} {
		k.macs[i].New = func() any { return hmac.New(fn, secret) }
	}
}

// verifyHMAC compares in constant time. The algorithm was pinned by the
// caller (verifySig).
func verifyHMAC(a alg, k *verifyKey, signingInput string, sig []byte) bool {
	if k.macs == nil {
		return false
	}
	p := &k.macs[a-algHS256]
	h := p.Get().(hash.Hash)
	h.Reset()
	h.Write(stringBytes(signingInput))
	var buf [sha512.Size]byte
	mac := h.Sum(buf[:0])
	p.Put(h)
	return hmac.Equal(mac, sig)
}

// stringBytes returns the bytes of s without copying. The result must only
// be read, never written or kept.
func stringBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}
