// Command revocation measures, end to end, how long a revocation takes to
// reach every instance: two Caddy processes built from this repository share
// one PostgreSQL key store (each through a TCP proxy of its own, so that the
// store can be cut off), and the time from a revocation's commit until both
// refuse the token is measured in two scenarios:
//
//   - bulk: one UPDATE revokes -tokens tokens (a workspace revoked, a
//     backfill), then the CLI revokes one more token, which both instances
//     had cached;
//   - outage: the store is cut off for -outage, comes back, and a token both
//     had cached is revoked at once; -cycles times.
//
// Usage (from the repository root; loopback only, bounded, stops by itself):
//
//	go build -o /tmp/caddy ./cmd/xcaddy-build
//	go run ./bench/revocation -caddy /tmp/caddy -dsn 'postgres://postgres@127.0.0.1:5432/test?sslmode=disable'
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/deplo-sh/deplo-auth/apikey"
	"github.com/deplo-sh/deplo-auth/internal/tcpproxy"
	"github.com/deplo-sh/deplo-auth/keystore/pgstore"
)

func main() {
	caddyBin := flag.String("caddy", "", "Caddy binary built from this repository (go build -o /tmp/caddy ./cmd/xcaddy-build)")
	dsn := flag.String("dsn", os.Getenv("DEPLO_AUTH_TEST_POSTGRES"), "PostgreSQL DSN (default $DEPLO_AUTH_TEST_POSTGRES)")
	bulk := flag.Int("tokens", 20000, "tokens revoked by the bulk UPDATE")
	cycles := flag.Int("cycles", 15, "outage cycles")
	outage := flag.Duration("outage", 3*time.Second, "how long each outage lasts")
	flag.Parse()
	if *caddyBin == "" || *dsn == "" {
		fmt.Fprintln(os.Stderr, "revocation: -caddy and -dsn are required")
		os.Exit(2)
	}
	if err := run(*caddyBin, *dsn, *bulk, *cycles, *outage); err != nil {
		fmt.Fprintln(os.Stderr, "revocation:", err)
		os.Exit(1)
	}
}

func run(caddyBin, dsn string, bulk, cycles int, outage time.Duration) error {
	ctx := context.Background()
	db, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	schema := fmt.Sprintf("deplo_revbench_%d", os.Getpid())
	if _, err := db.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		return err
	}
	defer db.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
	schemaDSN, err := withSearchPath(dsn, schema)
	if err != nil {
		return err
	}
	sdb, err := pgxpool.New(ctx, schemaDSN)
	if err != nil {
		return err
	}
	defer sdb.Close()
	if _, err := pgstore.Migrate(ctx, sdb); err != nil {
		return err
	}

	dir, err := os.MkdirTemp("", "deplo-revbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	pgAddr, err := pgHostPort(dsn)
	if err != nil {
		return err
	}
	var instances []*instance
	for i := 0; i < 2; i++ {
		in, err := startInstance(caddyBin, dir, i, schemaDSN, pgAddr)
		if err != nil {
			return err
		}
		defer in.stop()
		instances = append(instances, in)
	}

	fmt.Printf("two Caddy instances on one PostgreSQL (%s), each through a TCP proxy\n\n", pgAddr)

	// Bulk: revoke many tokens in one statement, then one more with the CLI.
	if err := insertTokens(ctx, sdb, "bulk", bulk); err != nil {
		return err
	}
	target, targetID, err := newWarmToken(ctx, sdb, instances, "bulk-target")
	if err != nil {
		return err
	}
	start := time.Now()
	if _, err := sdb.Exec(ctx, "UPDATE deplo_tokens SET revoked_at = now() WHERE name = 'bulk'"); err != nil {
		return err
	}
	bulkTook := time.Since(start)
	cli := exec.Command(caddyBin, "deplo-auth", "token", "revoke", targetID)
	cli.Env = append(os.Environ(), "DEPLO_AUTH_POSTGRES="+schemaDSN, "HOME="+dir)
	if out, err := cli.CombinedOutput(); err != nil {
		return fmt.Errorf("CLI revoke: %v: %s", err, out)
	}
	took, err := untilRefused(instances, target, 30*time.Second)
	if err != nil {
		return err
	}
	fmt.Printf("bulk: UPDATE of %d tokens took %v; the CLI revocation after it was in force on both instances %v after the CLI returned\n\n",
		bulk, bulkTook.Round(time.Millisecond), took.Round(time.Millisecond))

	// Outages: cut both proxies, restore them, revoke at once.
	var results []time.Duration
	for c := 0; c < cycles; c++ {
		tok, id, err := newWarmToken(ctx, sdb, instances, "outage-"+strconv.Itoa(c))
		if err != nil {
			return err
		}
		for _, in := range instances {
			in.proxy.Cut()
		}
		time.Sleep(outage)
		for _, in := range instances {
			if err := in.proxy.Restore(); err != nil {
				return err
			}
		}
		if _, err := sdb.Exec(ctx, "UPDATE deplo_tokens SET revoked_at = now() WHERE id = $1", id); err != nil {
			return err
		}
		took, err := untilRefused(instances, tok, 30*time.Second)
		if err != nil {
			return err
		}
		results = append(results, took)
		fmt.Printf("outage %2d: revocation in force on both instances after %v\n", c+1, took.Round(time.Millisecond))
	}
	if len(results) > 0 {
		slices.Sort(results)
		over := 0
		for _, d := range results {
			if d > time.Second {
				over++
			}
		}
		fmt.Printf("\noutages: %d × %v; revocation right after the store came back: min %v, median %v, max %v; over 1 s: %d of %d\n",
			cycles, outage, results[0].Round(time.Millisecond), results[len(results)/2].Round(time.Millisecond),
			results[len(results)-1].Round(time.Millisecond), over, len(results))
	}
	return nil
}

