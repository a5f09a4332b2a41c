package tokencache

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/deplo-sh/deplo-auth/keystore"
)

// BenchmarkKeyFilePropagation measures how long a change to the key file
// takes to reach a request: from the write to the first lookup through the
// cache that sees it. Each iteration makes a token appear or revokes it in
// turn (the walk-through's create-then-use and revoke-then-use), the
// cache warm with the token's previous answer. It reports the latency's
// p50, p99 and maximum over the iterations; run it with a fixed count, e.g.
// -benchtime 200x.
//
//   - hand_edit: os.WriteFile over the file (truncate, write), as an editor
//     saving in place or a script does.
//   - atomic_rename: a complete file renamed over it; the clock starts at
//     the rename.
//   - cli: keystore.FileTokenManager, as `caddy deplo-auth token create|revoke
//     --keys-file` writes (lock, write, fsync, rename) when it cannot reach
//     the gateway's admin endpoint; the clock starts at the call.
//   - poll_only: hand_edit with the directory watch off, as where the system
//     offers none (the poll at its default interval).
func BenchmarkKeyFilePropagation(b *testing.B) {
	for _, n := range []int{10, 1000, 10_000} {
		for _, how := range []string{"hand_edit", "atomic_rename", "cli", "poll_only"} {
			if how == "poll_only" && n != 10 {
				continue
			}
			b.Run(fmt.Sprintf("%s/tokens=%d", how, n), func(b *testing.B) {
				benchPropagation(b, how, n)
			})
		}
	}
}

func benchPropagation(b *testing.B, how string, n int) {
	path := filepath.Join(b.TempDir(), "keys.json")
	created := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	hashes := numberedHashes(n + 1)
	entries := make([]keystore.TokenEntry, n)
	for i := range entries {
		entries[i] = keystore.TokenEntry{ID: fmt.Sprintf("tok_%06d", i),
			Hash: keystore.FormatHash(hashes[i]), Workspace: "ws_acme",
			Scopes: []string{"read"}, CreatedAt: created}
	}
	target := hashes[n]
	tokenEntry := keystore.TokenEntry{ID: "tok_target", Hash: keystore.FormatHash(target),
		Workspace: "ws_acme", Scopes: []string{"read"}, CreatedAt: created}
	// doc is the file with the target token absent (state 0), active (1)
	// or revoked (2).
	doc := func(state int) []byte {
		kf := keystore.KeyFile{Tokens: slices.Clone(entries)}
		if state > 0 {
			e := tokenEntry
			if state == 2 {
				e.RevokedAt = &created
			}
			kf.Tokens = append(kf.Tokens, e)
		}
		data, err := json.Marshal(kf)
		if err != nil {
			b.Fatal(err)
		}
		return data
	}
	docs := [][]byte{doc(0), doc(1), doc(2)}
	if err := os.WriteFile(path, docs[0], 0o600); err != nil {
		b.Fatal(err)
	}
	store, err := keystore.OpenFile(path, keystore.FileOptions{PollOnly: how == "poll_only"})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	if how != "poll_only" && !store.Watched() {
		b.Skip("this system offers no file watch")
	}
	cache, err := New(store, Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer cache.Close()
	admin := &keystore.FileTokenManager{Path: path} // another process's: no store to hand the change to

	state := 0
	lookup := func() int { // the state a request sees
		e, _, err := cache.Lookup(context.Background(), target)
		switch {
		case err != nil:
			b.Fatal(err)
		case e == nil:
			return 0
		case e.Token.Status(time.Now()) == keystore.TokenRevoked:
			return 2
		}
		return 1
	}
	lookup() // warm: the cache holds the target's current answer
	var lat []time.Duration
	for b.Loop() {
		// absent → active → revoked → absent → …: create, revoke, clean up.
		next := (state + 1) % 3
		var start time.Time
		switch how {
		case "hand_edit", "poll_only":
			start = time.Now()
			if err := os.WriteFile(path, docs[next], 0o600); err != nil {
				b.Fatal(err)
			}
		case "atomic_rename":
			tmp := path + ".new"
			if err := os.WriteFile(tmp, docs[next], 0o600); err != nil {
				b.Fatal(err)
			}
			start = time.Now()
			if err := os.Rename(tmp, path); err != nil {
				b.Fatal(err)
			}
		case "cli":
			start = time.Now()
			var err error
			switch next {
			case 1:
				err = admin.CreateToken(context.Background(), tokenEntry)
			case 2:
				_, err = admin.RevokeToken(context.Background(), tokenEntry.ID, created)
			default:
				err = keystore.UpdateKeyFile(path, false, func(kf *keystore.KeyFile) error {
					kf.Tokens = slices.DeleteFunc(kf.Tokens, func(e keystore.TokenEntry) bool { return e.ID == tokenEntry.ID })
					return nil
				})
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		for lookup() != next {
			if time.Since(start) > 10*time.Second {
				b.Fatalf("change %d not seen within 10s", next)
			}
			runtime.Gosched()
		}
		lat = append(lat, time.Since(start))
		state = next
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
	b.ReportMetric(0, "ns/op") // the loop's time is mostly waiting: not a figure
}
