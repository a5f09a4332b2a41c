package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
)

// Ports of the sidecar tests, beside httpPort (9480) and caddytest's admin
// (2999): nginx's listener, and the TCP listeners of the sidecar in the
// Traefik and Envoy contract tests. The sidecars that nginx and
// forward_auth ask listen on Unix sockets in the test's temp dir.
const (
	nginxPort       = 9486
	verifyTCPPort   = 9487
	verifyEnvoyPort = 9488
)

// sidecarPolicy is the deplo_auth policy of every sidecar test.
func sidecarPolicy(keysFile string) string {
	return fmt.Sprintf(`keys file %s
		throttle 6 1m
		route GET    /healthz public
		route GET    /v1/workspaces/{workspace}/projects read {
			project_tokens
		}
		route DELETE /v1/workspaces/{workspace}/projects/{project} delete
		route POST   /v1/workspaces/{workspace}/projects/{project}/deployments deploy`, keysFile)
}

// sidecarGlobals are the global options of the sidecar tests' Caddy.
var sidecarGlobals = sidecarConfig("")

// sidecarConfig is the sidecar tests' global options with a
// deplo_auth_sidecar block holding app (none when empty).
func sidecarConfig(app string) string {
	if app != "" {
		app = "\tdeplo_auth_sidecar {\n" + app + "\n}\n"
	}
	return globalBlock(app)
}

// rawTo sends a raw HTTP/1.1 request to addr and returns the answer's
// status.
func rawTo(t *testing.T, addr, request string) (status int, response string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(conn)
	response = string(b)
	if _, err := fmt.Sscanf(response, "HTTP/1.1 %d", &status); err != nil {
		t.Fatalf("no status line in %q", response)
	}
	return status, response
}

// trailerCases are client requests that declare or carry trailers posing as
// identity: the proxy refuses them (400) before anything reaches the API.
func trailerCases(tk sidecarTokens, host string) map[string]string {
	post := "POST /v1/workspaces/ws_acme/projects/weekly-report/deployments HTTP/1.1\r\nHost: " + host + "\r\n" +
		"Authorization: Bearer " + tk.project.Raw + "\r\nConnection: close\r\n"
	trailer := "5\r\nhello\r\n0\r\nX-Deplo-Workspace: ws_evil\r\nX-Deplo-Scopes: admin\r\nX-Deplo-Subject: tok_admin\r\n\r\n"
	return map[string]string{
		"chunked, declared": post + "Transfer-Encoding: chunked\r\nTrailer: X-Deplo-Scopes, X-Deplo-Workspace, X-Deplo-Subject\r\n\r\n" + trailer,
		"declared, no body": post + "Content-Length: 0\r\nTrailer: X-Deplo-Scopes\r\n\r\n",
	}
}

// checkTrailersRefused sends the trailer cases to addr: each gets 400 and
// nothing reaches the upstream.
func checkTrailersRefused(t *testing.T, e *env, tk sidecarTokens, addr string) {
	t.Helper()
	for name, req := range trailerCases(tk, addr) {
		e.up.take()
		status, resp := rawTo(t, addr, req)
		if status != 400 {
			t.Errorf("%s: status %d, want 400: %s", name, status, resp)
		}
		if got := e.up.take(); len(got) != 0 {
			t.Errorf("%s: reached the upstream: %+v %+v", name, got[0].Header, got[0].Trailer)
		}
	}
}

// sidecarTokens are the credentials of the sidecar tests.
type sidecarTokens struct{ read, deploy, project token }

func newSidecarTokens(t *testing.T) sidecarTokens {
	return sidecarTokens{
		read:    newToken(t, "tok_sc_read", "ws_acme", "", "read"),
		deploy:  newToken(t, "tok_sc_deploy", "ws_acme", "", "deploy", "read"),
		project: newToken(t, "tok_sc_project", "ws_acme", "weekly-report", "deploy", "read"),
	}
}

// spoofed are identity headers a client sends, in the spellings an upstream
// could read as the identity.
var spoofed = http.Header{
	"X-Deplo-Project":   {"weekly-report"},
	"X-Deplo-Workspace": {"ws_other"},
	"X-Deplo-Scopes":    {"admin"},
	"X-Deplo-Auth":      {"api_key"},
	"X-Deplo-Subject":   {"tok_admin"},
	"X-Deplo-Signature": {"v1 kid=k ts=1 sig=x"},
	"X-Deplo_Project":   {"weekly-report"},
}

