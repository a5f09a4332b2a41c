// Command fleet measures the PostgreSQL key store at fleet scale: N gateway
// instances in one process, each built as a Caddy instance builds its store
// and token cache (pgstore.Open with the options caddymodule passes, a
// tokencache with the default settings watching the store), against a
// THROWAWAY PostgreSQL cluster it starts itself (initdb in a temporary
// directory, its own port, max_connections 1200) and a pgbouncer of its own
// in transaction mode in front of it: lookups and writes through pgbouncer,
// each instance's listener on a direct connection (listen_dsn).
//
// For each N it reports: a single revocation (the CLI's, through
// pgbouncer) until every instance refuses the token (p50 and max over the
// instances of every run); a 5,000-token bulk revocation (one UPDATE) until
// every instance refuses the token of the bulk it had cached; server
// connections at rest; PostgreSQL CPU (all its processes, /proc) at rest
// and per revocation; and this process's CPU from the bulk UPDATE until
// every instance has applied all of it (the instances' share, with the
// refusal checks and what the fleet does at rest meanwhile), and that
// divided by N.
//
// Usage (from the repository root, as root or as a user that can run
// initdb; loopback only; everything it starts is stopped at exit):
//
//	go run ./bench/fleet -n 10,50,200,500
package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/deplo-sh/deplo-auth/keystore"
	"github.com/deplo-sh/deplo-auth/keystore/pgstore"
	"github.com/deplo-sh/deplo-auth/tokencache"
)

func main() {
	sizes := flag.String("n", "10,50,200,500", "fleet sizes, comma-separated")
	runs := flag.Int("runs", 5, "single revocations per fleet size")
	bulk := flag.Int("bulk", 5000, "tokens revoked by the bulk UPDATE")
	pgBin := flag.String("pg-bin", "/usr/lib/postgresql/15/bin", "directory of initdb, pg_ctl, postgres")
	bouncerBin := flag.String("pgbouncer", "/usr/sbin/pgbouncer", "pgbouncer binary")
	flag.IntVar(&poolSize, "pool", 5, "pgbouncer default_pool_size")
	cpuProfile := flag.String("cpuprofile", "", "write this process's CPU profile to this file")
	flag.BoolVar(&rowOnly, "row-only", false, "print the table rows only (each fleet size runs so, in a process and cluster of its own)")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "fleet:", err)
			os.Exit(2)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "fleet:", err)
			os.Exit(2)
		}
		defer pprof.StopCPUProfile()
	}
	var ns []int
	for _, f := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			fmt.Fprintln(os.Stderr, "fleet: -n: want positive integers")
			os.Exit(2)
		}
		ns = append(ns, n)
	}
	if len(ns) > 1 {
		// Each size in a process and a cluster of its own: what one fleet
		// leaves behind (closed caches releasing their memory, dead rows
		// to vacuum) is not measured with the next.
		printHeader(*runs, *bulk)
		for _, n := range ns {
			args := []string{"-n", strconv.Itoa(n), "-row-only"}
			flag.Visit(func(f *flag.Flag) {
				if f.Name != "n" && f.Name != "row-only" && f.Name != "cpuprofile" {
					args = append(args, "-"+f.Name+"="+f.Value.String())
				}
			})
			cmd := exec.Command(os.Args[0], args...)
			cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
			if err := cmd.Run(); err != nil {
				fmt.Fprintf(os.Stderr, "fleet: N=%d: %v\n", n, err)
				os.Exit(1)
			}
		}
		return
	}
	if err := run(ns, *runs, *bulk, *pgBin, *bouncerBin); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "fleet:", err)
		os.Exit(1)
	}
}

// poolSize is pgbouncer's default_pool_size (-pool).
var poolSize = 5

// rowOnly: print the table rows only (-row-only).
var rowOnly bool

