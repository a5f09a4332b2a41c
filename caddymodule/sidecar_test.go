package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// adaptGlobal adapts a Caddyfile and returns its deplo_auth_sidecar app.
func adaptGlobal(t *testing.T, src string) (string, error) {
	t.Helper()
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), nil)
	if err != nil {
		return "", err
	}
	var cfg struct {
		Apps map[string]json.RawMessage `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	return string(cfg.Apps["deplo_auth_sidecar"]), nil
}

func TestUnmarshalCaddyfileSidecar(t *testing.T) {
	for _, tt := range []struct{ name, input, want string }{
		{"minimal", "{\n deplo_auth_sidecar {\n listen unix//run/deplo-auth/verify.sock|0660\n keys file k\n }\n}",
			`{"listen":["unix//run/deplo-auth/verify.sock|0660"],"keys":{"file":"k"}}`},
		{"every sidecar option", "{\n deplo_auth_sidecar {\n listen unix//s|0660 127.0.0.1:9191\n listen [::1]:9191\n from original\n trusted 10.0.0.0/8 ::1\n trusted_proxies 10.9.0.0/16\n keys file k\n throttle 5 1m\n route GET /x read\n default authenticated\n }\n}",
			`{"listen":["unix//s|0660","127.0.0.1:9191","[::1]:9191"],"from":"original","trusted":["10.0.0.0/8","::1"],"trusted_proxies":["10.9.0.0/16"],"keys":{"file":"k"},"throttle":{"failures":5,"window":60000000000},"routes":[{"method":"GET","path":"/x","scopes":["read"]}],"default":"authenticated"}`},
		{"envoy", "{\n deplo_auth_sidecar {\n listen 127.0.0.1:9192\n from envoy\n path_prefix /deplo-verify\n keys file k\n }\n}",
			`{"listen":["127.0.0.1:9192"],"from":"envoy","path_prefix":"/deplo-verify","keys":{"file":"k"}}`},
	} {
		got, err := adaptGlobal(t, tt.input)
		if err != nil || got != tt.want {
			t.Errorf("%s:\n got %s (%v)\nwant %s", tt.name, got, err, tt.want)
		}
	}
}

func TestUnmarshalCaddyfileSidecarErrors(t *testing.T) {
	const keys = "\n keys file k"
	for _, tt := range []struct{ name, body, want string }{
		{"no listen", keys, "listen: at least one address is required"},
		{"listen without address", "\n listen" + keys, "listen: want at least one address"},
		{"listen port range", "\n listen 127.0.0.1:9000-9010" + keys, `listen: "127.0.0.1:9000-9010"`},
		{"listen udp", "\n listen udp/127.0.0.1:9000" + keys, "want a Unix socket or a TCP address"},
		{"bad from", "\n listen :1\n from nginx" + keys, `from: "nginx" is not auto, forwarded, original or envoy`},
		{"bad cidr", "\n listen :1\n trusted 10.0.0.0/33" + keys, `trusted: "10.0.0.0/33"`},
		{"host name", "\n listen :1\n trusted localhost" + keys, `trusted: "localhost"`},
		{"bad proxy", "\n listen :1\n trusted_proxies balancer" + keys, `trusted_proxies: "balancer"`},
		{"envoy without prefix", "\n listen :1\n from envoy" + keys, "path_prefix: required with from envoy"},
		{"prefix without envoy", "\n listen :1\n path_prefix /v" + keys, "path_prefix: only used with from envoy"},
		{"verify inside", "\n listen :1\n verify" + keys, "deplo_auth_sidecar"},
		{"unknown option", "\n listen :1\n allow all" + keys, `unrecognized deplo_auth_sidecar subdirective "allow"`},
		{"twice", "\n listen :1" + keys + "\n }\n deplo_auth_sidecar {\n listen :2" + keys, "only one"},
	} {
		_, err := adaptGlobal(t, "{\n deplo_auth_sidecar {"+tt.body+"\n }\n}")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}

// TestInSiteVerifyGone: the in-site verify form fails to load, in the
// Caddyfile and in JSON, with a message naming deplo_auth_sidecar.
func TestInSiteVerifyGone(t *testing.T) {
	_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte("http:// {\n deplo_auth {\n keys file k\n verify {\n from original\n }\n }\n}"), nil)
	if err == nil || !strings.Contains(err.Error(), "deplo_auth_sidecar") {
		t.Errorf("Caddyfile: %v", err)
	}
	err = provisionErr(t, func(h *Handler) { h.Verify = json.RawMessage(`{"from":"original"}`) })
	if err == nil || !strings.Contains(err.Error(), "deplo_auth_sidecar") {
		t.Errorf("JSON: %v", err)
	}
}

// The JSON form is checked at provision, naming the field.
func TestProvisionSidecarErrors(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "keys.json")
	writeKeyFile(t, keys, nil)
	for want, s := range map[string]Sidecar{
		"listen: at least one":   {},
		"listen: \"nonsense:x\"": {Listen: []string{"nonsense:x"}},
		"from":                   {Listen: []string{":1"}, VerifyConfig: VerifyConfig{From: "Original"}},
		"trusted:":               {Listen: []string{":1"}, VerifyConfig: VerifyConfig{Trusted: []string{"10.0.0.1/8/8"}}},
		"trusted_proxies:":       {Listen: []string{":1"}, VerifyConfig: VerifyConfig{TrustedProxies: []string{"lb"}}},
		"path_prefix":            {Listen: []string{":1"}, VerifyConfig: VerifyConfig{From: "envoy"}},
		"keys:":                  {Listen: []string{":1"}},
	} {
		s := s
		if want != "keys:" {
			s.Keys = &KeysConfig{File: keys}
		}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		err := s.Provision(ctx)
		_ = s.Cleanup()
		cancel()
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%+v: Provision() = %v, want %q…", s.VerifyConfig, err, want)
		}
	}
}

// sidecarJSON is a whole Caddy config with the sidecar app on sock and
// tcp, and no admin endpoint (tests run beside other Caddys).
func sidecarJSON(t *testing.T, keys, sock, tcp, route string) []byte {
	t.Helper()
	cfg := map[string]any{
		"admin": map[string]any{"disabled": true},
		"apps": map[string]any{"deplo_auth_sidecar": map[string]any{
			"listen":   []string{"unix/" + sock + "|0660", tcp},
			"keys":     map[string]any{"file": keys},
			"throttle": map[string]any{"off": true},
			"routes":   []map[string]any{{"method": "GET", "path": route, "scopes": []string{"read"}}},
		}},
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// freePort is a loopback TCP port free at the time of asking.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestSidecarApp: validating binds nothing; the started app answers on its
// Unix socket (mode 0660) and TCP address, whatever Host or path the
// request has; a reload loop under load refuses no connection and answers
// no 5xx; stopping removes the socket.
func TestSidecarApp(t *testing.T) {
	dir, err := os.MkdirTemp("", "deplo-sc-") // a socket path has ~100 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	tok := testToken{raw: mustToken(t), id: "tok_read", workspace: "ws_acme", scopes: []string{"read"}}
	keys := filepath.Join(dir, "keys.json")
	writeKeyFile(t, keys, []testToken{tok})
	sock, tcp := filepath.Join(dir, "verify.sock"), freePort(t)
	routeA, routeB := "/v1/workspaces/{workspace}/projects", "/v1/workspaces/{workspace}/{what}"

	var cfg caddy.Config
	if err := json.Unmarshal(sidecarJSON(t, keys, sock, tcp, routeA), &cfg); err != nil {
		t.Fatal(err)
	}
	if err := caddy.Validate(&cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("validating created the socket: %v", err)
	}
	if c, err := net.Dial("tcp", tcp); err == nil {
		c.Close()
		t.Fatal("validating bound the TCP address")
	}

	if err := caddy.Load(sidecarJSON(t, keys, sock, tcp, routeA), false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o660 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket: %v %v", fi, err)
	}

	clients := map[string]*http.Client{
		"unix": {Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}},
		"tcp": {Timeout: 5 * time.Second, Transport: &http.Transport{}},
	}
	// askOn sends one sidecar request; reused says whether it went on a
	// kept-alive connection.
	askOn := func(c *http.Client, reused *bool, host, target, method, uri, auth string) (int, http.Header, error) {
		req, _ := http.NewRequest("GET", "http://"+tcp+target, nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(i httptrace.GotConnInfo) { *reused = i.Reused },
		}))
		req.Host = host
		req.Header.Set("X-Original-Method", method)
		req.Header.Set("X-Original-URI", uri)
		req.Header.Set("X-Deplo-Project", "spoofed")
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, nil, err
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header, nil
	}
	ask := func(c *http.Client, host, target, method, uri, auth string) (int, http.Header, error) {
		var reused bool
		return askOn(c, &reused, host, target, method, uri, auth)
	}
	list := "/v1/workspaces/ws_acme/projects"
	for name, c := range clients {
		// The audit's host-name case and an unknown path: every request is
		// a decision about the original one.
		for _, host := range []string{"verify.internal:19194", "127.0.0.1:19194", "", "x"} {
			for _, target := range []string{"/", "/auth", "/unknown/path?x=1", "/_deplo_verify"} {
				if code, _, err := ask(c, host, target, "DELETE", "/v1/workspaces/ws_acme/projects/billing", ""); err != nil || code != 401 {
					t.Errorf("%s Host %q %s, no credential: %d %v, want 401", name, host, target, code, err)
				}
				code, h, err := ask(c, host, target, "GET", list, tok.raw)
				if err != nil || code != 200 || h.Get("X-Deplo-Subject") != "tok_read" || h.Get("X-Deplo-Project") != "" {
					t.Errorf("%s Host %q %s, read token: %d %v %v", name, host, target, code, h, err)
				}
			}
		}
		if code, _, _ := ask(c, "x", "/", "GET", "", tok.raw); code != 400 {
			t.Errorf("%s: no original request: %d, want 400", name, code)
		}
	}

	// Reload loop under load: alternate two configs while clients on both
	// transports ask (new connections and kept-alive ones).
	var stop atomic.Bool
	var wg sync.WaitGroup
	var failures sync.Map
	var answered, idleRaces atomic.Int64
	for name, c := range clients {
		for _, keepAlive := range []bool{true, false} {
			c := c
			if !keepAlive {
				c = &http.Client{Timeout: 5 * time.Second, Transport: c.Transport.(*http.Transport).Clone()}
				c.Transport.(*http.Transport).DisableKeepAlives = true
			}
			wg.Add(1)
			go func(name string) {
				defer wg.Done()
				for !stop.Load() {
					var reused bool
					code, _, err := askOn(c, &reused, "x", "/", "GET", list, tok.raw)
					switch {
					case err != nil && reused:
						// An idle kept-alive connection closed as the
						// request went out: the race every HTTP/1.1 server
						// has; proxies retry it (nginx on a cached
						// upstream connection, Go's transport).
						idleRaces.Add(1)
					case err != nil || code != 200:
						failures.Store(fmt.Sprintf("%s keepalive=%v: %d %v", name, keepAlive, code, err), true)
					}
					answered.Add(1)
				}
			}(name)
		}
	}
	for i := 0; i < 20; i++ {
		route := routeA
		if i%2 == 0 {
			route = routeB
		}
		if err := caddy.Load(sidecarJSON(t, keys, sock, tcp, route), false); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	failures.Range(func(k, _ any) bool { t.Errorf("during reloads: %s", k); return true })
	t.Logf("%d answers, %d requests on a kept-alive connection closed as they were sent", answered.Load(), idleRaces.Load())
	if answered.Load() < 100 {
		t.Errorf("only %d answers during the reloads", answered.Load())
	}

	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("the socket outlived the app: %v", err)
	}
	if _, _, err := ask(clients["tcp"], "x", "/", "GET", list, tok.raw); err == nil {
		t.Error("the TCP address answers after Stop")
	}
}
