// Package bench holds the end-to-end load benchmark (run.sh). This test runs
// its smoke mode in the normal test run, so the script cannot rot.
package bench

import (
	"context"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

func TestBenchSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Caddy and drives load; skipped with -short")
	}
	for _, tool := range []string{"wrk", "python3", "curl", "openssl", "ss"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("bench smoke needs %s (apt-get install -y wrk); skipping", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "run.sh", "smoke")
	// SIGTERM, not SIGKILL, on timeout: the script's trap stops what it started.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("bench/run.sh smoke: %v", err)
	}
}
