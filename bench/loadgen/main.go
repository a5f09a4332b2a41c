// Command loadgen drives deplo_auth for bench/flood.sh and bench/soak.sh:
// keep-alive HTTP/1.1 clients on loopback, bounded in requests and time.
//
//	loadgen flood    -url http://127.0.0.1:18180 -n 1000000 -c 32 -real-c 4
//	loadgen stampede -url http://127.0.0.1:18180 -c 1000
//	loadgen mixed    -url http://127.0.0.1:18190 -duration 10m -interval 30s -rate 1000 -c 16
//
// Real tokens never appear on a command line: they come from the environment
// (LOADGEN_REAL_TOKENS, LOADGEN_STAMPEDE_TOKEN, LOADGEN_READ_TOKEN, comma or
// newline separated) or from a file (-real-file, one token a line).
//
// flood: -n requests, each with a distinct freshly generated well-formed
// sk_live_ token (apikey.Generate: valid checksum, unknown to the store), at
// full speed over -c connections, while -real-c other connections keep
// sending the real tokens and record their statuses and latency. Stops after
// -n flood requests or -max-duration, whichever comes first.
//
// stampede: -c goroutines, each on its own warmed keep-alive connection,
// released together, send their first request with one never-used token.
//
// mixed: a steady mix at -rate requests/s (bounded by -c in flight) for
// -duration, one JSON line per -interval with status counts per request type.
//
// Output: one JSON document on stdout (mixed: one JSON line per interval, then
// the summary). Progress goes to stderr.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/deplo-sh/deplo-auth/apikey"
)

func usage() {
	fmt.Fprintln(os.Stderr, "usage: loadgen flood|stampede|mixed [flags]   (loadgen <mode> -h for flags)")
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	mode := os.Args[1]
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	base := fs.String("url", "http://127.0.0.1:18180", "Caddy base URL (loopback only)")
	timeout := fs.Duration("timeout", 10*time.Second, "per-request timeout")
	realFile := fs.String("real-file", "", "file of real tokens, one a line (default: $LOADGEN_REAL_TOKENS)")
	var run func(ctx context.Context) (any, error)
	switch mode {
	case "flood":
		n := fs.Int64("n", 1_000_000, "flood requests (distinct unknown tokens)")
		c := fs.Int("c", 32, "flood connections")
		realC := fs.Int("real-c", 4, "real-client connections")
		path := fs.String("path", "/v1/workspaces/ws_bench/projects", "route the flood and the real clients hit")
		maxDur := fs.Duration("max-duration", 8*time.Minute, "stop the flood after this long even if -n is not reached")
		progress := fs.Duration("progress", 5*time.Second, "progress line interval on stderr")
		run = func(ctx context.Context) (any, error) {
			real, err := realTokens(*realFile, "LOADGEN_REAL_TOKENS")
			if err != nil {
				return nil, err
			}
			return flood(ctx, *base+*path, *n, *c, *realC, real, *maxDur, *progress, *timeout)
		}
	case "stampede":
		c := fs.Int("c", 1000, "goroutines (one connection each) released together")
		path := fs.String("path", "/v1/workspaces/ws_bench/projects", "route")
		warm := fs.String("warm-path", "/healthz", "public route used to open the connections first")
		run = func(ctx context.Context) (any, error) {
			tok, err := realTokens(*realFile, "LOADGEN_STAMPEDE_TOKEN")
			if err != nil {
				return nil, err
			}
			return stampede(ctx, *base, *path, *warm, tok[0], *c, *timeout)
		}
	case "mixed":
		dur := fs.Duration("duration", 10*time.Minute, "how long")
		interval := fs.Duration("interval", 30*time.Second, "status counts every")
		rate := fs.Float64("rate", 1000, "requests per second (all types together)")
		c := fs.Int("c", 16, "connections / requests in flight at most")
		ws := fs.String("workspace", "ws_bench", "workspace of the read token")
		run = func(ctx context.Context) (any, error) {
			tok, err := realTokens(*realFile, "LOADGEN_READ_TOKEN")
			if err != nil {
				return nil, err
			}
			return mixed(ctx, *base, *ws, tok, *dur, *interval, *rate, *c, *timeout)
		}
	default:
		usage()
	}
	_ = fs.Parse(os.Args[2:])
	if !strings.HasPrefix(*base, "http://127.0.0.1:") && !strings.HasPrefix(*base, "http://localhost:") && !strings.HasPrefix(*base, "http://[::1]:") {
		fmt.Fprintln(os.Stderr, "loadgen: -url must be a loopback http:// URL")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	out, err := run(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", " ")
	_ = enc.Encode(out)
}

func realTokens(file, env string) ([]string, error) {
	var raw string
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		raw = string(b)
	} else {
		raw = os.Getenv(env)
	}
	var out []string
	for _, f := range strings.FieldsFunc(raw, func(r rune) bool { return r == ',' || r == '\n' || r == ' ' || r == '\r' }) {
		if apikey.Check(f, true) != nil {
			return nil, fmt.Errorf("a token from %s is not a well-formed sk_live_ token", map[bool]string{true: file, false: "$" + env}[file != ""])
		}
		out = append(out, f)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no tokens: set $%s or -real-file", env)
	}
	return out, nil
}

// newClient: keep-alive, at most conns connections to the one host, no proxy,
// no compression, no redirects.
func newClient(conns int, timeout time.Duration) *http.Client {
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          conns,
		MaxIdleConnsPerHost:   conns,
		MaxConnsPerHost:       conns,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		ForceAttemptHTTP2:     false,
		ResponseHeaderTimeout: timeout,
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// do sends one request and returns the status ("200", "401", … or "error").
func do(ctx context.Context, cl *http.Client, method, url, auth string) string {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return "error"
	}
	if auth != "" {
		req.Header["Authorization"] = []string{auth}
	}
	resp, err := cl.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return "cancelled"
		}
		return "error"
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return fmt.Sprint(resp.StatusCode)
}

