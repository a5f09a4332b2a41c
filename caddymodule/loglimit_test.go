package caddymodule

import (
	"testing"
	"time"
)

func TestLogLimiter(t *testing.T) {
	l := logLimiter{interval: time.Second}
	t0 := time.Unix(1000, 0)
	if ok, _ := l.allow(t0); !ok {
		t.Fatal("first entry suppressed")
	}
	for i := 0; i < 5; i++ {
		if ok, _ := l.allow(t0.Add(time.Duration(i) * 100 * time.Millisecond)); ok {
			t.Fatalf("entry %d within the interval let through", i)
		}
	}
	ok, suppressed := l.allow(t0.Add(1100 * time.Millisecond))
	if !ok || suppressed != 5 {
		t.Fatalf("after the interval: ok=%v suppressed=%d, want true 5", ok, suppressed)
	}
}