func printHeader(runs, bulk int) {
	fmt.Printf("throwaway PostgreSQL and pgbouncer (transaction mode, pool %d) for each N; %d single revocations per N, bulk %d\n\n",
		poolSize, runs, bulk)
	fmt.Println("| N | single revocation p50 / max | bulk (5,000) p50 / max | server conns at rest (listeners + pgbouncer) | PG CPU at rest | PG CPU per single revocation | PG CPU per bulk revocation | instances' CPU per bulk revocation (per instance) |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
}

// cluster is the throwaway PostgreSQL and its pgbouncer.
type cluster struct {
	dir, pgBin      string
	pgPort, pgbPort int
	asPostgres      bool // started as the postgres user (we are root)
	bouncer         *exec.Cmd
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// command runs name as the postgres user when we are root (initdb and
// pgbouncer refuse root).
func (c *cluster) command(name string, args ...string) *exec.Cmd {
	if c.asPostgres {
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	}
	return exec.Command(name, args...)
}

func startCluster(pgBin, bouncerBin string) (*cluster, error) {
	dir, err := os.MkdirTemp("", "deplo-fleet-")
	if err != nil {
		return nil, err
	}
	c := &cluster{dir: dir, pgBin: pgBin, asPostgres: os.Geteuid() == 0}
	if c.asPostgres {
		u, err := user.Lookup("postgres")
		if err != nil {
			return c, errors.New("running as root needs a postgres user to run PostgreSQL and pgbouncer as")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return c, err
		}
	}
	if c.pgPort, err = freePort(); err != nil {
		return c, err
	}
	if p := os.Getenv("FLEET_PG_PORT"); p != "" {
		c.pgPort, _ = strconv.Atoi(p)
	}
	if c.pgbPort, err = freePort(); err != nil {
		return c, err
	}
	data := filepath.Join(dir, "data")
	if out, err := c.command(filepath.Join(pgBin, "initdb"), "-D", data, "-A", "trust", "-U", "postgres").CombinedOutput(); err != nil {
		return c, fmt.Errorf("initdb: %v: %s", err, out)
	}
	conf := fmt.Sprintf(`
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = '%s'
max_connections = 1200
shared_buffers = 128MB
fsync = off
synchronous_commit = off
`, c.pgPort, dir)
	f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return c, err
	}
	_, err = f.WriteString(conf)
	f.Close()
	if err != nil {
		return c, err
	}
	if out, err := c.command(filepath.Join(pgBin, "pg_ctl"), "-D", data, "-l", filepath.Join(dir, "pg.log"), "-w", "start").CombinedOutput(); err != nil {
		return c, fmt.Errorf("pg_ctl start: %v: %s", err, out)
	}
	ini := fmt.Sprintf(`[databases]
postgres = host=127.0.0.1 port=%d dbname=postgres user=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s/users.txt
pool_mode = transaction
default_pool_size = %d
max_client_conn = 5000
logfile = %s/pgbouncer.log
pidfile = %s/pgbouncer.pid
`, c.pgPort, c.pgbPort, dir, poolSize, dir, dir)
	for name, body := range map[string]string{"pgbouncer.ini": ini, "users.txt": `"postgres" ""` + "\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return c, err
		}
	}
	args := []string{filepath.Join(dir, "pgbouncer.ini")}
	if c.asPostgres {
		args = append([]string{"-u", "postgres"}, args...)
	}
	c.bouncer = exec.Command(bouncerBin, args...)
	if err := c.bouncer.Start(); err != nil {
		return c, fmt.Errorf("pgbouncer: %w", err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", c.pgbPort))
		if err == nil {
			conn.Close()
			return c, nil
		}
		if time.Now().After(deadline) {
			return c, fmt.Errorf("pgbouncer does not answer: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *cluster) stop() {
	if c.bouncer != nil && c.bouncer.Process != nil {
		_ = c.bouncer.Process.Kill()
		_ = c.bouncer.Wait()
	}
	if c.pgPort != 0 {
		_ = c.command(filepath.Join(c.pgBin, "pg_ctl"), "-D", filepath.Join(c.dir, "data"), "-m", "immediate", "-w", "stop").Run()
	}
	os.RemoveAll(c.dir)
}

func (c *cluster) direct(app string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&application_name=%s", c.pgPort, app)
}

func (c *cluster) pooled(app string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&application_name=%s", c.pgbPort, app)
}

// cpu returns the CPU time of every process of the cluster (the postmaster
// and its children), from /proc.
func (c *cluster) cpu() time.Duration {
	b, err := os.ReadFile(filepath.Join(c.dir, "data", "postmaster.pid"))
	if err != nil {
		return 0
	}
	master, _ := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	ents, _ := os.ReadDir("/proc")
	var ticks int64
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(st)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(fields) < 13 {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		if pid != master && ppid != master {
			continue
		}
		u, _ := strconv.ParseInt(fields[11], 10, 64)
		k, _ := strconv.ParseInt(fields[12], 10, 64)
		ticks += u + k
	}
	return time.Duration(ticks) * 10 * time.Millisecond // USER_HZ 100
}

// processCPU is this process's CPU time (user + system): the fleet's
// instances' share.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// instance is one gateway: a store and a cache, as Caddy builds them.
type instance struct {
	store *pgstore.Store
	cache *tokencache.Cache
	stop  func()
}

func openInstance(ctx context.Context, c *cluster, i int) (*instance, error) {
	app := fmt.Sprintf("gw%d", i)
	// The options caddymodule's openPostgresStore passes (its metric
	// hooks aside), with listen_dsn direct and the DSN through pgbouncer.
	pg, err := pgstore.Open(ctx, pgstore.Options{
		DSN:                c.pooled(app),
		ListenDSN:          c.direct(app),
		StartWithoutServer: true,
	})
	if err != nil {
		return nil, err
	}
	pg.KeepChangesFor(tokencache.DefaultTTL)
	cache, err := tokencache.New(pg, tokencache.Config{})
	if err != nil {
		pg.Close()
		return nil, err
	}
	return &instance{store: pg, cache: cache, stop: cache.Watch()}, nil
}

func (in *instance) close() {
	in.stop()
	in.cache.Close()
	in.store.Close()
}

func tokenHash(name string, i int) keystore.Hash {
	return keystore.Hash(sha256.Sum256([]byte(fmt.Sprintf("%s%d", name, i))))
}

// refused reports whether the instance refuses h (a lookup through its
// cache answers revoked); an error counts as not yet.
func (in *instance) refused(ctx context.Context, h keystore.Hash) bool {
	e, _, err := in.cache.Lookup(ctx, h)
	return err == nil && e != nil && e.Token != nil && e.Token.Status(time.Now()) != keystore.TokenActive
}

// untilRefused measures, for each instance, the time from start until it
// refuses its token (hashOf(i)), with workers checking in parallel; at most
// limit.
func untilRefused(ctx context.Context, fleet []*instance, hashOf func(int) keystore.Hash, start time.Time, limit time.Duration) ([]time.Duration, error) {
	out := make([]time.Duration, len(fleet))
	const workers = 16
	var wg sync.WaitGroup
	var failed sync.Once
	var ferr error
	for w := range workers {
		wg.Go(func() {
			var todo []int
			for i := w; i < len(fleet); i += workers {
				todo = append(todo, i)
			}
			for len(todo) > 0 {
				next := todo[:0]
				for _, i := range todo {
					if fleet[i].refused(ctx, hashOf(i)) {
						out[i] = time.Since(start)
					} else {
						next = append(next, i)
					}
				}
				todo = next
				if len(todo) > 0 && time.Since(start) > limit {
					failed.Do(func() { ferr = fmt.Errorf("%d instances still accept after %v", len(todo), limit) })
					return
				}
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	return out, ferr
}

func pct(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(p*float64(len(s)-1))]
}

func run(ns []int, runs, bulk int, pgBin, bouncerBin string) error {
	// Many connections: raise the open-file limit to its maximum.
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil {
		rl.Cur = rl.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	c, err := startCluster(pgBin, bouncerBin)
	defer c.stop()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() { <-sig; c.stop(); os.Exit(130) }()
	if err != nil {
		return err
	}
	ctx := context.Background()
	admin, err := pgxpool.New(ctx, c.direct("fleet-admin"))
	if err != nil {
		return err
	}
	defer admin.Close()
	if _, err := pgstore.Migrate(ctx, admin); err != nil {
		return err
	}
	// Tokens: single-revocation targets, and the bulk set.
	if _, err := admin.Exec(ctx, `INSERT INTO deplo_tokens (hash, id, workspace, scopes)
SELECT sha256(('single' || i)::bytea), 'tok_single_' || i, 'ws_single', '{read}' FROM generate_series(0, $1) i`, len(ns)*runs); err != nil {
		return err
	}
	cli, err := pgstore.Open(ctx, pgstore.Options{DSN: c.pooled("fleet-cli"), AdminOnly: true})
	if err != nil {
		return err
	}
	defer cli.Close()

	if !rowOnly {
		printHeader(runs, bulk)
	}
	single := 0
	for round, n := range ns {
		bulkWS := fmt.Sprintf("ws_bulk_%d", round)
		if _, err := admin.Exec(ctx, `INSERT INTO deplo_tokens (hash, id, workspace, scopes)
SELECT sha256(($1 || i)::bytea), $1 || '_' || i, $1, '{read}' FROM generate_series(0, $2 - 1) i`, bulkWS, bulk); err != nil {
			return err
		}
		fleet := make([]*instance, n)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var openErr error
		sem := make(chan struct{}, 8)
		for i := range n {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				in, err := openInstance(ctx, c, i)
				mu.Lock()
				defer mu.Unlock()
				if err != nil && openErr == nil {
					openErr = err
				}
				fleet[i] = in
			})
		}
		wg.Wait()
		if openErr != nil {
			return fmt.Errorf("N=%d: opening: %w", n, openErr)
		}
		closeAll := func() {
			for _, in := range fleet {
				if in != nil {
					in.close()
				}
			}
		}
		bulkHash := func(i int) keystore.Hash { return tokenHash(bulkWS, i%bulk) }
		// Warm every cache with its single targets and its bulk token.
		for i, in := range fleet {
			for r := range runs {
				if in.refused(ctx, tokenHash("single", single+r)) {
					closeAll()
					return errors.New("a single target is not active")
				}
			}
			if in.refused(ctx, bulkHash(i)) {
				closeAll()
				return errors.New("a bulk token is not active")
			}
		}
		// At rest: let the pool connections settle, then count.
		time.Sleep(3 * time.Second)
		var conns, listeners int
		if err := admin.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE application_name LIKE '%-listener')
FROM pg_stat_activity WHERE backend_type = 'client backend' AND application_name <> 'fleet-admin'`).Scan(&conns, &listeners); err != nil {
			closeAll()
			return err
		}
		cpu0, t0 := c.cpu(), time.Now()
		time.Sleep(5 * time.Second)
		rest := time.Duration(float64(c.cpu()-cpu0) / time.Since(t0).Seconds())

		var singles []time.Duration
		var singleCPU time.Duration
		for r := range runs {
			id := fmt.Sprintf("tok_single_%d", single+r)
			h := tokenHash("single", single+r)
			cpuBefore := c.cpu()
			if _, err := cli.RevokeToken(ctx, id, time.Time{}); err != nil {
				closeAll()
				return err
			}
			start := time.Now() // committed

			ds, err := untilRefused(ctx, fleet, func(int) keystore.Hash { return h }, start, 10*time.Second)
			if err != nil {
				closeAll()
				return fmt.Errorf("N=%d single: %w", n, err)
			}
			singleCPU += c.cpu() - cpuBefore
			singles = append(singles, ds...)
			time.Sleep(500 * time.Millisecond)
		}
		single += runs

		seen := make([]atomic.Int64, n)
		for i, in := range fleet {
			want := bulkHash(i)
			stop := in.store.Watch(func(h keystore.Hash, _ bool) {
				if h == want {
					seen[i].CompareAndSwap(0, time.Now().UnixNano())
				}
			})
			defer stop()
		}
		cpuBefore, clientBefore := c.cpu(), processCPU()
		if _, err := admin.Exec(ctx, `UPDATE deplo_tokens SET revoked_at = now() WHERE workspace = $1`, bulkWS); err != nil {
			closeAll()
			return err
		}
		start := time.Now() // committed
		var bulkEnd int64
		if err := admin.QueryRow(ctx, `SELECT max(seq) FROM deplo_changes`).Scan(&bulkEnd); err != nil {
			closeAll()
			return err
		}

		bulks, err := untilRefused(ctx, fleet, bulkHash, start, 30*time.Second)
		if err != nil {
			closeAll()
			return fmt.Errorf("N=%d bulk: %w", n, err)
		}
		bulkCPU := c.cpu() - cpuBefore
		// Wait for every instance to have applied the whole bulk (the
		// refusal above needs only its own token), then take the
		// instances' CPU: what the bulk cost them, divided by N.
		for _, in := range fleet {
			for in.store.LastChange() < bulkEnd {
				time.Sleep(time.Millisecond)
			}
		}
		clientCPU := processCPU() - clientBefore
		if os.Getenv("FLEET_DEBUG") != "" {
			var ws []time.Duration
			for i := range seen {
				ws = append(ws, time.Duration(seen[i].Load()-start.UnixNano()))
			}
			fmt.Printf("debug: bulk invalidation reached the store watchers p50 %v max %v\n", pct(ws, 0.5), slices.Max(ws))
		}
		fmt.Printf("| %d | %v / %v | %v / %v | %d (%d + %d) | %v/s | %v | %v | %v (%v) |\n", n,
			pct(singles, 0.5).Round(time.Millisecond), slices.Max(singles).Round(time.Millisecond),
			pct(bulks, 0.5).Round(time.Millisecond), slices.Max(bulks).Round(time.Millisecond),
			conns, listeners, conns-listeners, rest.Round(time.Millisecond),
			(singleCPU / time.Duration(runs)).Round(time.Millisecond), bulkCPU.Round(time.Millisecond),
			clientCPU.Round(time.Millisecond), (clientCPU / time.Duration(n)).Round(10*time.Microsecond))
		closeAll()
	}
	return nil
}