type counts map[string]int64

func (c counts) add(o counts) {
	for k, v := range o {
		c[k] += v
	}
}

func pct(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p * float64(len(sorted)-1))
	return float64(sorted[i].Microseconds()) / 1000
}

// ---- flood ------------------------------------------------------------------

type floodResult struct {
	Mode            string  `json:"mode"`
	URL             string  `json:"url"`
	NRequested      int64   `json:"n_requested"`
	NSent           int64   `json:"n_sent"`
	Connections     int     `json:"connections"`
	RealConnections int     `json:"real_connections"`
	RealTokens      int     `json:"real_tokens"`
	DurationSeconds float64 `json:"duration_seconds"`
	FloodRPS        float64 `json:"flood_rps"`
	StoppedBy       string  `json:"stopped_by"`
	Flood           counts  `json:"flood_status"`
	Real            counts  `json:"real_status"`
	RealRequests    int64   `json:"real_requests"`
	RealP50ms       float64 `json:"real_p50_ms"`
	RealP99ms       float64 `json:"real_p99_ms"`
	RealP999ms      float64 `json:"real_p999_ms"`
	RealMaxms       float64 `json:"real_max_ms"`
	TokenGenErrors  int64   `json:"token_generation_errors"`
}

func flood(ctx context.Context, url string, n int64, c, realC int, real []string, maxDur, progress, timeout time.Duration) (*floodResult, error) {
	if n < 1 || c < 1 || realC < 0 {
		return nil, errors.New("need -n ≥ 1, -c ≥ 1, -real-c ≥ 0")
	}
	// The flood stops taking new requests at the deadline and the real clients
	// after the flood, each after its request in flight completes, so every
	// request the server handled is counted (no cancelled in-flight requests).
	deadline := time.Now().Add(maxDur)
	var timedOut, realStop atomic.Bool
	fctx := ctx
	floodCl := newClient(c, timeout)
	realCl := newClient(realC+1, timeout)

	var next, sent, genErr atomic.Int64
	var floodDone = make(chan struct{})
	var wg sync.WaitGroup
	perW := make([]counts, c)
	start := time.Now()
	for w := 0; w < c; w++ {
		perW[w] = counts{}
		wg.Add(1)
		go func(m counts) {
			defer wg.Done()
			for fctx.Err() == nil {
				if time.Now().After(deadline) {
					timedOut.Store(true)
					return
				}
				if next.Add(1) > n {
					return
				}
				tok, err := apikey.Generate()
				if err != nil {
					genErr.Add(1)
					continue
				}
				s := do(fctx, floodCl, http.MethodGet, url, "Bearer "+tok)
				if s == "cancelled" {
					return
				}
				m[s]++
				sent.Add(1)
			}
		}(perW[w])
	}

	// Real clients run until the flood is done.
	rctx := ctx
	var rwg sync.WaitGroup
	realCounts := make([]counts, realC)
	realLat := make([][]time.Duration, realC)
	for w := 0; w < realC; w++ {
		realCounts[w] = counts{}
		rwg.Add(1)
		go func(w int) {
			defer rwg.Done()
			for i := w; rctx.Err() == nil && !realStop.Load(); i++ {
				t0 := time.Now()
				s := do(rctx, realCl, http.MethodGet, url, "Bearer "+real[i%len(real)])
				if s == "cancelled" {
					return
				}
				realLat[w] = append(realLat[w], time.Since(t0))
				realCounts[w][s]++
			}
		}(w)
	}

	go func() {
		t := time.NewTicker(progress)
		defer t.Stop()
		last, lastT := int64(0), start
		for {
			select {
			case <-floodDone:
				return
			case now := <-t.C:
				s := sent.Load()
				fmt.Fprintf(os.Stderr, "loadgen flood: %d/%d sent, %.0f req/s (last %s)\n", s, n, float64(s-last)/now.Sub(lastT).Seconds(), progress)
				last, lastT = s, now
			}
		}
	}()

	wg.Wait()
	dur := time.Since(start)
	close(floodDone)
	realStop.Store(true)
	rwg.Wait()

	res := &floodResult{Mode: "flood", URL: url, NRequested: n, NSent: sent.Load(), Connections: c,
		RealConnections: realC, RealTokens: len(real), DurationSeconds: dur.Seconds(),
		Flood: counts{}, Real: counts{}, TokenGenErrors: genErr.Load(), StoppedBy: "n"}
	switch {
	case ctx.Err() != nil:
		res.StoppedBy = "signal"
	case timedOut.Load():
		res.StoppedBy = "max-duration"
	}
	res.FloodRPS = float64(res.NSent) / dur.Seconds()
	for _, m := range perW {
		res.Flood.add(m)
	}
	var all []time.Duration
	for w := range realC {
		res.Real.add(realCounts[w])
		all = append(all, realLat[w]...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	res.RealRequests = int64(len(all))
	res.RealP50ms, res.RealP99ms, res.RealP999ms = pct(all, 0.50), pct(all, 0.99), pct(all, 0.999)
	if len(all) > 0 {
		res.RealMaxms = float64(all[len(all)-1].Microseconds()) / 1000
	}
	return res, nil
}

// ---- stampede -----------------------------------------------------------------

type stampedeResult struct {
	Mode        string  `json:"mode"`
	Goroutines  int     `json:"goroutines"`
	WarmedConns int     `json:"warmed_connections"`
	Status      counts  `json:"status"`
	WarmStatus  counts  `json:"warm_status"`
	WallMs      float64 `json:"wall_ms"`
	P50ms       float64 `json:"p50_ms"`
	P99ms       float64 `json:"p99_ms"`
	Maxms       float64 `json:"max_ms"`
}

func stampede(ctx context.Context, base, path, warmPath, token string, c int, timeout time.Duration) (*stampedeResult, error) {
	if c < 1 {
		return nil, errors.New("need -c ≥ 1")
	}
	// One client (one connection) per goroutine, so every goroutine holds a
	// warm connection of its own when released: the requests reach Caddy together.
	clients := make([]*http.Client, c)
	res := &stampedeResult{Mode: "stampede", Goroutines: c, Status: counts{}, WarmStatus: counts{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range clients {
		clients[i] = newClient(1, timeout)
		wg.Add(1)
		go func(cl *http.Client) {
			defer wg.Done()
			s := do(ctx, cl, http.MethodGet, base+warmPath, "")
			mu.Lock()
			res.WarmStatus[s]++
			mu.Unlock()
		}(clients[i])
	}
	wg.Wait()
	res.WarmedConns = int(res.WarmStatus["200"])
	time.Sleep(200 * time.Millisecond)

	release := make(chan struct{})
	lat := make([]time.Duration, c)
	var ready sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		ready.Add(1)
		go func(i int) {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
			req.Header["Authorization"] = []string{"Bearer " + token}
			ready.Done()
			<-release
			t0 := time.Now()
			resp, err := clients[i].Do(req)
			s := "error"
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				s = fmt.Sprint(resp.StatusCode)
			}
			lat[i] = time.Since(t0)
			mu.Lock()
			res.Status[s]++
			mu.Unlock()
		}(i)
	}
	ready.Wait()
	t0 := time.Now()
	close(release)
	wg.Wait()
	res.WallMs = float64(time.Since(t0).Microseconds()) / 1000
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	res.P50ms, res.P99ms = pct(lat, 0.5), pct(lat, 0.99)
	res.Maxms = float64(lat[len(lat)-1].Microseconds()) / 1000
	for _, cl := range clients {
		cl.CloseIdleConnections()
	}
	return res, nil
}

// ---- mixed --------------------------------------------------------------------

type reqType struct {
	Name   string
	Weight int
	Method string
	Path   string
	Auth   func(w int, i int) string
	Want   int
}

type interval struct {
	Index      int                `json:"interval"`
	EndSeconds float64            `json:"t_end_s"`
	Requests   int64              `json:"requests"`
	RPS        float64            `json:"rps"`
	ByType     map[string]counts  `json:"by_type"`
	Unexpected int64              `json:"unexpected"`
	LatencyMs  map[string]float64 `json:"latency_ms"`
}

type mixedResult struct {
	Mode            string            `json:"mode"`
	DurationSeconds float64           `json:"duration_seconds"`
	Rate            float64           `json:"rate_target"`
	Connections     int               `json:"connections"`
	Mix             map[string]int    `json:"mix_percent"`
	Expected        map[string]int    `json:"expected_status"`
	Requests        int64             `json:"requests"`
	Totals          map[string]counts `json:"totals_by_type"`
	Unexpected      int64             `json:"unexpected"`
	Intervals       []interval        `json:"intervals"`
}

func mixed(ctx context.Context, base, ws string, read []string, dur, every time.Duration, rate float64, c int, timeout time.Duration) (*mixedResult, error) {
	if rate <= 0 || c < 1 || dur <= 0 || every <= 0 {
		return nil, errors.New("need -rate > 0, -c ≥ 1, -duration > 0, -interval > 0")
	}
	readPath := base + "/v1/workspaces/" + ws + "/projects"
	deployPath := base + "/v1/workspaces/" + ws + "/projects/p1/deployments"
	types := []reqType{
		{"allowed", 70, http.MethodGet, readPath, func(w, i int) string { return "Bearer " + read[(w+i)%len(read)] }, 200},
		{"insufficient_scope", 10, http.MethodPost, deployPath, func(w, i int) string { return "Bearer " + read[(w+i)%len(read)] }, 403},
		{"unknown_token", 10, http.MethodGet, readPath, func(int, int) string {
			t, err := apikey.Generate()
			if err != nil {
				return "Bearer sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
			}
			return "Bearer " + t
		}, 401},
		{"no_credential", 5, http.MethodGet, readPath, func(int, int) string { return "" }, 401},
		{"public", 5, http.MethodGet, base + "/healthz", func(int, int) string { return "" }, 200},
	}
	var wheel []int
	res := &mixedResult{Mode: "mixed", Rate: rate, Connections: c, Mix: map[string]int{}, Expected: map[string]int{}, Totals: map[string]counts{}}
	for i, t := range types {
		for range t.Weight {
			wheel = append(wheel, i)
		}
		res.Mix[t.Name] = t.Weight
		res.Expected[t.Name] = t.Want
		res.Totals[t.Name] = counts{}
	}
	cl := newClient(c, timeout)
	dctx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()

	type sample struct {
		typ    int
		status string
		lat    time.Duration
	}
	samples := make(chan sample, 4096)
	var seq atomic.Int64
	step := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range c {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(start.UnixNano())))
			for i := 0; ; i++ {
				k := seq.Add(1) - 1
				at := start.Add(time.Duration(k) * step)
				if d := time.Until(at); d > 0 {
					select {
					case <-dctx.Done():
						return
					case <-time.After(d):
					}
				}
				if dctx.Err() != nil {
					return
				}
				ti := wheel[rng.IntN(len(wheel))]
				t := types[ti]
				t0 := time.Now()
				s := do(dctx, cl, t.Method, t.Path, t.Auth(w, i))
				if s == "cancelled" {
					return
				}
				samples <- sample{ti, s, time.Since(t0)}
			}
		}(w)
	}
	go func() { wg.Wait(); close(samples) }()

	enc := json.NewEncoder(os.Stdout)
	newIv := func(idx int) (*interval, [][]time.Duration) {
		iv := &interval{Index: idx, ByType: map[string]counts{}, LatencyMs: map[string]float64{}}
		for _, t := range types {
			iv.ByType[t.Name] = counts{}
		}
		return iv, make([][]time.Duration, len(types))
	}
	flush := func(iv *interval, lats [][]time.Duration, now time.Time, from time.Time) {
		iv.EndSeconds = now.Sub(start).Seconds()
		if s := now.Sub(from).Seconds(); s > 0 {
			iv.RPS = float64(iv.Requests) / s
		}
		for i, t := range types {
			l := lats[i]
			sort.Slice(l, func(a, b int) bool { return l[a] < l[b] })
			iv.LatencyMs[t.Name+"_p50"] = pct(l, 0.5)
			iv.LatencyMs[t.Name+"_p99"] = pct(l, 0.99)
			res.Totals[t.Name].add(iv.ByType[t.Name])
		}
		res.Unexpected += iv.Unexpected
		res.Requests += iv.Requests
		res.Intervals = append(res.Intervals, *iv)
		_ = enc.Encode(map[string]any{"interval": iv})
		fmt.Fprintf(os.Stderr, "loadgen mixed: interval %d t=%.0fs %d requests (%.0f/s) unexpected=%d\n",
			iv.Index, iv.EndSeconds, iv.Requests, iv.RPS, iv.Unexpected)
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	iv, lats := newIv(1)
	ivStart := start
	for {
		select {
		case s, ok := <-samples:
			if !ok {
				now := time.Now()
				if iv.Requests > 0 {
					flush(iv, lats, now, ivStart)
				}
				res.DurationSeconds = now.Sub(start).Seconds()
				return res, nil
			}
			t := types[s.typ]
			iv.ByType[t.Name][s.status]++
			iv.Requests++
			if s.status != fmt.Sprint(t.Want) {
				iv.Unexpected++
			}
			lats[s.typ] = append(lats[s.typ], s.lat)
		case now := <-tick.C:
			flush(iv, lats, now, ivStart)
			iv, lats = newIv(iv.Index + 1)
			ivStart = now
		}
	}
}
