package jwtauth

import (
	"time"

	"go.uber.org/zap"
)

// refreshJWKS fetches the JWKS (or joins a fetch in flight) and installs
// its keys. With throttle, it fetches only if the last attempt is at least
// JWKSMinRefetch ago; ran says whether a fetch ran or was joined.
func (v *Verifier) refreshJWKS(throttle bool) (ran bool, err error) {
	if v.ctx.Err() != nil {
		return false, v.ctx.Err()
	}
	ran, _, err = v.jwks.shared(throttle, func() (bool, error) {
		keys, skipped, err := v.jwks.fetch(v.ctx, v.allow)
		v.fetches.Add(1)
		if v.onRefresh != nil {
			v.onRefresh(err)
		}
		if len(skipped) > 0 {
			v.log.Debug("jwks keys skipped", zap.Strings("why", skipped))
		}
		if err != nil {
			v.fetchFailures.Add(1)
			v.logFetchFailure(err)
			return false, err
		}
		v.fetchRecovered()
		v.jwksOK.Store(time.Now().UnixNano())
		return v.installJWKS(keys), nil
	})
	return ran, err
}

// installJWKS makes keys the JWKS part of the key set. Keys that did not
// change keep their identity, so cache entries verified with them stay
// valid; the generation only moves when the set changes.
func (v *Verifier) installJWKS(keys []*verifyKey) bool {
	v.swapMu.Lock()
	defer v.swapMu.Unlock()
	old := v.keys.Load()
	for i, k := range keys {
		for _, o := range old.jwks {
			if o.kid == k.kid && o.algs == k.algs && sameKey(o, k) {
				keys[i] = o
				break
			}
		}
	}
	if samePointers(old.jwks, keys) {
		return false
	}
	next := newKeySet(old.gen+1, v.static, keys)
	v.keys.Store(next)
	v.log.Info("jwks keys updated", zap.Int("keys", len(keys)), zap.Uint64("generation", next.gen))
	return true
}

func samePointers(a, b []*verifyKey) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (v *Verifier) refreshLoop(every time.Duration) {
	defer v.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-v.ctx.Done():
			return
		case <-t.C:
			v.refreshJWKS(false)
		}
	}
}

// logFetchFailure logs a failed fetch, at most once a minute.
func (v *Verifier) logFetchFailure(err error) {
	v.failMu.Lock()
	v.failures++
	n := v.failures
	if !v.lastFailLog.IsZero() && time.Since(v.lastFailLog) < time.Minute {
		v.failMu.Unlock()
		return
	}
	v.lastFailLog = time.Now()
	v.failMu.Unlock()
	v.log.Warn("jwks fetch failed; the last good keys stay in force", zap.Error(err), zap.Int("consecutive_failures", n))
}

func (v *Verifier) fetchRecovered() {
	v.failMu.Lock()
	n := v.failures
	v.failures = 0
	v.lastFailLog = time.Time{}
	v.failMu.Unlock()
	if n > 0 {
		v.log.Info("jwks fetch recovered", zap.Int("failed_attempts", n))
	}
}