// spoofedOther is an X-Deplo-* name that is no identity header. deplo-auth
// and the Caddy and Traefik configurations remove it; stock nginx cannot
// remove headers by prefix, so it passes there (no upstream reads it).
var spoofedOther = http.Header{"X-Deplo-Anything": {"spoofed"}}

// proxyCase is one request through a proxy that asks deplo-auth, and what
// the client and the upstream must see.
type proxyCase struct {
	name, method, path, auth string
	spoof                    bool
	status                   int
	challenge                string            // WWW-Authenticate, exactly (one value)
	identity                 map[string]string // what the upstream receives; nil: nothing may reach it
}

func proxyCases(tk sidecarTokens) []proxyCase {
	ws := "/v1/workspaces/ws_acme"
	return []proxyCase{
		{name: "allowed", method: "GET", path: ws + "/projects", auth: tk.read.Raw, spoof: true, status: 200,
			identity: map[string]string{"X-Deplo-Auth": "api_key", "X-Deplo-Subject": "tok_sc_read", "X-Deplo-Workspace": "ws_acme", "X-Deplo-Scopes": "read"}},
		{name: "project token", method: "POST", path: ws + "/projects/weekly-report/deployments", auth: tk.project.Raw, spoof: true, status: 200,
			identity: map[string]string{"X-Deplo-Auth": "api_key", "X-Deplo-Subject": "tok_sc_project", "X-Deplo-Workspace": "ws_acme", "X-Deplo-Project": "weekly-report", "X-Deplo-Scopes": "deploy read"}},
		// The CVE-2026-30851 pattern: the answer has no X-Deplo-Project; the
		// client's must not survive.
		{name: "workspace token with a spoofed project", method: "POST", path: ws + "/projects/weekly-report/deployments", auth: tk.deploy.Raw, spoof: true, status: 200,
			identity: map[string]string{"X-Deplo-Auth": "api_key", "X-Deplo-Subject": "tok_sc_deploy", "X-Deplo-Workspace": "ws_acme", "X-Deplo-Scopes": "deploy read"}},
		{name: "public with spoofed identity", method: "GET", path: "/healthz", spoof: true, status: 200, identity: map[string]string{}},
		{name: "no credential", method: "GET", path: ws + "/projects", spoof: true, status: 401, challenge: `Bearer realm="deplo"`},
		{name: "unknown token", method: "GET", path: ws + "/projects", auth: "sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", status: 401, challenge: `Bearer realm="deplo", error="invalid_token"`},
		{name: "insufficient scope", method: "DELETE", path: ws + "/projects/weekly-report", auth: tk.deploy.Raw, spoof: true, status: 403,
			challenge: `Bearer realm="deplo", error="insufficient_scope", scope="delete"`},
		{name: "other project", method: "POST", path: ws + "/projects/billing/deployments", auth: tk.project.Raw, spoof: true, status: 403,
			challenge: `Bearer realm="deplo", error="insufficient_scope"`},
		{name: "dot segments", method: "GET", path: ws + "/projects/%2e%2e/x", auth: tk.read.Raw, status: 400},
	}
}

