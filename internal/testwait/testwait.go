// Package testwait holds the polling helper the store tests share: wait for
// a condition that a background goroutine (a file poller, a LISTEN
// connection) makes true.
package testwait

import (
	"testing"
	"time"
)

// For polls cond every 2 ms until it holds, and fails the test if it does
// not within timeout.
func For(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
