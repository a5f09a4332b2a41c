//go:build unix

package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/deplo-sh/deplo-auth/internal/doccheck"
)

// walkthrough is a section of a document whose ```sh blocks, concatenated
// in order, a reader pastes as one block; TestWalkthroughs runs them exactly
// as written and checks every output the document shows
// (CONTRIBUTING.md, "Walk-throughs").
type walkthrough struct {
	// doc is the document, relative to the repository's root; heading the
	// section's heading text.
	doc, heading string
	// setup starts what the section says must already be running, in dir
	// (a fresh copy of the repository's tracked files, where the blocks run
	// too). It stops what it starts with t.Cleanup, and skips the section
	// (t.Skip, saying why) only when something it needs cannot be had.
	setup func(t *testing.T, dir string)
	// env is what the document asks the reader to have set (the blocks run
	// in a fresh shell's environment, without this process's DEPLO_*
	// variables, plus these "NAME=value" entries); nil: nothing.
	env func(t *testing.T) []string
}

// walkthroughs are the sections TestWalkthroughs runs. A section that needs
// more than the quick start's Caddy registers a setup of its own (or none,
// when its blocks start what they need).
var walkthroughs = []walkthrough{
	{doc: "README.md", heading: "Walk-through", setup: startQuickStart},
	{doc: "docs/tokens.md", heading: "Walk-through", setup: startQuickStart},
	{doc: "docs/tokens.md", heading: "IP conditions (`allowed_ips`)", setup: startQuickStart},
	{doc: "docs/tokens.md", heading: "Leak response (GitHub secret scanning)", setup: leakWalkthroughSetup},
	{doc: "docs/reference.md", heading: "Admin API", setup: startQuickStart},
	{doc: "examples/sidecar/README.md", heading: "Walk-through", setup: sidecarWalkthroughSetup},
	{doc: "examples/postgres/README.md", heading: "Walk-through", setup: postgresWalkthroughSetup, env: postgresWalkthroughEnv},
}

// postgresWalkthroughSetup checks that the ports examples/postgres's
// walk-through uses are free (its blocks start the gateways and the upstream
// themselves).
func postgresWalkthroughSetup(t *testing.T, _ string) {
	for _, addr := range []string{"localhost:8081", "localhost:8082", "localhost:2019", "localhost:2022", "127.0.0.1:9081"} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Fatalf("%s already answers: the walk-through would talk to that process (run the test where the port is free, e.g. in a private network namespace: unshare -n)", addr)
		}
	}
}

// postgresWalkthroughEnv is the reader's DEPLO_AUTH_POSTGRES: a new, empty
// schema of the test database (dropped at cleanup), so that the
// walk-through's migrate creates the tables, as on the reader's database.
func postgresWalkthroughEnv(t *testing.T) []string {
	_, _, u := newSchema(t, "deplo_walk_")
	return []string{"DEPLO_AUTH_POSTGRES=" + u.String()}
}

// leakWalkthroughSetup is the quick start's Caddy (Caddyfile.example serves
// the leaks endpoint with the demo key that plays GitHub) and openssl, which
// signs the report as the document shows.
func leakWalkthroughSetup(t *testing.T, dir string) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed: the leak walk-through signs its report with it")
	}
	startQuickStart(t, dir)
}

// sidecarWalkthroughSetup checks what examples/sidecar's walk-through needs
// (its blocks start the sidecar, the upstream, nginx and forward_auth
// themselves): a Debian nginx, root (nginx's master switches its workers to
// www-data), the www-data group and free ports. nginx daemonizes out of the
// script's process group, so a walk-through that stops halfway has its nginx
// stopped here.
func sidecarWalkthroughSetup(t *testing.T, dir string) {
	nginx := findNginx(t)
	if os.Geteuid() != 0 {
		t.Skip("the sidecar walk-through runs as root, as the document says (nginx's master runs its workers as www-data); not root here")
	}
	if _, err := user.LookupGroup("www-data"); err != nil {
		t.Skipf("no www-data group (nginx's on Debian): %v", err)
	}
	for _, addr := range []string{"localhost:8080", "localhost:2019", "localhost:2021", "127.0.0.1:9081", "127.0.0.1:9191"} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Fatalf("%s already answers: the walk-through would talk to that process (run the test where the port is free, e.g. in a private network namespace: unshare -n)", addr)
		}
	}
	t.Cleanup(func() {
		if _, err := os.Stat(filepath.Join(dir, "nginx.pid")); err == nil {
			_ = exec.Command(nginx, "-c", filepath.Join(dir, "examples/sidecar/nginx/nginx.conf"),
				"-g", "pid "+filepath.Join(dir, "nginx.pid")+";", "-s", "stop").Run()
		}
	})
}

