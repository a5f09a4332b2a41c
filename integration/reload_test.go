package integration

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
)

// load loads a Caddyfile into the test Caddy and returns once it alone
// answers. On Linux Caddy binds each reload's sockets anew with SO_REUSEPORT
// and closes the old ones in a goroutine after the load has returned; a
// connection the kernel queued on an old socket in between is reset when that
// socket closes. A test's first request could meet that reset (CI did, at
// TestPostgresEndToEnd), so load waits until no port of this process is
// bound twice.
func load(t *testing.T, tester *caddytest.Tester, config string) {
	t.Helper()
	tester.InitServer(config, "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
	start := time.Now()
	deadline := start.Add(10 * time.Second)
	for {
		port, n := boundTwice(t)
		if n == 0 {
			if waited := time.Since(start); waited > time.Millisecond {
				t.Logf("the previous config's sockets closed %v after the load returned", waited.Round(time.Microsecond))
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a config load, port %d still has %d listening sockets of this process", port, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// boundTwice reports a TCP port on which this process holds more than one
// listening socket (and how many), or 0, 0.
func boundTwice(t *testing.T) (port, n int) {
	t.Helper()
	own := socketInodes(t)
	perPort := map[int]int{}
	for _, table := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			t.Fatalf("reading listening sockets: %v", err)
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != "0A" || !own[fields[9]] { // 0A: LISTEN
				continue
			}
			_, hexPort, _ := strings.Cut(fields[1], ":")
			p, err := strconv.ParseInt(hexPort, 16, 32)
			if err != nil {
				continue
			}
			perPort[int(p)]++
		}
		f.Close()
	}
	for p, count := range perPort {
		if count > 1 {
			return p, count
		}
	}
	return 0, 0
}

// socketInodes is the set of socket inodes this process holds open.
func socketInodes(t *testing.T) map[string]bool {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("reading open files: %v", err)
	}
	inodes := make(map[string]bool, len(entries))
	for _, e := range entries {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue // closed since the listing
		}
		if inode, ok := strings.CutPrefix(target, "socket:["); ok {
			inodes[strings.TrimSuffix(inode, "]")] = true
		}
	}
	return inodes
}
