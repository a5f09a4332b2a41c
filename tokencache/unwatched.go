package tokencache

import (
	"sync/atomic"
	"time"

	"github.com/deplo-sh/deplo-auth/keystore"
)

// UnwatchedMaxAge is the age past which a positive answer is re-checked with
// the store before it is served, while a watching store's listener is down
// (keystore.ListenerHealth): revocations are then not announced, and a
// revocation must still take effect within about this long whenever the
// store answers.
const UnwatchedMaxAge = time.Second

// unwatched decides when a cached positive answer must be re-checked because
// the store's change feed is down.
type unwatched struct {
	health keystore.ListenerHealth // nil: the store has no such feed
	// failedAt is when a re-check last failed (Unix ns). For the next
	// UnwatchedMaxAge cached answers are served unchecked, as during any
	// store outage, instead of every request waiting on a failing store.
	failedAt atomic.Int64
}

// init takes the listener health of store, if it reports one.
func (u *unwatched) init(store keystore.Store) {
	u.health, _ = store.(keystore.ListenerHealth)
}

// mustRecheck reports whether the positive entry e must be re-checked with
// the store before it is served.
func (u *unwatched) mustRecheck(e *Entry) bool {
	if u.health == nil || u.health.Listening() {
		return false
	}
	now := time.Now()
	return now.Sub(e.checkedAt) >= UnwatchedMaxAge &&
		now.UnixNano()-u.failedAt.Load() >= int64(UnwatchedMaxAge)
}

// recheckFailed records that the store could not answer a re-check.
func (u *unwatched) recheckFailed() { u.failedAt.Store(time.Now().UnixNano()) }