// walkthroughTimeout bounds one section's blocks (their `go run` commands
// build the Caddy binary when the build cache is cold).
const walkthroughTimeout = 15 * time.Minute

// TestWalkthroughs runs each registered walk-through as a reader would: in a
// fresh copy of the repository's tracked files, after its setup, as one bash
// script with no pause, then compares what each command printed with the
// output the document shows under it (status line, headers, JSON, text
// lines; see package doccheck). A command that exits non-zero fails the
// section unless the document shows what it prints.
func TestWalkthroughs(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the walk-throughs build and run Caddy from the documents' commands")
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed: the walk-throughs are bash")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range walkthroughs {
		t.Run(w.doc+"#"+w.heading, func(t *testing.T) { runWalkthrough(t, root, w) })
	}
}

func runWalkthrough(t *testing.T, root string, w walkthrough) {
	steps := docSteps(t, root, w.doc, w.heading)
	if len(steps) == 0 {
		t.Fatalf("%s, %q: no ```sh blocks", w.doc, w.heading)
	}
	expects := make([]*doccheck.Expect, len(steps))
	for i, s := range steps {
		e, err := doccheck.ParseExpect(s.Output)
		if err != nil {
			t.Fatalf("%s:%d: the output shown: %v", w.doc, s.Line, err)
		}
		expects[i] = e
	}

	var env []string
	if w.env != nil {
		env = w.env(t)
	}
	dir := copyTracked(t, root)
	if w.setup != nil {
		w.setup(t, dir)
	}

	outDir := t.TempDir()
	script := walkthroughScript(steps, outDir)
	scriptPath := filepath.Join(outDir, "walkthrough.sh")
	if err := os.WriteFile(scriptPath, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("bash", "-n", scriptPath).CombinedOutput(); err != nil {
		t.Fatalf("%s, %q: the blocks are not valid bash (a command spans lines only by a trailing backslash): %v\n%s", w.doc, w.heading, err, out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), walkthroughTimeout)
	defer cancel()
	logPath := filepath.Join(outDir, "script.log")
	if err := runGroup(ctx, dir, logPath, env, "bash", scriptPath); err != nil {
		t.Errorf("%s, %q: the script: %v\n%s", w.doc, w.heading, err, tail(logPath))
	}

	for i, s := range steps {
		prefix := fmt.Sprintf("%s:%d: %s\n", w.doc, s.Line, firstLine(s.Command))
		rc, err := os.ReadFile(filepath.Join(outDir, strconv.Itoa(i)+".rc"))
		if err != nil {
			t.Errorf("%snever ran (the script stopped before it)", prefix)
			continue
		}
		stdout, _ := os.ReadFile(filepath.Join(outDir, strconv.Itoa(i)+".out"))
		stderr, _ := os.ReadFile(filepath.Join(outDir, strconv.Itoa(i)+".err"))
		if code := strings.TrimSpace(string(rc)); code != "0" && len(s.Output) == 0 {
			t.Errorf("%sexited %s and the document shows no output for it\nstdout:\n%s\nstderr:\n%s", prefix, code, stdout, stderr)
			continue
		}
		for _, d := range expects[i].Check(string(stdout), string(stderr)) {
			t.Errorf("%s%s", prefix, d)
		}
	}
}

// docSteps reads the steps of a document's section.
func docSteps(t *testing.T, root, doc, heading string) []doccheck.Step {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, doc))
	if err != nil {
		t.Fatal(err)
	}
	lines, first, err := doccheck.Section(string(b), heading)
	if err != nil {
		t.Fatalf("%s: %v", doc, err)
	}
	blocks, err := doccheck.Blocks(lines, first, "sh")
	if err != nil {
		t.Fatalf("%s, %q: %v", doc, heading, err)
	}
	return doccheck.Steps(blocks)
}

