package identity

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

const benchPath = "/v1/workspaces/ws_7Hq2/projects/web/deploys"

func BenchmarkSign(b *testing.B) {
	s := mustSigner(b, "", testKey1)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Sign("POST", benchPath, idProject, testNow); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSignRequest is the gateway's call: read the identity headers on
// the request, sign, set the signature header.
func BenchmarkSignRequest(b *testing.B) {
	s := mustSigner(b, "", testKey1)
	r := httptest.NewRequest("POST", benchPath, nil)
	(Parser{}).SetHeaders(r.Header, idProject)
	b.ReportAllocs()
	for b.Loop() {
		if err := s.SignRequest(r, testNow); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignRequestParallel(b *testing.B) {
	s := mustSigner(b, "", testKey1)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := httptest.NewRequest("POST", benchPath, nil)
		(Parser{}).SetHeaders(r.Header, idProject)
		for pb.Next() {
			if err := s.SignRequest(r, testNow); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	r := signedRequest(b, mustSigner(b, "", testKey1), idProject, "POST", benchPath, testNow)
	v := mustVerifier(b, "", testKey2, testKey1)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(r, testNow); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyParallel(b *testing.B) {
	r := signedRequest(b, mustSigner(b, "", testKey1), idProject, "POST", benchPath, testNow)
	v := mustVerifier(b, "", testKey2, testKey1)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := v.Verify(r, testNow); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkVerifyRefused is the path a forger drives.
func BenchmarkVerifyRefused(b *testing.B) {
	r := signedRequest(b, mustSigner(b, "", testKey1), idProject, "POST", benchPath, testNow)
	r.Header.Set("X-Deplo-Scopes", "admin")
	v := mustVerifier(b, "", testKey1)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(r, testNow); err == nil {
			b.Fatal("accepted")
		}
	}
}

func BenchmarkFromRequest(b *testing.B) {
	r := httptest.NewRequest("POST", benchPath, nil)
	(Parser{}).SetHeaders(r.Header, idProject)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := FromRequest(r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMiddleware(b *testing.B) {
	r := signedRequest(b, mustSigner(b, "", testKey1), idProject, "POST", benchPath, time.Now())
	h := Middleware(mustVerifier(b, "", testKey1), http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}