func withSearchPath(dsn, schema string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", fmt.Errorf("dsn: %w", err)
	}
	q := u.Query()
	q.Set("options", "-c search_path="+schema)
	u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20") // libpq reads "+" as itself
	return u.String(), nil
}

func pgHostPort(dsn string) (string, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))), nil
}

// insertTokens inserts n tokens named name (never used: only revoked).
func insertTokens(ctx context.Context, db *pgxpool.Pool, name string, n int) error {
	rows := make([][]any, n)
	for i := range rows {
		raw, err := apikey.Generate()
		if err != nil {
			return err
		}
		sum := apikey.Sum(raw)
		rows[i] = []any{sum[:], fmt.Sprintf("tok_%s_%d", name, i), name, "ws_bench", []string{"read"}}
	}
	_, err := db.CopyFrom(ctx, pgx.Identifier{"deplo_tokens"}, []string{"hash", "id", "name", "workspace", "scopes"}, pgx.CopyFromRows(rows))
	return err
}

// newWarmToken creates a token and makes sure both instances allow it (so
// it is cached on both).
func newWarmToken(ctx context.Context, db *pgxpool.Pool, instances []*instance, name string) (raw, id string, err error) {
	raw, err = apikey.Generate()
	if err != nil {
		return "", "", err
	}
	sum := apikey.Sum(raw)
	id = "tok_" + name
	if _, err := db.Exec(ctx, "INSERT INTO deplo_tokens (hash, id, name, workspace, scopes) VALUES ($1, $2, $3, 'ws_bench', '{read}')",
		sum[:], id, name); err != nil {
		return "", "", err
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, in := range instances {
		for {
			status, err := in.get(raw)
			if err == nil && status == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				return "", "", fmt.Errorf("instance %d never allowed a new token (last status %d, %v)", in.n, status, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return raw, id, nil
}

// untilRefused polls both instances until each refuses tok, and returns how
// long the slower one took.
func untilRefused(instances []*instance, tok string, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(instances))
	for i, in := range instances {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < limit {
				if status, err := in.get(tok); err == nil && status == http.StatusUnauthorized {
					return
				}
				time.Sleep(2 * time.Millisecond)
			}
			errs[i] = fmt.Errorf("instance %d still allowed the token after %v", in.n, limit)
		}()
	}
	wg.Wait()
	return time.Since(start), errors.Join(errs...)
}

type instance struct {
	n      int
	cmd    *exec.Cmd
	base   string
	proxy  *tcpproxy.Proxy
	client *http.Client
}

func startInstance(caddyBin, dir string, n int, dsn, pgAddr string) (*instance, error) {
	proxy, err := tcpproxy.New(pgAddr)
	if err != nil {
		return nil, err
	}
	u, _ := url.Parse(dsn)
	u.Host = proxy.Addr
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`{
	admin off
	persist_config off
	skip_install_trust
}

http://127.0.0.1:%d {
	deplo_auth {
		keys postgres {env.REVBENCH_DSN} {
			query_timeout 500ms
		}
		throttle off
		route GET /v1/workspaces/{workspace}/projects read
	}
	respond 200
}
`, port)
	path := filepath.Join(dir, fmt.Sprintf("Caddyfile.%d", n))
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(caddyBin, "run", "--config", path, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "REVBENCH_DSN="+u.String(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	logf, err := os.Create(filepath.Join(dir, fmt.Sprintf("caddy.%d.log", n)))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	in := &instance{n: n, cmd: cmd, base: fmt.Sprintf("http://127.0.0.1:%d", port), proxy: proxy,
		client: &http.Client{Timeout: 5 * time.Second}}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := in.get(""); err == nil {
			return in, nil
		}
		if time.Now().After(deadline) {
			in.stop()
			log, _ := os.ReadFile(logf.Name())
			return nil, fmt.Errorf("instance %d did not start: %s", n, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (in *instance) get(tok string) (int, error) {
	req, _ := http.NewRequest("GET", in.base+"/v1/workspaces/ws_bench/projects", nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := in.client.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func (in *instance) stop() {
	if in.cmd.Process != nil {
		in.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { in.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			in.cmd.Process.Kill()
		}
	}
	in.proxy.Cut()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
