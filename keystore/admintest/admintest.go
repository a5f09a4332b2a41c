// Package admintest is the behaviour every keystore.TokenManager must have, as one
// test that each backend's tests run against a fresh, empty store.
package admintest

import (
	"context"
	"crypto/rand"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deplo-sh/deplo-auth/keystore"
)

// NewEntry returns a token entry of workspace with a random hash and a
// created_at in the past (whole seconds, as both stores keep them).
func NewEntry(t testing.TB, id, workspace string) (keystore.TokenEntry, keystore.Hash) {
	t.Helper()
	var h keystore.Hash
	if _, err := rand.Read(h[:]); err != nil {
		t.Fatal(err)
	}
	return keystore.TokenEntry{
		ID: id, Name: "name of " + id, Hash: keystore.FormatHash(h), Workspace: workspace,
		Scopes: []string{"deploy", "read"}, CreatedAt: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC),
	}, h
}

// Run checks admin, which must start with no token, against the contract of
// keystore.TokenManager (and keystore.SessionRevoker when admin implements it).
func Run(t *testing.T, admin keystore.TokenManager) {
	ctx := context.Background()
	a, _ := NewEntry(t, "tok_a", "ws_acme")
	project := "weekly-report"
	a.Project = &project
	b, _ := NewEntry(t, "tok_b", "ws_acme")
	b.CreatedAt = b.CreatedAt.Add(time.Hour)
	expires := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	b.ExpiresAt = &expires
	other, _ := NewEntry(t, "tok_other", "ws_other")
	other.CreatedAt = other.CreatedAt.Add(2 * time.Hour)
	for _, e := range []keystore.TokenEntry{a, b, other} {
		if err := admin.CreateToken(ctx, e); err != nil {
			t.Fatalf("CreateToken(%s): %v", e.ID, err)
		}
	}

	t.Run("duplicates refused without showing the hash", func(t *testing.T) {
		dupID, _ := NewEntry(t, "tok_a", "ws_acme")
		if err := admin.CreateToken(ctx, dupID); err == nil {
			t.Error("a second token with id tok_a was created")
		}
		dupHash, _ := NewEntry(t, "tok_c", "ws_acme")
		dupHash.Hash = a.Hash
		err := admin.CreateToken(ctx, dupHash)
		if err == nil {
			t.Fatal("a second token with tok_a's hash was created")
		}
		if strings.Contains(err.Error(), strings.TrimPrefix(a.Hash, "sha256:")) {
			t.Errorf("the error shows the hash: %v", err)
		}
	})

	t.Run("bad entries refused", func(t *testing.T) {
		for name, spoil := range map[string]func(*keystore.TokenEntry){
			"bad hash":        func(e *keystore.TokenEntry) { e.Hash = "sha256:xyz" },
			"empty id":        func(e *keystore.TokenEntry) { e.ID = "" },
			"id like a token": func(e *keystore.TokenEntry) { e.ID = "sk_live_abc" },
			"empty workspace": func(e *keystore.TokenEntry) { e.Workspace = "" },
			"empty project":   func(e *keystore.TokenEntry) { empty := ""; e.Project = &empty },
			"empty scope":     func(e *keystore.TokenEntry) { e.Scopes = []string{""} },
		} {
			e, _ := NewEntry(t, "tok_bad", "ws_acme")
			spoil(&e)
			if err := admin.CreateToken(ctx, e); err == nil {
				t.Errorf("%s: accepted", name)
			}
		}
		if _, err := admin.Token(ctx, "tok_bad"); !errors.Is(err, keystore.ErrNotFound) {
			t.Errorf("a refused entry was stored: %v", err)
		}
	})

	t.Run("get", func(t *testing.T) {
		got, err := admin.Token(ctx, "tok_a")
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != "tok_a" || got.Hash != a.Hash || got.Workspace != "ws_acme" || got.Project == nil ||
			*got.Project != project || !slices.Equal(got.Scopes, a.Scopes) || !got.CreatedAt.Equal(a.CreatedAt) ||
			got.ExpiresAt != nil || got.RevokedAt != nil || got.LastUsedAt != nil {
			t.Errorf("Token(tok_a) = %+v", got)
		}
		if _, err := admin.Token(ctx, "tok_nope"); !errors.Is(err, keystore.ErrNotFound) {
			t.Errorf("Token(unknown) = %v, want ErrNotFound", err)
		}
	})

	t.Run("list", func(t *testing.T) {
		all, err := admin.ListTokens(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if ids := recordIDs(all); !slices.Equal(ids, []string{"tok_a", "tok_b", "tok_other"}) {
			t.Errorf("ListTokens(all) = %v", ids)
		}
		acme, err := admin.ListTokens(ctx, "ws_acme")
		if err != nil {
			t.Fatal(err)
		}
		if ids := recordIDs(acme); !slices.Equal(ids, []string{"tok_a", "tok_b"}) {
			t.Errorf("ListTokens(ws_acme) = %v", ids)
		}
		if lb := acme[1]; lb.Project != nil || lb.ExpiresAt == nil || !lb.ExpiresAt.Equal(expires) {
			t.Errorf("listed tok_b = %+v", lb)
		}
		none, err := admin.ListTokens(ctx, "ws_nobody")
		if err != nil || len(none) != 0 {
			t.Errorf("ListTokens(ws_nobody) = %v, %v", none, err)
		}
	})

	t.Run("revoke", func(t *testing.T) {
		if _, err := admin.RevokeToken(ctx, "tok_nope", time.Time{}); !errors.Is(err, keystore.ErrNotFound) {
			t.Errorf("revoking an unknown id: %v, want ErrNotFound", err)
		}
		before := time.Now().Add(-time.Second)
		rec, err := admin.RevokeToken(ctx, "tok_a", time.Time{}) // now
		if err != nil {
			t.Fatal(err)
		}
		if rec.ID != "tok_a" || rec.RevokedAt == nil || rec.RevokedAt.Before(before) || rec.RevokedAt.After(time.Now()) {
			t.Fatalf("revoked now: %+v", rec)
		}
		first := *rec.RevokedAt
		later := first.Add(time.Hour)
		again, err := admin.RevokeToken(ctx, "tok_a", later)
		if err != nil {
			t.Fatalf("revoking a revoked token: %v", err)
		}
		if again.RevokedAt == nil || !again.RevokedAt.Equal(first) {
			t.Errorf("a second revocation moved revoked_at from %v to %v", first, again.RevokedAt)
		}
		if got, _ := admin.Token(ctx, "tok_a"); got.RevokedAt == nil || !got.RevokedAt.Equal(first) {
			t.Errorf("stored revoked_at = %v, want %v", got.RevokedAt, first)
		}

		// A scheduled revocation is brought forward by an earlier one.
		scheduled := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
		if rec, err := admin.RevokeToken(ctx, "tok_b", scheduled); err != nil || !rec.RevokedAt.Equal(scheduled) {
			t.Fatalf("scheduling: %+v, %v", rec, err)
		}
		sooner := time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC)
		if rec, err := admin.RevokeToken(ctx, "tok_b", sooner); err != nil || !rec.RevokedAt.Equal(sooner) {
			t.Errorf("bringing forward: %+v, %v", rec, err)
		}
		if got, _ := admin.Token(ctx, "tok_other"); got.RevokedAt != nil {
			t.Errorf("revoking tok_a and tok_b revoked tok_other: %+v", got)
		}
	})

	t.Run("allowed_ips stored normalised, shown, refused when bad", func(t *testing.T) {
		e, _ := NewEntry(t, "tok_pinned", "ws_acme")
		e.AllowedIPs = []string{"203.0.113.0/24", "2001:db8::/32", "198.51.100.7/32"}
		if err := admin.CreateToken(ctx, e); err != nil {
			t.Fatal(err)
		}
		got, err := admin.Token(ctx, "tok_pinned")
		if err != nil || !slices.Equal(got.AllowedIPs, e.AllowedIPs) {
			t.Errorf("Token(tok_pinned).AllowedIPs = %q, %v; want %q", got.AllowedIPs, err, e.AllowedIPs)
		}
		if got, _ := admin.Token(ctx, "tok_other"); got.AllowedIPs != nil {
			t.Errorf("a token created without allowed_ips has %q", got.AllowedIPs)
		}
		for name, list := range map[string][]string{
			"not a prefix": {"203.0.113.0/33"},
			"a name":       {"example.com"},
			"a zone":       {"fe80::1%eth0"},
			"empty list":   {},
			"33 prefixes":  slices.Repeat([]string{"10.0.0.0/8"}, 33),
		} {
			bad, _ := NewEntry(t, "tok_badips", "ws_acme")
			bad.AllowedIPs = list
			if err := admin.CreateToken(ctx, bad); err == nil {
				t.Errorf("allowed_ips %s: accepted", name)
			}
		}
		if _, err := admin.Token(ctx, "tok_badips"); !errors.Is(err, keystore.ErrNotFound) {
			t.Errorf("a token with bad allowed_ips was stored: %v", err)
		}
	})

	if hashes, ok := admin.(keystore.HashRevoker); ok {
		t.Run("revoke by hash records the reason", func(t *testing.T) {
			e, h := NewEntry(t, "tok_leaked", "ws_acme")
			if err := admin.CreateToken(ctx, e); err != nil {
				t.Fatal(err)
			}
			var unknown keystore.Hash
			if _, _, err := hashes.RevokeHash(ctx, unknown, time.Time{}, keystore.RevokedLeaked); !errors.Is(err, keystore.ErrNotFound) {
				t.Errorf("an unknown hash: %v, want ErrNotFound", err)
			}
			rec, active, err := hashes.RevokeHash(ctx, h, time.Time{}, keystore.RevokedLeaked)
			if err != nil || !active || rec.ID != "tok_leaked" || rec.RevokedAt == nil || rec.RevokedReason != keystore.RevokedLeaked {
				t.Fatalf("RevokeHash = %+v, %v, %v", rec, active, err)
			}
			if got, _ := admin.Token(ctx, "tok_leaked"); got.RevokedReason != keystore.RevokedLeaked || got.RevokedAt == nil {
				t.Errorf("stored %+v", got)
			}
			// Again: not active any more, the first revocation stands.
			again, active, err := hashes.RevokeHash(ctx, h, time.Time{}, "other")
			if err != nil || active || !again.RevokedAt.Equal(*rec.RevokedAt) || again.RevokedReason != keystore.RevokedLeaked {
				t.Errorf("second RevokeHash = %+v, %v, %v", again, active, err)
			}
			// A token revoked by id has no reason.
			if got, _ := admin.Token(ctx, "tok_a"); got.RevokedReason != "" {
				t.Errorf("tok_a, revoked by id, has reason %q", got.RevokedReason)
			}
		})
	}

	sessions, ok := admin.(keystore.SessionRevoker)
	if !ok {
		return
	}
	t.Run("revoke session", func(t *testing.T) {
		if err := sessions.RevokeSession(ctx, "", time.Time{}); err == nil {
			t.Error("an empty session id was accepted")
		}
		for range 2 { // again: no error
			if err := sessions.RevokeSession(ctx, "sess_1", time.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func recordIDs(recs []keystore.TokenRecord) []string {
	ids := make([]string, len(recs))
	for i, r := range recs {
		ids[i] = r.ID
	}
	return ids
}