// send sends c to base with the spoofed headers when asked; extra headers
// are added (a client naming another request, for instance).
func (c proxyCase) send(t *testing.T, base string, extra http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(c.method, base+c.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Opaque = "//" + req.URL.Host + c.path // keep %2e%2e as written
	if c.auth != "" {
		req.Header.Set("Authorization", "Bearer "+c.auth)
	}
	if c.spoof {
		for k, v := range spoofed {
			req.Header[k] = v
		}
	}
	for k, v := range extra {
		req.Header[k] = v
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// check compares the client's answer and what the upstream received.
func (c proxyCase) check(t *testing.T, resp *http.Response, body string, up []seen) {
	t.Helper()
	if resp.StatusCode != c.status {
		t.Fatalf("status %d, want %d (body %s)", resp.StatusCode, c.status, body)
	}
	if c.identity == nil {
		if len(up) != 0 {
			t.Fatalf("a refused request reached the upstream: %+v", up[0].Header)
		}
		if got := resp.Header.Values("WWW-Authenticate"); c.challenge != "" && (len(got) != 1 || got[0] != c.challenge) {
			t.Errorf("WWW-Authenticate %q, want %q once", got, c.challenge)
		}
		var b struct {
			Error string `json:"error"`
		}
		if err := json.Unmarshal([]byte(body), &b); err != nil || b.Error == "" {
			t.Errorf("refusal body %q is not the JSON error", body)
		}
		return
	}
	if len(up) != 1 {
		t.Fatalf("upstream received %d requests, want 1", len(up))
	}
	got := up[0].Header
	for name, values := range got {
		folded := strings.ToLower(strings.NewReplacer("_", "-", ".", "-").Replace(name))
		if strings.HasPrefix(folded, "x-deplo-") {
			if want, ok := c.identity[name]; !ok || len(values) != 1 || values[0] != want {
				t.Errorf("upstream received %s: %q, want %q", name, values, c.identity[name])
			}
		}
	}
	for name, want := range c.identity {
		if got.Get(name) != want {
			t.Errorf("upstream %s = %q, want %q", name, got.Get(name), want)
		}
	}
	if got.Get("Authorization") != "" {
		t.Error("the credential reached the upstream")
	}
}

// findNginx returns nginx's path, or skips saying why.
func findNginx(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"nginx", "/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Skip("nginx not found (apt-get install -y nginx-light; .ci/run installs it): the nginx sidecar test needs a real nginx")
	return ""
}

// startNginx runs nginx with its own prefix, config, port and pid file in a
// temp dir, never as a daemon, and stops it when the test ends.
func startNginx(t *testing.T, bin, dir, conf string) {
	t.Helper()
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	global := "daemon off; pid " + filepath.Join(dir, "nginx.pid") + ";"
	if out, err := exec.Command(bin, "-t", "-p", dir, "-c", confPath, "-g", global).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", confPath, "-g", global)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGQUIT) // graceful: workers finish, then the master exits
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(dir, "error.log")); err == nil {
				t.Logf("nginx error.log:\n%s", b)
			}
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", nginxPort), time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx did not listen on %d: %v", nginxPort, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestNginxSidecar: a real nginx with the auth_request configuration of
// examples/sidecar/nginx (its three include files, as shipped), the
// deplo_auth_sidecar app on a Unix socket (mode 0660), and a real upstream.
func TestNginxSidecar(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Caddy and nginx; skipped with -short")
	}
	bin := findNginx(t)
	tk := newSidecarTokens(t)
	e := &env{t: t, up: newRecorder(t), keysFile: filepath.Join(t.TempDir(), "keys.json")}
	writeKeys(t, e.keysFile, tk.read, tk.deploy, tk.project)
	dir, err := os.MkdirTemp("", "deplo-nginx-") // short: a socket path has ~100 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, sub := range []string{"logs", "tmp"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(dir, "verify.sock")
	// nginx reaches deplo-auth on the Unix socket: its own hop is in no
	// X-Forwarded-For, and the entry it appends (its client, on loopback
	// here) is the client unless trusted_proxies holds it.
	app := func(proxies string) string {
		return fmt.Sprintf("listen unix/%s|0660\nfrom original\ntrusted_proxies %s\n%s", sock, proxies, sidecarPolicy(e.keysFile))
	}
	e.tester = caddytest.NewTester(t)
	load(t, e.tester, sidecarConfig(app("192.0.2.0/24")))
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket %v %v, want mode 0660", fi, err)
	}

	examples, err := filepath.Abs("../examples/sidecar/nginx")
	if err != nil {
		t.Fatal(err)
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // the workers must reach the socket in this 0700 temp dir
	}
	startNginx(t, bin, dir, fmt.Sprintf(`%[1]s
worker_processes 1;
error_log %[2]s/error.log info;
events { worker_connections 64; }
http {
	access_log off;
	client_body_temp_path %[2]s/tmp/body;
	proxy_temp_path %[2]s/tmp/proxy;
	fastcgi_temp_path %[2]s/tmp/fastcgi;
	uwsgi_temp_path %[2]s/tmp/uwsgi;
	scgi_temp_path %[2]s/tmp/scgi;
	upstream deplo_verify {
		server unix:%[3]s;
		keepalive 8;
	}
	upstream deplo_api {
		server %[4]s;
	}
	include %[5]s/http.conf;
	server {
		listen 127.0.0.1:%[6]d;
		include %[5]s/server.conf;
		location / {
			include %[5]s/location.conf;
			proxy_pass http://deplo_api;
		}
	}
}
`, user, dir, sock, e.up.addr(), examples, nginxPort))

	base := fmt.Sprintf("http://127.0.0.1:%d", nginxPort)
	for _, c := range proxyCases(tk) {
		t.Run(c.name, func(t *testing.T) {
			e.up.take()
			resp, body := c.send(t, base, nil)
			c.check(t, resp, body, e.up.take())
		})
	}

	// A client naming another request in the headers a proxy uses changes
	// nothing: nginx sets (or clears) them all.
	t.Run("client names another request", func(t *testing.T) {
		e.up.take()
		c := proxyCases(tk)[6] // insufficient scope
		resp, body := c.send(t, base, http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/healthz"},
			"X-Original-Method": {"GET"}, "X-Original-Uri": {"/healthz"}, "X-Original-Url": {"http://x/healthz"}})
		c.check(t, resp, body, e.up.take())
	})

	// The brute-force guard counts the client nginx saw, and nginx passes
	// the 429 with its Retry-After; a client's own X-Real-IP or
	// X-Forwarded-For changes nothing.
	t.Run("throttled", func(t *testing.T) {
		e.up.take()
		bad := proxyCase{method: "GET", path: "/v1/workspaces/ws_acme/projects", auth: "sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}
		var resp *http.Response
		var body string
		for i := 0; i < 8; i++ {
			spoof := fmt.Sprintf("198.51.100.%d", i)
			if resp, body = bad.send(t, base, http.Header{"X-Real-Ip": {spoof}, "X-Forwarded-For": {spoof}}); resp.StatusCode == 429 {
				break
			}
		}
		if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "too_many_requests") {
			t.Fatalf("after 8 failures: %d, Retry-After %q, body %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
		if up := e.up.take(); len(up) != 0 {
			t.Errorf("throttled requests reached the upstream")
		}
		// Throttled, not locked out: a token the caches hold as valid (the
		// "allowed" case used it) still passes.
		good := proxyCases(tk)[0]
		resp, body = good.send(t, base, nil)
		good.check(t, resp, body, e.up.take())
	})

	t.Run("trailers", func(t *testing.T) { checkTrailersRefused(t, e, tk, fmt.Sprintf("127.0.0.1:%d", nginxPort)) })

	// Behind a load balancer (trusted_proxies holds it): one client's
	// failures throttle that client, never another behind the same
	// balancer address. A config reload, too.
	t.Run("load balancer", func(t *testing.T) {
		load(t, e.tester, sidecarConfig(app("127.0.0.0/8")))
		e.up.take()
		attacker := http.Header{"X-Forwarded-For": {"203.0.113.66"}}
		victim := http.Header{"X-Forwarded-For": {"203.0.113.77"}}
		bad := proxyCase{method: "GET", path: "/v1/workspaces/ws_acme/projects", auth: "sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}
		status := 0
		for i := 0; i < 10 && status != 429; i++ {
			resp, _ := bad.send(t, base, attacker)
			status = resp.StatusCode
		}
		if status != 429 {
			t.Fatalf("attacker after 10 failures: %d, want 429", status)
		}
		good := proxyCases(tk)[0]
		resp, body := good.send(t, base, victim)
		good.check(t, resp, body, e.up.take())
		if resp, _ := bad.send(t, base, attacker); resp.StatusCode != 429 {
			t.Errorf("attacker again: %d, want 429", resp.StatusCode)
		}
	})

	// deplo-auth gone: refused with 503, never passed.
	t.Run("sidecar down", func(t *testing.T) {
		load(t, e.tester, sidecarGlobals)
		e.up.take()
		c := proxyCases(tk)[0]
		resp, body := c.send(t, base, nil)
		if resp.StatusCode != 503 || len(e.up.take()) != 0 {
			t.Fatalf("with deplo-auth down: %d %s", resp.StatusCode, body)
		}
	})
}

// TestCaddyForwardAuthSidecar: Caddy's forward_auth, configured as
// examples/sidecar/forward_auth.caddyfile (imported as shipped), asks the
// deplo_auth_sidecar app of the same Caddy on a Unix socket.
func TestCaddyForwardAuthSidecar(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Caddy; skipped with -short")
	}
	tk := newSidecarTokens(t)
	e := &env{t: t, up: newRecorder(t), keysFile: filepath.Join(t.TempDir(), "keys.json")}
	writeKeys(t, e.keysFile, tk.read, tk.deploy, tk.project)
	dir, err := os.MkdirTemp("", "deplo-fa-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "verify.sock")
	example, err := filepath.Abs("../examples/sidecar/forward_auth.caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("DEPLO_API_SITE", base)
	t.Setenv("DEPLO_VERIFY_UPSTREAM", "unix/"+sock)
	t.Setenv("DEPLO_API_UPSTREAM", e.up.addr())
	config := sidecarConfig(fmt.Sprintf("listen unix/%s|0660\nfrom forwarded\n%s", sock, sidecarPolicy(e.keysFile))) +
		fmt.Sprintf("\nimport %s\n", example)
	e.tester = caddytest.NewTester(t)
	load(t, e.tester, config)
	for _, c := range proxyCases(tk) {
		t.Run(c.name, func(t *testing.T) {
			e.up.take()
			resp, body := c.send(t, base, spoofedOther)
			c.check(t, resp, body, e.up.take())
			if c.identity == nil && c.status != 400 {
				// forward_auth passes deplo-auth's own refusal: its JSON body.
				if !strings.HasPrefix(body, `{"error":"`) || !strings.Contains(body, `"error_description":"`) {
					t.Errorf("body %s", body)
				}
			}
		})
	}
	t.Run("client names another request", func(t *testing.T) {
		e.up.take()
		c := proxyCases(tk)[6]
		resp, body := c.send(t, base, http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/healthz"},
			"X-Original-Method": {"GET"}, "X-Original-Uri": {"/healthz"}})
		c.check(t, resp, body, e.up.take())
	})
	t.Run("trailers", func(t *testing.T) { checkTrailersRefused(t, e, tk, strings.TrimPrefix(base, "http://")) })
	// forward_auth passes a client's X-Real-IP along: it must not give the
	// client a fresh budget each time.
	t.Run("throttled despite a client X-Real-IP", func(t *testing.T) {
		bad := proxyCase{method: "GET", path: "/v1/workspaces/ws_acme/projects", auth: "sk_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}
		status := 0
		for i := 0; i < 8 && status != 429; i++ {
			resp, _ := bad.send(t, base, http.Header{"X-Real-Ip": {fmt.Sprintf("198.51.100.%d", i)}})
			status = resp.StatusCode
		}
		if status != 429 {
			t.Fatalf("after 8 failures with changing X-Real-IP: %d, want 429", status)
		}
		if up := e.up.take(); len(up) != 0 {
			t.Errorf("refused requests reached the upstream")
		}
	})
}

// traefikIdentityRegex is authResponseHeadersRegex of
// examples/sidecar/traefik/dynamic.yml: every spelling of an X-Deplo- name.
var traefikIdentityRegex = regexp.MustCompile(`(?i)^x[-_.]deplo[-_.]`)

// verifyCall sends one verify request over TCP to the verify site on port,
// as a proxy would, and returns the answer.
func verifyCall(t *testing.T, port int, method, target string, h http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, fmt.Sprintf("http://127.0.0.1:%d%s", port, target), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = h
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// TestTraefikAndEnvoyContract: the verify requests Traefik's ForwardAuth
// and Envoy's ext_authz HTTP service send, to real verify sites on
// loopback, and what each proxy would do with the answer.
//
// Traefik (pkg/middlewares/auth/forward.go, v3): a GET to the address
// (unless preserveRequestMethod) carrying every client header (less
// hop-by-hop ones) plus X-Forwarded-For (the client appended),
// X-Forwarded-Method, -Proto, -Host, -Uri (req.URL.RequestURI()) and -Port.
// With trustForwardHeader false it first drops the client's X-Forwarded-*;
// with true it keeps a client's X-Forwarded-Method/-Uri — never set it. On
// 2xx it deletes each authResponseHeaders name from the request and copies
// the answer's; with authResponseHeadersRegex it deletes every request
// header the regex matches and copies every answer header it matches. On
// non-2xx it answers the client with the verify answer's status, headers
// and body.
//
// Envoy (source/extensions/filters/common/ext_authz/ext_authz_http_impl.cc):
// the original method, :path = path_prefix + the original path and query,
// Host, Authorization and the allowed_headers, Content-Length 0. On 200 it
// sets each answer header allowed_upstream_headers matches on the upstream
// request (overwriting); it does not remove client headers the answer
// lacks, so the client's X-Deplo-* must be removed before ext_authz runs
// (examples/sidecar/envoy.yaml does, in Lua). A 5xx answer becomes 403
// unless status_on_error says otherwise; other denials reach the client
// with the answer's status, headers and body.
func TestTraefikAndEnvoyContract(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Caddy; skipped with -short")
	}
	tk := newSidecarTokens(t)
	e := &env{t: t, up: newRecorder(t), keysFile: filepath.Join(t.TempDir(), "keys.json")}
	writeKeys(t, e.keysFile, tk.read, tk.deploy, tk.project)
	// One sidecar per proxy kind, in turn (each Caddy has one sidecar app).
	configs := map[string]string{
		"traefik": sidecarConfig(fmt.Sprintf("listen 127.0.0.1:%d\nfrom forwarded\ntrusted 127.0.0.1/32\n%s", verifyTCPPort, sidecarPolicy(e.keysFile))),
		"envoy":   sidecarConfig(fmt.Sprintf("listen 127.0.0.1:%d\nfrom envoy\npath_prefix /deplo-verify\ntrusted 127.0.0.1/32\n%s", verifyEnvoyPort, sidecarPolicy(e.keysFile))),
	}
	e.tester = caddytest.NewTester(t)

	// traefik is the ForwardAuth request for c (trustForwardHeader false)
	// and, for an allowed answer, the upstream request's headers after
	// examples/sidecar/traefik: authResponseHeadersRegex and the headers
	// middleware that removes Authorization.
	traefik := func(c proxyCase) (*http.Response, string, http.Header) {
		client := http.Header{"User-Agent": {"deplo-cli/1.4"}, "Accept": {"application/json"}}
		if c.auth != "" {
			client.Set("Authorization", "Bearer "+c.auth)
		}
		if c.spoof {
			for k, v := range spoofed {
				client[k] = v
			}
			client["X-Deplo-Anything"] = spoofedOther["X-Deplo-Anything"]
		}
		h := client.Clone()
		h.Set("X-Forwarded-For", "203.0.113.50")
		h.Set("X-Forwarded-Method", c.method)
		h.Set("X-Forwarded-Proto", "https")
		h.Set("X-Forwarded-Host", "api.deplo.sh")
		h.Set("X-Forwarded-Uri", c.path)
		h.Set("X-Forwarded-Port", "443")
		resp, body := verifyCall(t, verifyTCPPort, "GET", "/", h)
		upstream := client.Clone()
		for name := range upstream {
			if traefikIdentityRegex.MatchString(name) {
				delete(upstream, name)
			}
		}
		for name, v := range resp.Header {
			if traefikIdentityRegex.MatchString(name) {
				upstream[name] = v
			}
		}
		delete(upstream, "Authorization") // the example's headers middleware
		return resp, body, upstream
	}
	// envoy is the ext_authz check request for c with allowed_headers
	// empty, and the upstream request after allowed_upstream_headers
	// (prefix x-deplo-) and the Lua filter that removed the client's.
	envoy := func(c proxyCase) (*http.Response, string, http.Header) {
		h := http.Header{"Content-Length": {"0"}}
		if c.auth != "" {
			h.Set("Authorization", "Bearer "+c.auth)
		}
		resp, body := verifyCall(t, verifyEnvoyPort, c.method, "/deplo-verify"+c.path, h)
		upstream := http.Header{}
		for name, v := range resp.Header {
			if strings.HasPrefix(strings.ToLower(name), "x-deplo-") {
				upstream[name] = v
			}
		}
		return resp, body, upstream
	}
	for proxy, ask := range map[string]func(proxyCase) (*http.Response, string, http.Header){"traefik": traefik, "envoy": envoy} {
		load(t, e.tester, configs[proxy])
		for _, c := range proxyCases(tk) {
			t.Run(proxy+"/"+c.name, func(t *testing.T) {
				resp, body, upstream := ask(c)
				var up []seen
				if resp.StatusCode == 200 {
					up = []seen{{Header: upstream}}
				}
				c.check(t, resp, body, up)
				if resp.Header.Get("Cache-Control") != "no-store" {
					t.Errorf("Cache-Control %q", resp.Header.Get("Cache-Control"))
				}
			})
		}
	}

	// Half a request, or none, is never allowed.
	load(t, e.tester, configs["traefik"])
	for name, h := range map[string]http.Header{
		"no uri":    {"X-Forwarded-Method": {"GET"}},
		"no method": {"X-Forwarded-Uri": {"/healthz"}},
		"nothing":   {},
	} {
		if resp, _ := verifyCall(t, verifyTCPPort, "GET", "/healthz", h); resp.StatusCode != 400 {
			t.Errorf("%s: %d, want 400", name, resp.StatusCode)
		}
	}
	load(t, e.tester, configs["envoy"])
	if resp, _ := verifyCall(t, verifyEnvoyPort, "GET", "/healthz", http.Header{}); resp.StatusCode != 400 {
		t.Errorf("envoy path without the prefix: %d, want 400", resp.StatusCode)
	}
}
