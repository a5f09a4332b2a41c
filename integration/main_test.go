// Package integration runs deplo_auth end to end: a real Caddy (in-process,
// through caddytest and Caddy's admin API) in front of a real upstream HTTP
// server that records every request that reaches it.
package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/deplo-sh/deplo-auth/apikey"
	_ "github.com/deplo-sh/deplo-auth/caddymodule"
	_ "github.com/deplo-sh/deplo-auth/cli"
)

// jwtSecret signs the dashboard session tokens of the tests; Caddy reads it
// from the environment at provision ({env.…}), never from the config text.
const jwtSecret = "integration-test-secret-0123456789abcdef"

// Ports of the in-process Caddy; caddytest's admin endpoint is :2999.
const (
	httpPort = 9480
	base     = "http://localhost:9480"
)

// recorder is an upstream that remembers what reached it.
type recorder struct {
	mu   sync.Mutex
	reqs []seen
	srv  *httptest.Server
}

type seen struct {
	Method, Path, RawPath, Query string
	Header, Trailer              http.Header
	Body                         string
}

func newRecorder(t *testing.T) *recorder {
	rec := &recorder{}
	rec.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body) // trailers arrive after the body
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, seen{r.Method, r.URL.Path, r.URL.RawPath, r.URL.RawQuery, r.Header.Clone(), r.Trailer.Clone(), string(body)})
		rec.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{
			"subject":   r.Header.Get("X-Deplo-Subject"),
			"workspace": r.Header.Get("X-Deplo-Workspace"),
		})
	}))
	t.Cleanup(rec.srv.Close)
	return rec
}

func (rec *recorder) take() []seen {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	out := rec.reqs
	rec.reqs = nil
	return out
}

func (rec *recorder) addr() string { return strings.TrimPrefix(rec.srv.URL, "http://") }

// token is a token written to the test key file.
type token struct {
	Raw, ID, Workspace, Project string
	Scopes                      []string
	RevokedAt                   *time.Time
}

func newToken(t *testing.T, id, workspace, project string, scopes ...string) token {
	raw, err := apikey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return token{Raw: raw, ID: id, Workspace: workspace, Project: project, Scopes: scopes}
}

