// Command authorizer is the minimal external authorizer behind the /forward/
// route of bench/run.sh, the pattern of forward_auth in front of Oathkeeper or
// Authelia: it answers 200 (with X-Auth-Subject) when the Authorization header
// is "Bearer " + the one token in $BENCH_AUTHZ_TOKEN, and 401 otherwise. It
// does no hashing, no store lookup and no logging, so it is a lower bound of
// what a real authorizer costs.
//
//	BENCH_AUTHZ_TOKEN=sk_live_… authorizer -addr 127.0.0.1:18082
package main

import (
	"crypto/subtle"
	"flag"
	"log"
	"net/http"
	"os"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18082", "listen address (loopback only)")
	flag.Parse()

	token := os.Getenv("BENCH_AUTHZ_TOKEN")
	if token == "" {
		log.Fatal("authorizer: BENCH_AUTHZ_TOKEN is empty")
	}
	want := []byte("Bearer " + token)

	srv := &http.Server{
		Addr: *addr,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got := r.Header.Values("Authorization")
			if len(got) == 1 && subtle.ConstantTimeCompare([]byte(got[0]), want) == 1 {
				w.Header()["X-Auth-Subject"] = []string{"bench"}
				w.WriteHeader(http.StatusOK)
				return
			}
			w.Header()["Www-Authenticate"] = []string{`Bearer realm="bench"`}
			w.WriteHeader(http.StatusUnauthorized)
		}),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	log.Fatal(srv.ListenAndServe())
}