// walkthroughScript is the steps as one bash script, each command as
// written, its standard output and error captured apart, and its exit
// status recorded, in outDir/<i>.out, .err and .rc. A brace group runs in
// the script's own shell: variables set, exported or captured by one
// command are seen by the next, as when the blocks are pasted.
func walkthroughScript(steps []doccheck.Step, outDir string) string {
	var b strings.Builder
	b.WriteString("# The walk-through's commands, each with its output captured.\n")
	for i, s := range steps {
		f := filepath.Join(outDir, strconv.Itoa(i))
		fmt.Fprintf(&b, "{ %s\n} >%q 2>%q </dev/null; echo $? >%q\n", s.Command, f+".out", f+".err", f+".rc")
	}
	return b.String()
}

// startQuickStart starts Caddy in dir exactly as the README's quick start
// says (its first command), and waits until it serves :8080.
func startQuickStart(t *testing.T, dir string) {
	steps := docSteps(t, dir, "README.md", "Quick start")
	if len(steps) == 0 {
		t.Fatal("README.md, \"Quick start\": no command")
	}
	command := steps[0].Command
	for _, addr := range []string{"localhost:8080", "localhost:2019", "127.0.0.1:9081"} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Fatalf("%s already answers: the walk-through would talk to that process, not to the Caddy it starts (run the test where the port is free, e.g. in a private network namespace: unshare -n)", addr)
		}
	}
	logPath := filepath.Join(t.TempDir(), "caddy.log")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runGroup(ctx, dir, logPath, nil, "bash", "-c", command) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Logf("the quick start's Caddy: %v", err)
		}
	})

	deadline := time.Now().Add(walkthroughTimeout)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := client.Get("http://localhost:8080/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-done:
			done <- err
			t.Fatalf("the quick start's command %q stopped before Caddy served :8080: %v\n%s", command, err, tail(logPath))
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the quick start's command %q: Caddy did not serve :8080 within %v\n%s", command, walkthroughTimeout, tail(logPath))
		}
	}
}

// runGroup runs name with args in dir, in a process group of its own, with
// the environment of a fresh shell (no DEPLO_* variable of this process)
// plus env ("NAME=value" entries),
// standard input empty and its output in logPath. When ctx ends it stops the
// whole group (SIGTERM, then SIGKILL), and it stops what the command left
// running in the background when the command returns.
func runGroup(ctx context.Context, dir, logPath string, env []string, name string, args ...string) error {
	log, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DEPLO_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	if err := cmd.Start(); err != nil {
		return err
	}
	pgid := cmd.Process.Pid
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	stop := func() {
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		t := time.NewTimer(10 * time.Second)
		defer t.Stop()
		for syscall.Kill(-pgid, 0) == nil {
			select {
			case <-t.C:
				_ = syscall.Kill(-pgid, syscall.SIGKILL)
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	select {
	case err := <-waited:
		stop() // anything the command left in the background
		return err
	case <-ctx.Done():
		stop()
		<-waited
		return ctx.Err()
	}
}

// copyTracked copies the repository's tracked files (as they are in the
// work tree) into a new temporary directory: a fresh clone, with the
// uncommitted edits under test.
func copyTracked(t *testing.T, root string) string {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed: cannot list the repository's tracked files to copy")
	}
	out, err := exec.Command("git", "-C", root, "ls-files", "-z").Output()
	if err != nil {
		t.Skipf("cannot list the repository's tracked files (not a git work tree?): %v", err)
	}
	dir := t.TempDir()
	for _, f := range strings.Split(string(out), "\x00") {
		if f == "" {
			continue
		}
		src := filepath.Join(root, f)
		info, err := os.Lstat(src)
		if errors.Is(err, os.ErrNotExist) {
			continue // deleted in the work tree
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, info.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// tail returns the last lines of a log file.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}
