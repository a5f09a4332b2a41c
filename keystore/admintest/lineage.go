package admintest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/deplo-sh/deplo-auth/keystore"
)

// RunLineage checks admin's lineage operations (Create, Rotate,
// RevokeCreatedBy and the cascade of RevokeToken) against keystore.TokenManager's
// contract. newAdmin returns a fresh, empty store each call; when it
// implements keystore.SessionRevoker, a revoked session's creates are checked
// too.
func RunLineage(t *testing.T, newAdmin func(t *testing.T) keystore.TokenManager) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	at := func(d time.Duration) *time.Time { x := now.Add(d); return &x }
	byKey := func(id string) *keystore.Creator { return &keystore.Creator{Kind: keystore.CreatorAPIKey, ID: id} }
	// seed creates a root token with the given end of life.
	seed := func(t *testing.T, a keystore.TokenManager, id, ws string, expires, revoked *time.Time) {
		t.Helper()
		e, _ := NewEntry(t, id, ws)
		e.CreatedAt = now.Add(-time.Hour)
		e.ExpiresAt, e.RevokedAt = expires, revoked
		e.CreatedBy = &keystore.Creator{Kind: keystore.CreatorOperator}
		if err := a.CreateToken(ctx, e); err != nil {
			t.Fatalf("seed %s: %v", id, err)
		}
	}
	// child creates id, created by the API token parent, asking for
	// expires; it returns the stored entry.
	child := func(t *testing.T, a keystore.TokenManager, id, parent string, expires *time.Time) (keystore.TokenEntry, error) {
		t.Helper()
		e, _ := NewEntry(t, id, "ws_acme")
		e.CreatedAt, e.ExpiresAt, e.CreatedBy = now, expires, byKey(parent)
		return a.Create(ctx, e, keystore.CreateOptions{Now: now})
	}
	get := func(t *testing.T, a keystore.TokenManager, id string) keystore.TokenRecord {
		t.Helper()
		rec, err := a.Token(ctx, id)
		if err != nil {
			t.Fatalf("Token(%s): %v", id, err)
		}
		return rec
	}
	live := func(t *testing.T, a keystore.TokenManager, id string) bool {
		t.Helper()
		rec := get(t, a, id)
		return rec.Live(now)
	}
	same := func(a, b *time.Time) bool { return a == nil && b == nil || a != nil && b != nil && a.Equal(*b) }

	t.Run("a child's expiry is capped at its parent's end", func(t *testing.T) {
		a := newAdmin(t)
		seed(t, a, "tok_p", "ws_acme", at(time.Hour), nil)
		seed(t, a, "tok_q", "ws_acme", nil, at(2*time.Hour)) // revocation scheduled
		seed(t, a, "tok_r", "ws_acme", nil, nil)
		for _, c := range []struct {
			id, parent  string
			asked, want *time.Time
		}{
			{"tok_c1", "tok_p", nil, at(time.Hour)},
			{"tok_c2", "tok_p", at(3 * time.Hour), at(time.Hour)},
			{"tok_c3", "tok_p", at(time.Minute), at(time.Minute)},
			{"tok_c4", "tok_q", nil, at(2 * time.Hour)},
			{"tok_c5", "tok_r", nil, nil},
			{"tok_c6", "tok_r", at(time.Minute), at(time.Minute)},
		} {
			got, err := child(t, a, c.id, c.parent, c.asked)
			if err != nil {
				t.Fatalf("%s: %v", c.id, err)
			}
			if !same(got.ExpiresAt, c.want) || !same(get(t, a, c.id).ExpiresAt, c.want) {
				t.Errorf("%s of %s asked %v: expires_at %v (stored %v), want %v", c.id, c.parent, c.asked, got.ExpiresAt, get(t, a, c.id).ExpiresAt, c.want)
			}
			if rec := get(t, a, c.id); rec.CreatedBy == nil || *rec.CreatedBy != *byKey(c.parent) {
				t.Errorf("%s: created_by %+v", c.id, rec.CreatedBy)
			}
		}
	})

	t.Run("a creator that does not work creates nothing", func(t *testing.T) {
		a := newAdmin(t)
		seed(t, a, "tok_revoked", "ws_acme", nil, at(-time.Second))
		seed(t, a, "tok_expired", "ws_acme", at(-time.Second), nil)
		seed(t, a, "tok_elsewhere", "ws_other", nil, nil)
		for _, parent := range []string{"tok_revoked", "tok_expired", "tok_elsewhere", "tok_unknown"} {
			_, err := child(t, a, "tok_child", parent, nil)
			if !errors.Is(err, keystore.ErrCreatorInactive) {
				t.Errorf("created by %s: %v, want ErrCreatorInactive", parent, err)
			}
			if _, err := a.Token(ctx, "tok_child"); !errors.Is(err, keystore.ErrNotFound) {
				t.Errorf("created by %s: the child was stored", parent)
			}
		}
		sa, ok := a.(keystore.SessionRevoker)
		if !ok {
			return
		}
		if err := sa.RevokeSession(ctx, "sid_gone", time.Time{}); err != nil {
			t.Fatal(err)
		}
		for sid, want := range map[string]error{"sid_gone": keystore.ErrCreatorInactive, "sid_fine": nil} {
			e, _ := NewEntry(t, "tok_of_"+sid, "ws_acme")
			e.CreatedBy = &keystore.Creator{Kind: keystore.CreatorJWT, Subject: "user_1", Session: sid}
			if _, err := a.Create(ctx, e, keystore.CreateOptions{Now: now}); !errors.Is(err, want) && err != want {
				t.Errorf("created by session %s: %v, want %v", sid, err, want)
			}
		}
	})

	t.Run("max live tokens per workspace", func(t *testing.T) {
		a := newAdmin(t)
		seed(t, a, "tok_1", "ws_acme", nil, nil)
		seed(t, a, "tok_2", "ws_acme", nil, nil)
		seed(t, a, "tok_dead", "ws_acme", nil, at(-time.Minute)) // does not count
		seed(t, a, "tok_o", "ws_other", nil, nil)                // another workspace's
		e, _ := NewEntry(t, "tok_3", "ws_acme")
		if _, err := a.Create(ctx, e, keystore.CreateOptions{Now: now, MaxLive: 3}); err != nil {
			t.Fatalf("third live token: %v", err)
		}
		e, _ = NewEntry(t, "tok_4", "ws_acme")
		if _, err := a.Create(ctx, e, keystore.CreateOptions{Now: now, MaxLive: 3}); !errors.Is(err, keystore.ErrLimitReached) {
			t.Fatalf("fourth live token: %v, want ErrLimitReached", err)
		}
		if _, err := a.Token(ctx, "tok_4"); !errors.Is(err, keystore.ErrNotFound) {
			t.Error("the token past the limit was stored")
		}
	})

	t.Run("revoking a parent revokes its subtree only", func(t *testing.T) {
		a := newAdmin(t)
		seed(t, a, "tok_root", "ws_acme", nil, nil)
		seed(t, a, "tok_stranger", "ws_acme", nil, nil)
		for _, c := range [][2]string{{"tok_a", "tok_root"}, {"tok_b", "tok_root"}, {"tok_aa", "tok_a"}, {"tok_aaa", "tok_aa"}, {"tok_s", "tok_stranger"}} {
			if _, err := child(t, a, c[0], c[1], nil); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := a.RevokeToken(ctx, "tok_a", now); err != nil {
			t.Fatal(err)
		}
		for id, want := range map[string]bool{"tok_root": true, "tok_a": false, "tok_b": true, "tok_aa": false, "tok_aaa": false, "tok_stranger": true, "tok_s": true} {
			if got := live(t, a, id); got != want {
				t.Errorf("after revoking tok_a: %s live %v, want %v", id, got, want)
			}
		}
		// A later revocation keeps the earlier instant, down the tree.
		if _, err := a.RevokeToken(ctx, "tok_root", now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if rec := get(t, a, "tok_aaa"); rec.RevokedAt == nil || !rec.RevokedAt.Equal(now) {
			t.Errorf("tok_aaa revoked_at %v, want %v", rec.RevokedAt, now)
		}
		if rec := get(t, a, "tok_b"); !same(rec.RevokedAt, at(time.Hour)) {
			t.Errorf("tok_b revoked_at %v, want the root's scheduled %v", rec.RevokedAt, at(time.Hour))
		}
	})

	t.Run("revoke by creator", func(t *testing.T) {
		a := newAdmin(t)
		seed(t, a, "tok_root", "ws_acme", nil, nil)
		mk := func(id string, project string, c *keystore.Creator) {
			e, _ := NewEntry(t, id, "ws_acme")
			if project != "" {
				e.Project = &project
			}
			e.CreatedBy = c
			if _, err := a.Create(ctx, e, keystore.CreateOptions{Now: now}); err != nil {
				t.Fatal(err)
			}
		}
		s1 := &keystore.Creator{Kind: keystore.CreatorJWT, Subject: "user_1", Session: "sid_1"}
		s2 := &keystore.Creator{Kind: keystore.CreatorJWT, Subject: "user_1", Session: "sid_2"}
		s3 := &keystore.Creator{Kind: keystore.CreatorJWT, Subject: "user_2", Session: "sid_3"}
		mk("tok_s1", "", s1)
		mk("tok_s1p", "weekly-report", s1)
		mk("tok_s1c", "", byKey("tok_s1")) // child of tok_s1
		mk("tok_s2", "", s2)
		mk("tok_s3", "", s3)
		mk("tok_k", "", byKey("tok_root"))
		cases := []struct {
			filter, project string
			revoked         []string
		}{
			{"session:sid_1", "weekly-report", []string{"tok_s1p"}},
			{"session:sid_1", "", []string{"tok_s1", "tok_s1c"}}, // tok_s1p already revoked
			{"user:user_1", "", []string{"tok_s2"}},
			{"tok_root", "", []string{"tok_k"}},
			{"user:nobody", "", nil},
		}
		for _, c := range cases {
			f, err := keystore.ParseCreatorFilter(c.filter)
			if err != nil {
				t.Fatal(err)
			}
			got, err := a.RevokeCreatedBy(ctx, "ws_acme", c.project, f, now)
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(got)
			if !slices.Equal(got, c.revoked) {
				t.Errorf("%s (project %q): revoked %v, want %v", c.filter, c.project, got, c.revoked)
			}
		}
		for id, want := range map[string]bool{"tok_root": true, "tok_s3": true, "tok_s1": false, "tok_k": false} {
			if got := live(t, a, id); got != want {
				t.Errorf("%s live %v, want %v", id, got, want)
			}
		}
		if got, _ := a.RevokeCreatedBy(ctx, "ws_other", "", keystore.Creator{Kind: keystore.CreatorJWT, Subject: "user_2"}, now); len(got) != 0 {
			t.Errorf("another workspace's revoke reached %v", got)
		}
	})

	t.Run("rotate", func(t *testing.T) {
		a := newAdmin(t)
		seed(t, a, "tok_parent", "ws_acme", at(48*time.Hour), nil)
		old, err := child(t, a, "tok_old", "tok_parent", at(24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := child(t, a, "tok_oldchild", "tok_old", nil); err != nil {
			t.Fatal(err)
		}
		rotate := func(id, newID string, grace time.Duration, caller *keystore.Creator) (keystore.TokenEntry, error) {
			return a.Rotate(ctx, keystore.RotateRequest{ID: id, Workspace: "ws_acme", NewID: newID,
				NewHash: keystore.FormatHash(NewHash(t)), Grace: grace, Caller: caller, Now: now.Add(time.Hour)})
		}
		// Other workspace, unknown: not found; a revoked caller: refused.
		if _, err := a.Rotate(ctx, keystore.RotateRequest{ID: "tok_old", Workspace: "ws_other", NewID: "tok_x",
			NewHash: keystore.FormatHash(NewHash(t)), Now: now}); !errors.Is(err, keystore.ErrNotFound) {
			t.Errorf("rotate from another workspace: %v", err)
		}
		seed(t, a, "tok_gone", "ws_acme", nil, at(-time.Minute))
		if _, err := rotate("tok_old", "tok_x", 0, byKey("tok_gone")); !errors.Is(err, keystore.ErrCreatorInactive) {
			t.Errorf("rotate by a revoked caller: %v", err)
		}
		if _, err := rotate("tok_gone", "tok_x", 0, nil); !errors.Is(err, keystore.ErrTokenInactive) {
			t.Errorf("rotate a revoked token: %v", err)
		}
		// One hour later, with a two-hour grace.
		nw, err := rotate("tok_old", "tok_new", 2*time.Hour, byKey("tok_old"))
		if err != nil {
			t.Fatal(err)
		}
		// Lifetime 24h from now+1h, capped at the parent's now+48h.
		if nw.ID != "tok_new" || nw.Name != old.Name || nw.RotatedFrom != "tok_old" || nw.CreatedBy.Parent() != "tok_parent" ||
			!slices.Equal(nw.Scopes, old.Scopes) || !same(nw.ExpiresAt, at(25*time.Hour)) {
			t.Errorf("the new token: %+v (expires %v)", nw, nw.ExpiresAt)
		}
		if rec := get(t, a, "tok_new"); rec.RotatedFrom != "tok_old" || !same(rec.ExpiresAt, at(25*time.Hour)) {
			t.Errorf("stored: %+v", rec)
		}
		for _, id := range []string{"tok_old", "tok_oldchild"} {
			if rec := get(t, a, id); !same(rec.ExpiresAt, at(3*time.Hour)) || rec.RevokedAt != nil {
				t.Errorf("%s after a 2h grace: expires %v revoked %v, want expires %v", id, rec.ExpiresAt, rec.RevokedAt, at(3*time.Hour))
			}
		}
		// Rotating tok_old again is reuse: it, tok_new and their subtrees
		// are revoked.
		if _, err := child(t, a, "tok_newchild", "tok_new", nil); err != nil {
			t.Fatal(err)
		}
		_, err = rotate("tok_old", "tok_thief", 0, nil)
		var re *keystore.ReuseError
		if !errors.As(err, &re) || !errors.Is(err, keystore.ErrTokenReused) {
			t.Fatalf("second rotation: %v, want a ReuseError", err)
		}
		slices.Sort(re.Revoked)
		if want := []string{"tok_new", "tok_newchild", "tok_old", "tok_oldchild"}; !slices.Equal(re.Revoked, want) {
			t.Errorf("reuse revoked %v, want %v", re.Revoked, want)
		}
		if _, err := a.Token(ctx, "tok_thief"); !errors.Is(err, keystore.ErrNotFound) {
			t.Error("the reused token's rotation stored a token")
		}
		for _, id := range []string{"tok_new", "tok_newchild", "tok_old"} {
			if rec := get(t, a, id); rec.RevokedAt == nil {
				t.Errorf("%s not revoked after reuse", id)
			}
		}
		if !live(t, a, "tok_parent") {
			t.Error("reuse revoked the parent")
		}
		// Grace 0: the old token and its subtree are revoked at once.
		ciEntry, _ := NewEntry(t, "tok_ci", "ws_acme")
		ciEntry.AllowedIPs = []string{"203.0.113.0/24"}
		if err := a.CreateToken(ctx, ciEntry); err != nil {
			t.Fatal(err)
		}
		if _, err := child(t, a, "tok_cichild", "tok_ci", nil); err != nil {
			t.Fatal(err)
		}
		ci, err := rotate("tok_ci", "tok_ci2", 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		if ci.ExpiresAt != nil {
			t.Errorf("a token without expiry rotated into one expiring %v", ci.ExpiresAt)
		}
		if rec := get(t, a, "tok_ci2"); !slices.Equal(rec.AllowedIPs, ciEntry.AllowedIPs) {
			t.Errorf("the rotated token's allowed_ips %v, want %v", rec.AllowedIPs, ciEntry.AllowedIPs)
		}
		for _, id := range []string{"tok_ci", "tok_cichild"} {
			if rec := get(t, a, id); !same(rec.RevokedAt, at(time.Hour)) {
				t.Errorf("%s revoked_at %v, want %v", id, rec.RevokedAt, at(time.Hour))
			}
		}
		// MaxLifetime caps the new token.
		r := keystore.RotateRequest{ID: "tok_ci2", Workspace: "ws_acme", NewID: "tok_ci3",
			NewHash: keystore.FormatHash(NewHash(t)), Now: now.Add(time.Hour), MaxLifetime: time.Hour}
		ci3, err := a.Rotate(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if !same(ci3.ExpiresAt, at(2*time.Hour)) {
			t.Errorf("max lifetime 1h: expires %v, want %v", ci3.ExpiresAt, at(2*time.Hour))
		}
	})
}

// NewHash returns a random token hash.
func NewHash(t testing.TB) keystore.Hash {
	_, h := NewEntry(t, "x", "x")
	return h
}
