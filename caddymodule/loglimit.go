package caddymodule

import (
	"sync/atomic"
	"time"
)

// logLimiter lets one log entry through per interval and counts the rest,
// so that an outage (a store down for every request) does not flood the log.
type logLimiter struct {
	interval   time.Duration
	next       atomic.Int64 // unix nanoseconds of the next allowed entry
	suppressed atomic.Uint64
}

// allow reports whether an entry may be written now, and how many were
// suppressed since the last one that was.
func (l *logLimiter) allow(now time.Time) (ok bool, suppressed uint64) {
	n := l.next.Load()
	if now.UnixNano() < n || !l.next.CompareAndSwap(n, now.Add(l.interval).UnixNano()) {
		l.suppressed.Add(1)
		return false, 0
	}
	return true, l.suppressed.Swap(0)
}
