package identity

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestMiddleware(t *testing.T) {
	s := mustSigner(t, "", testKey1)
	other := mustSigner(t, "", testKey2)
	var refused error
	v := &Verifier{Keys: []Key{testKey1}, OnRefuse: func(r *http.Request, err error) { refused = err }}

	var seen *Identity
	h := Middleware(v, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := FromContext(r.Context())
		if !ok {
			t.Error("no identity in the context")
		}
		seen = &id
		w.WriteHeader(http.StatusTeapot)
	}))

	unsigned := httptest.NewRequest("GET", "/v1/x", nil)
	(Parser{}).SetHeaders(unsigned.Header, idWorkspace)
	tampered := signedRequest(t, s, idProject, "GET", "/v1/x", time.Now())
	tampered.Header.Del("X-Deplo-Project")

	tests := []struct {
		name   string
		r      *http.Request
		status int
		want   Identity
		err    error
	}{
		{"valid", signedRequest(t, s, idProject, "GET", "/v1/x", time.Now()), http.StatusTeapot, idProject, nil},
		{"valid jwt", signedRequest(t, s, idJWT, "DELETE", "/v1/y", time.Now()), http.StatusTeapot, idJWT, nil},
		{"anonymous", httptest.NewRequest("GET", "/v1/x", nil), 401, Identity{}, ErrNoIdentity},
		{"unsigned", unsigned, 401, Identity{}, ErrNoSignature},
		{"tampered", tampered, 401, Identity{}, ErrBadSignature},
		{"unknown key", signedRequest(t, other, idProject, "GET", "/v1/x", time.Now()), 401, Identity{}, ErrUnknownKey},
		{"expired", signedRequest(t, s, idProject, "GET", "/v1/x", time.Now().Add(-time.Minute)), 401, Identity{}, ErrExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen, refused = nil, nil
			w := httptest.NewRecorder()
			h.ServeHTTP(w, tt.r)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d", w.Code, tt.status)
			}
			if tt.err == nil {
				if seen == nil || *seen != tt.want {
					t.Fatalf("handler saw %+v, want %+v", seen, tt.want)
				}
				if refused != nil {
					t.Fatalf("OnRefuse called: %v", refused)
				}
				return
			}
			if seen != nil {
				t.Fatal("handler called on a refused request")
			}
			if !errors.Is(refused, tt.err) {
				t.Fatalf("OnRefuse got %v, want %v", refused, tt.err)
			}
			body, _ := io.ReadAll(w.Body)
			if string(body) != `{"error":"unauthenticated"}`+"\n" {
				t.Fatalf("body %q", body)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type %q", ct)
			}
			if w.Header().Get("Cache-Control") != "no-store" || w.Header().Get("WWW-Authenticate") == "" {
				t.Fatalf("headers %v", w.Header())
			}
		})
	}
}

func TestMiddlewarePanicsOnBadConfig(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	Middleware(&Verifier{}, http.NotFoundHandler())
}
