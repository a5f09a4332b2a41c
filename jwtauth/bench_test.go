package jwtauth

import (
	"testing"
	"time"
)

// BenchmarkVerify: cold = cache disabled (every call parses and checks the
// signature); cached = the same token, answered from the cache.
func BenchmarkVerify(b *testing.B) {
	now := time.Now()
	k := keys()
	for _, alg := range []struct {
		name string
		key  any
		cfg  func(b *testing.B) Config
	}{
		{"HS256", k.secret, func(*testing.B) Config { return Config{Secret: k.secret} }},
		{"ES256", k.p256, func(b *testing.B) Config {
			return Config{PublicKeyFiles: []string{writePublicPEM(b, k.p256.Public())}}
		}},
		{"RS256", k.rsa, func(b *testing.B) Config {
			return Config{PublicKeyFiles: []string{writePublicPEM(b, k.rsa.Public())}}
		}},
		{"EdDSA", k.ed, func(b *testing.B) Config {
			return Config{PublicKeyFiles: []string{writePublicPEM(b, k.ed.Public())}}
		}},
	} {
		for _, mode := range []struct {
			name  string
			cache int64
		}{{"cold", -1}, {"cached", 10_000}} {
			b.Run(alg.name+"/"+mode.name, func(b *testing.B) {
				cfg := alg.cfg(b)
				cfg.Algorithms = []string{alg.name}
				cfg.CacheMaxEntries = mode.cache
				cfg.Issuer = "https://dash.deplo.sh"
				cfg.Audience = "deplo-api"
				v := newVerifier(b, cfg)
				tok := mint(b, alg.name, alg.key, "", with(claimsAt(now), "iss", "https://dash.deplo.sh", "aud", "deplo-api"))
				if _, err := v.Verify(tok, now); err != nil {
					b.Fatal(err)
				}
				v.waitCache()
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					if _, err := v.Verify(tok, now); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkVerifyCachedParallel(b *testing.B) {
	now := time.Now()
	k := keys()
	v := newVerifier(b, Config{Secret: k.secret, Algorithms: []string{"HS256"}})
	tok := mint(b, "HS256", k.secret, "", claimsAt(now))
	v.Verify(tok, now)
	v.waitCache()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := v.Verify(tok, now); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkLooksLikeJWT(b *testing.B) {
	tok := mint(b, "HS256", keys().secret, "", claimsAt(time.Now()))
	b.ReportAllocs()
	for b.Loop() {
		if !LooksLikeJWT(tok) {
			b.Fatal("no")
		}
	}
}
