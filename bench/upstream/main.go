// Command upstream is the fast upstream of bench/run.sh: it answers every
// request with 200 "ok". It runs as its own process so that the CPU ticks the
// benchmark reads from /proc/<caddy pid>/stat are the gateway's alone.
//
//	upstream -addr 127.0.0.1:18081
package main

import (
	"flag"
	"log"
	"net/http"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18081", "listen address (loopback only)")
	flag.Parse()

	body := []byte("ok")
	srv := &http.Server{
		Addr: *addr,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			h := w.Header()
			h["Content-Type"] = []string{"text/plain; charset=utf-8"}
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(body)
		}),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	log.Fatal(srv.ListenAndServe())
}
