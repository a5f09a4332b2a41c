package decide

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoCaddyDependency keeps the decision core free of Caddy: every front
// door can use it, and it can be fuzzed on its own.
func TestNoCaddyDependency(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found: cannot list the package's dependencies")
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.Contains(dep, "caddyserver") {
			t.Errorf("package decide depends on %s", dep)
		}
	}
}