func writeKeys(t *testing.T, path string, tokens ...token) {
	t.Helper()
	type entry struct {
		ID        string     `json:"id"`
		Hash      string     `json:"hash"`
		Workspace string     `json:"workspace"`
		Project   *string    `json:"project,omitempty"`
		Scopes    []string   `json:"scopes"`
		CreatedAt time.Time  `json:"created_at"`
		RevokedAt *time.Time `json:"revoked_at"`
	}
	doc := struct {
		Tokens []entry `json:"tokens"`
	}{Tokens: []entry{}}
	for _, tk := range tokens {
		e := entry{ID: tk.ID, Hash: apikey.Sum(tk.Raw).String(), Workspace: tk.Workspace, Scopes: tk.Scopes,
			CreatedAt: time.Now().UTC().Add(-time.Hour).Truncate(time.Second), RevokedAt: tk.RevokedAt}
		if tk.Project != "" {
			p := tk.Project
			e.Project = &p
		}
		doc.Tokens = append(doc.Tokens, e)
	}
	b, _ := json.MarshalIndent(doc, "", "  ")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// caddyfile is the deplo API configuration under test; extra lines go into
// the deplo_auth block. The brute-force budget is raised so that the many
// refusals of one test from 127.0.0.1 stay below it; TestThrottle lowers it.
func caddyfile(keysFile, upstream, logDir string, extra ...string) string {
	guard := "throttle 1000 1m"
	if len(extra) > 0 {
		guard = strings.Join(extra, "\n\t\t")
	}
	return globalOptions(logDir) + fmt.Sprintf(`
http://localhost:%d {
	deplo_auth {
		keys file %s
		%s
		jwt {
			issuer https://dashboard.deplo.sh
			alg HS256
			secret {env.DEPLO_AUTH_IT_JWT_SECRET}
			max_lifetime 15m
		}
		route GET    /v1/workspaces/{workspace}/members admin {
			via jwt
		}
		route POST   /v1/workspaces/{workspace}/projects/{project}/deploy-hooks deploy {
			via api_key
		}
		route GET    /healthz public
		route GET    /v1/me authenticated
		route GET    /v1/workspaces/{workspace}/projects read {
			project_tokens
		}
		route GET    /v1/workspaces/{workspace}/projects/{project} read
		route DELETE /v1/workspaces/{workspace}/projects/{project} delete
		route POST   /v1/workspaces/{workspace}/projects/{project}/deployments deploy
		route GET    /v1/workspaces/{workspace}/projects/{project}/deployments read
		route POST   /v1/workspaces/{workspace}/projects/{project}/promote deploy delete
		route *      /v1/workspaces/{workspace}/tokens/ admin
		route POST   /v1/workspaces/{workspace}/tokens admin
	}
	deplo_auth_tokens {
		base /v1/workspaces/{workspace}/tokens
	}
	log {
		output file %s/access.log
		format json
	}
	reverse_proxy %s
	handle_errors 400 401 403 429 503 {
		header Content-Type application/json
		respond `+"`"+`{"error":"{http.auth.error}","error_description":"{http.auth.error_description}"}`+"`"+`
	}
}
`, httpPort, keysFile, guard, logDir, upstream)
}

// globalBlock is the global options block of the test Caddy: caddytest's
// admin endpoint and the test ports, then extra (whole lines, indented).
func globalBlock(extra string) string {
	return fmt.Sprintf("{\n\tskip_install_trust\n\tadmin localhost:2999\n\thttp_port %d\n\thttps_port 9443\n\tgrace_period 1ns\n%s}\n", httpPort, extra)
}

// globalOptions is globalBlock with every logger at DEBUG into
// logDir/caddy.log.
func globalOptions(logDir string) string {
	return globalBlock(fmt.Sprintf("\tlog {\n\t\toutput file %s/caddy.log\n\t\tformat json\n\t\tlevel DEBUG\n\t}\n", logDir))
}

// env is one running Caddy with its upstream and key file.
type env struct {
	t        *testing.T
	tester   *caddytest.Tester
	up       *recorder
	keysFile string
	logDir   string // caddy.log (every logger, DEBUG) and access.log
}

func start(t *testing.T, tokens ...token) *env {
	t.Helper()
	return startWith(t, nil, tokens...)
}

// startWith starts Caddy with extra lines in the deplo_auth block.
func startWith(t *testing.T, extra []string, tokens ...token) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("integration tests start Caddy; skipped with -short")
	}
	e := &env{t: t, up: newRecorder(t), keysFile: filepath.Join(t.TempDir(), "keys.json"), logDir: t.TempDir()}
	writeKeys(t, e.keysFile, tokens...)
	t.Setenv("DEPLO_AUTH_IT_JWT_SECRET", jwtSecret)
	e.tester = caddytest.NewTester(t)
	load(t, e.tester, caddyfile(e.keysFile, e.up.addr(), e.logDir, extra...))
	return e
}

// do sends method path with the Authorization values given (nil: none).
func (e *env) do(method, path string, auth ...string) (*http.Response, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, base+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, a := range auth {
		req.Header.Add("Authorization", a)
	}
	return e.send(req)
}

func (e *env) send(req *http.Request) (*http.Response, string) {
	e.t.Helper()
	resp, err := e.tester.Client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// raw sends a hand-written HTTP/1.1 request, for what net/http's client
// would not send (odd header spellings, raw paths).
func raw(t *testing.T, request string) (status int, response string) {
	t.Helper()
	return rawTo(t, fmt.Sprintf("127.0.0.1:%d", httpPort), request)
}

// runCommand runs `caddy deplo-auth <args>` in-process.
func runCommand(t *testing.T, stdin string, args ...string) (stdout string, err error) {
	t.Helper()
	stdout, _, err = runCommandErr(t, stdin, args...)
	return stdout, err
}

// runCommandErr is runCommand that also returns what the command wrote to
// stderr.
func runCommandErr(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	c, ok := caddycmd.Commands()["deplo-auth"]
	if !ok {
		t.Fatal("deplo-auth command not registered")
	}
	cmd := &cobra.Command{Use: c.Name}
	c.CobraFunc(cmd)
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetArgs(args)
	err = cmd.Execute()
	return out.String(), errOut.String(), err
}

func readFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}
