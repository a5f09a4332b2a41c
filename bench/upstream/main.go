// Command upstream is the fast upstream of bench/run.sh: it answers every
// request with 200 "ok", except a path ending in /_headers, which it answers
// with the request's headers, sorted, so that bench/run.sh can check that two
// routes forward the same request. It runs as its own process so that the CPU ticks the
// benchmark reads from /proc/<caddy pid>/stat are the gateway's alone.
//
//	upstream -addr 127.0.0.1:18081
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"sort"
	"strings"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18081", "listen address (loopback only)")
	flag.Parse()

	body := []byte("ok")
	srv := &http.Server{
		Addr: *addr,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/_headers") {
				writeHeaders(w, r)
				return
			}
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

func writeHeaders(w http.ResponseWriter, r *http.Request) {
	names := make([]string, 0, len(r.Header))
	for name := range r.Header {
		names = append(names, name)
	}
	sort.Strings(names)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	for _, name := range names {
		fmt.Fprintf(w, "%s: %s\n", name, strings.Join(r.Header[name], ", "))
	}
}
