package tokenapi

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deplo-sh/deplo-auth/apikey"
	"github.com/deplo-sh/deplo-auth/grant"
	"github.com/deplo-sh/deplo-auth/keystore"
)

const coll = "/v1/workspaces/ws_acme/tokens"

// shownToken is a token as an answer shows it.
type shownToken struct {
	ID          string            `json:"id"`
	Token       string            `json:"token"`
	ExpiresAt   *time.Time        `json:"expires_at"`
	RevokedAt   *time.Time        `json:"revoked_at"`
	CreatedBy   *keystore.Creator `json:"created_by"`
	RotatedFrom *string           `json:"rotated_from"`
}

func decodeToken(t *testing.T, a Answer) shownToken {
	t.Helper()
	var s shownToken
	if err := json.Unmarshal(a.Body, &s); err != nil {
		t.Fatalf("answer %d %q: %v", a.Status, a.Body, err)
	}
	return s
}

// record returns the stored entry with the given id (nil: none).
func (f *fixture) record(t *testing.T, id string) *keystore.TokenEntry {
	t.Helper()
	for _, e := range f.tokens(t) {
		if e.ID == id {
			return &e
		}
	}
	return nil
}

// caller stores an API token and returns it as a verified principal.
func (f *fixture) caller(t *testing.T, id string, scopes grant.ScopeSet, expires *time.Time) *grant.Principal {
	t.Helper()
	raw, _ := apikey.Generate()
	e := keystore.TokenEntry{ID: id, Name: id, Hash: apikey.Sum(raw).String(), Workspace: "ws_acme",
		Scopes: scopes.Names(), CreatedAt: f.now.Add(-time.Hour), ExpiresAt: expires}
	if err := f.svc.Store.CreateToken(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	return &grant.Principal{Kind: grant.KindAPIKey, Subject: id, Workspace: "ws_acme", Scopes: scopes}
}

func (f *fixture) send(t *testing.T, who *grant.Principal, session, method, path, query, ctype, body string) Answer {
	t.Helper()
	target, ok := base.Match(path)
	if !ok {
		t.Fatalf("%s is not under the base", path)
	}
	return f.svc.Serve(context.Background(), &Request{Method: method, Target: target, Caller: who,
		ContentType: ctype, Body: strings.NewReader(body), Query: query, CallerSession: session})
}

func TestLineageRecordedAndCapped(t *testing.T) {
	f := newFixture(t)
	parentEnd := f.now.Add(time.Hour)
	parent := f.caller(t, "tok_parent", grant.ScopeAdmin, &parentEnd)
	for _, c := range []struct {
		name, body string
		want       time.Time
	}{
		{"no expiry asked", `{"name":"c","scopes":["read"]}`, parentEnd},
		{"a later expiry asked", `{"name":"c","scopes":["read"],"expires_at":"2027-01-01T00:00:00Z"}`, parentEnd},
		{"an earlier expiry asked", `{"name":"c","scopes":["read"],"expires_at":"2026-11-30T12:30:00Z"}`, f.now.Add(30 * time.Minute)},
	} {
		a := f.send(t, parent, "", "POST", coll, "", "application/json", c.body)
		got := decodeToken(t, a)
		if a.Status != 201 || got.ExpiresAt == nil || !got.ExpiresAt.Equal(c.want) {
			t.Errorf("%s: %d, expires_at %v, want %v", c.name, a.Status, got.ExpiresAt, c.want)
		}
		if got.CreatedBy == nil || *got.CreatedBy != (keystore.Creator{Kind: "api_key", ID: "tok_parent"}) {
			t.Errorf("%s: created_by %+v", c.name, got.CreatedBy)
		}
		if rec := f.record(t, got.ID); rec == nil || rec.ExpiresAt == nil || !rec.ExpiresAt.Equal(c.want) {
			t.Errorf("%s: stored %+v", c.name, rec)
		}
	}
	// A session's token records the session, and get and list show it.
	a := f.send(t, admin, "sid_1", "POST", coll, "", "application/json", `{"name":"s","scopes":["read"]}`)
	s := decodeToken(t, a)
	want := keystore.Creator{Kind: "jwt", Subject: "user_42", Session: "sid_1"}
	if a.Status != 201 || s.CreatedBy == nil || *s.CreatedBy != want || s.ExpiresAt != nil {
		t.Fatalf("session create: %d %s", a.Status, a.Body)
	}
	if g := decodeToken(t, f.send(t, admin, "", "GET", coll+"/"+s.ID, "", "", "")); g.CreatedBy == nil || *g.CreatedBy != want {
		t.Errorf("get: created_by %+v", g.CreatedBy)
	}
	list := f.send(t, admin, "", "GET", coll, "", "", "")
	if !strings.Contains(string(list.Body), `"created_by":{"kind":"jwt","subject":"user_42","session":"sid_1"}`) ||
		!strings.Contains(string(list.Body), `"created_by":null`) {
		t.Errorf("list does not show created_by: %s", list.Body)
	}
	// Revoking the parent revokes its children.
	if a := f.send(t, admin, "", "DELETE", coll+"/tok_parent", "", "", ""); a.Status != 204 {
		t.Fatal(a.Status)
	}
	for _, e := range f.tokens(t) {
		if e.CreatedBy.Parent() == "tok_parent" && e.RevokedAt == nil {
			t.Errorf("child %s of a revoked parent is not revoked", e.ID)
		}
	}
}

// revokingStore revokes the caller's own token just before the write: the
// instant between deplo_auth's check of the caller and the store's.
type revokingStore struct {
	keystore.TokenManager
	caller string
	at     time.Time
}

func (r revokingStore) Create(ctx context.Context, e keystore.TokenEntry, opt keystore.CreateOptions) (keystore.TokenEntry, error) {
	if _, err := r.TokenManager.RevokeToken(ctx, r.caller, r.at); err != nil {
		return keystore.TokenEntry{}, err
	}
	return r.TokenManager.Create(ctx, e, opt)
}

func TestCreatorRevokedBeforeTheWrite(t *testing.T) {
	f := newFixture(t)
	who := f.caller(t, "tok_doomed", grant.ScopeAdmin, nil)
	f.svc.Store = revokingStore{f.svc.Store, "tok_doomed", f.now}
	before := len(f.tokens(t))
	a := f.send(t, who, "", "POST", coll, "", "application/json", `{"name":"x","scopes":["read"]}`)
	if code, _ := errorOf(t, a); a.Status != 401 || code != "invalid_token" || a.Op.Result != ResultCreatorInactive {
		t.Fatalf("%d %s %+v", a.Status, a.Body, a.Op)
	}
	if n := len(f.tokens(t)); n != before {
		t.Fatalf("a revoked creator created a token (%d tokens, had %d)", n, before)
	}
}

func TestRevokeCreatedBy(t *testing.T) {
	f := newFixture(t)
	parent := f.caller(t, "tok_parent", grant.ScopeAdmin, nil)
	mk := func(who *grant.Principal, session string) string {
		a := f.send(t, who, session, "POST", coll, "", "application/json", `{"name":"x","scopes":["read"]}`)
		if a.Status != 201 {
			t.Fatalf("%d %s", a.Status, a.Body)
		}
		return decodeToken(t, a).ID
	}
	child, s1, s2 := mk(parent, ""), mk(admin, "sid_1"), mk(admin, "sid_2")
	before := f.tokens(t)
	for _, c := range []struct {
		name, query string
		who         *grant.Principal
		status      int
		revoked     []string
	}{
		{"no created_by", "", admin, 400, nil},
		{"twice", "created_by=tok_parent&created_by=tok_x", admin, 400, nil},
		{"another parameter", "created_by=tok_parent&x=1", admin, 400, nil},
		{"bad form", "created_by=sk_live_x", admin, 400, nil},
		{"empty session", "created_by=session:", admin, 400, nil},
		{"not admin", "created_by=tok_parent", deployer, 403, nil},
		{"another workspace's admin", "created_by=tok_parent", otherAdmin, 403, nil},
	} {
		a := f.send(t, c.who, "", "DELETE", coll, c.query, "", "")
		if a.Status != c.status || a.Op == nil || a.Op.Result == ResultOK {
			t.Errorf("%s: %d %s", c.name, a.Status, a.Body)
		}
		if !slices.EqualFunc(f.tokens(t), before, func(x, y keystore.TokenEntry) bool {
			return x.ID == y.ID && (x.RevokedAt == nil) == (y.RevokedAt == nil)
		}) {
			t.Fatalf("%s: a refused revoke-by-creator changed the store", c.name)
		}
	}
	for _, c := range []struct {
		query string
		want  []string
	}{
		{"created_by=tok_parent", []string{child}},
		{"created_by=session:sid_1", []string{s1}},
		{"created_by=user:user_42", []string{s2}},
		{"created_by=user:user_42", []string{}},
	} {
		a := f.send(t, admin, "", "DELETE", coll, c.query, "", "")
		var doc struct{ Revoked []string }
		if err := json.Unmarshal(a.Body, &doc); a.Status != 200 || err != nil || !slices.Equal(doc.Revoked, c.want) {
			t.Errorf("%s: %d %s, want revoked %v", c.query, a.Status, a.Body, c.want)
		}
	}
	if rec := f.record(t, "tok_parent"); rec.RevokedAt != nil {
		t.Error("revoking what tok_parent created revoked tok_parent")
	}
}

func TestRotate(t *testing.T) {
	f := newFixture(t)
	ci := f.caller(t, "tok_ci", grant.ScopeDeploy|grant.ScopeRead, nil)
	before := len(f.tokens(t))
	refused := []struct {
		name        string
		who         *grant.Principal
		method      string
		path, ctype string
		body        string
		status      int
	}{
		{"grace over 7 days", admin, "POST", coll + "/tok_ci/rotate", "application/json", `{"grace":"169h"}`, 400},
		{"negative grace", admin, "POST", coll + "/tok_ci/rotate", "application/json", `{"grace":"-1s"}`, 400},
		{"grace not a duration", admin, "POST", coll + "/tok_ci/rotate", "application/json", `{"grace":"soon"}`, 400},
		{"grace a number", admin, "POST", coll + "/tok_ci/rotate", "application/json", `{"grace":3600}`, 400},
		{"grace twice", admin, "POST", coll + "/tok_ci/rotate", "application/json", `{"grace":"1h","grace":"0s"}`, 400},
		{"unknown field", admin, "POST", coll + "/tok_ci/rotate", "application/json", `{"Grace":"1h"}`, 400},
		{"body not JSON typed", admin, "POST", coll + "/tok_ci/rotate", "text/plain", `{"grace":"1h"}`, 415},
		{"GET", admin, "GET", coll + "/tok_ci/rotate", "", ``, 405},
		{"a stronger token", deployer, "POST", coll + "/tok_pa/rotate", "", ``, 403},
		{"an admin token by a reader", reader, "POST", coll + "/tok_pa/rotate", "", ``, 403},
		{"another workspace's token", admin, "POST", coll + "/tok_other/rotate", "", ``, 404},
		{"unknown token", admin, "POST", coll + "/tok_nope/rotate", "", ``, 404},
		{"another project's token", projAgent, "POST", coll + "/tok_ci/rotate", "", ``, 404},
		{"self by a session", admin, "POST", coll + "/self/rotate", "", ``, 403},
		{"self of another workspace", otherAdmin, "POST", coll + "/self/rotate", "", ``, 403},
	}
	for _, c := range refused {
		a := f.send(t, c.who, "", c.method, c.path, "", c.ctype, c.body)
		if a.Status != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, a.Status, a.Body, c.status)
		}
		if n := len(f.tokens(t)); n != before || f.record(t, "tok_ci").RevokedAt != nil || f.record(t, "tok_ci").ExpiresAt != nil {
			t.Fatalf("%s: a refused rotation changed the store", c.name)
		}
	}
	// A rotation with a one-hour overlap.
	a := f.send(t, admin, "", "POST", coll+"/tok_ci/rotate", "", "application/json", `{"grace":"1h"}`)
	nw := decodeToken(t, a)
	if a.Status != 201 || nw.RotatedFrom == nil || *nw.RotatedFrom != "tok_ci" || !strings.HasPrefix(nw.Token, "sk_live_") ||
		a.Header.Get("Location") != coll+"/"+nw.ID || a.Op.Name != OpRotate || a.Op.NewTokenID != nw.ID {
		t.Fatalf("rotate: %d %s %+v", a.Status, a.Body, a.Op)
	}
	if old := f.record(t, "tok_ci"); old.ExpiresAt == nil || !old.ExpiresAt.Equal(f.now.Add(time.Hour)) || old.RevokedAt != nil {
		t.Errorf("the old token after a 1h grace: %+v", old)
	}
	// Reuse: rotating tok_ci again revokes it and its successor.
	a = f.send(t, ci, "", "POST", coll+"/self/rotate", "", "", "")
	if code, _ := errorOf(t, a); a.Status != 409 || code != "token_reused" || a.Op.Result != ResultReused || len(a.Op.Revoked) != 2 {
		t.Fatalf("reuse: %d %s %+v", a.Status, a.Body, a.Op)
	}
	for _, id := range []string{"tok_ci", nw.ID} {
		if rec := f.record(t, id); rec.RevokedAt == nil {
			t.Errorf("%s works after the reuse", id)
		}
	}
	// A token rotates itself, at once without a body.
	self := f.caller(t, "tok_self", grant.ScopeRead, nil)
	a = f.send(t, self, "", "POST", coll+"/self/rotate", "", "", "")
	if got := decodeToken(t, a); a.Status != 201 || got.RotatedFrom == nil || *got.RotatedFrom != "tok_self" {
		t.Fatalf("self rotate: %d %s", a.Status, a.Body)
	}
	if rec := f.record(t, "tok_self"); rec.RevokedAt == nil || !rec.RevokedAt.Equal(f.now) {
		t.Errorf("after a rotation without grace the old token is %+v", rec)
	}
	// A revoked token rotates nothing.
	a = f.send(t, admin, "", "POST", coll+"/tok_self/rotate", "", "", "")
	if code, _ := errorOf(t, a); a.Status != 409 || code != "token_reused" {
		t.Errorf("rotating a rotated (revoked) token: %d %s", a.Status, a.Body)
	}
}

func TestLimits(t *testing.T) {
	create := func(f *fixture, who *grant.Principal) Answer {
		return f.send(t, who, "", "POST", coll, "", "application/json", `{"name":"x","scopes":["read"]}`)
	}
	t.Run("create_rate", func(t *testing.T) {
		f := newFixture(t)
		rate, err := NewCreateRate(2, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		f.svc.Limits.CreateRate = rate
		for i := range 2 {
			if a := create(f, admin); a.Status != 201 {
				t.Fatalf("create %d: %d", i+1, a.Status)
			}
		}
		before := len(f.tokens(t))
		a := create(f, admin)
		if a.Status != 429 || a.Header.Get("Retry-After") != "30" || a.Op.Result != ResultRateLimited {
			t.Fatalf("third create: %d %v %s", a.Status, a.Header, a.Body)
		}
		rot := f.send(t, admin, "", "POST", coll+"/tok_ws/rotate", "", "", "")
		if rot.Status != 429 {
			t.Errorf("a rotation past the rate: %d", rot.Status)
		}
		if n := len(f.tokens(t)); n != before {
			t.Fatal("a create past the rate stored a token")
		}
		if a := create(f, f.caller(t, "tok_fresh", grant.ScopeAdmin, nil)); a.Status != 201 {
			t.Errorf("another credential is limited too: %d", a.Status)
		}
	})
	t.Run("max_tokens", func(t *testing.T) {
		f := newFixture(t)
		f.svc.Limits.MaxTokens = 7 // ws_acme holds 6 live tokens: room for one
		if a := create(f, admin); a.Status != 201 {
			t.Fatalf("the last token allowed: %d %s", a.Status, a.Body)
		}
		before := len(f.tokens(t))
		a := create(f, admin)
		if code, _ := errorOf(t, a); a.Status != 409 || code != "limit_reached" {
			t.Fatalf("past max_tokens: %d %s", a.Status, a.Body)
		}
		if n := len(f.tokens(t)); n != before {
			t.Fatal("a create past max_tokens stored a token")
		}
		// A rotation without grace adds no live token; with grace it does.
		if a := f.send(t, admin, "", "POST", coll+"/tok_ws/rotate", "", "application/json", `{"grace":"1m"}`); a.Status != 409 {
			t.Errorf("a rotation with grace past max_tokens: %d %s", a.Status, a.Body)
		}
		if a := f.send(t, admin, "", "POST", coll+"/tok_ws/rotate", "", "", ""); a.Status != 201 {
			t.Errorf("a rotation without grace at max_tokens: %d %s", a.Status, a.Body)
		}
	})
	t.Run("max_lifetime", func(t *testing.T) {
		f := newFixture(t)
		f.svc.Limits.MaxLifetime = 24 * time.Hour
		for _, body := range []string{`{"name":"x","scopes":["read"]}`, `{"name":"x","scopes":["read"],"expires_at":"2030-01-01T00:00:00Z"}`} {
			a := f.send(t, admin, "", "POST", coll, "", "application/json", body)
			if got := decodeToken(t, a); a.Status != 201 || got.ExpiresAt == nil || !got.ExpiresAt.Equal(f.now.Add(24*time.Hour)) {
				t.Errorf("%s: %d, expires %v", body, a.Status, got.ExpiresAt)
			}
		}
		a := f.send(t, admin, "", "POST", coll, "", "application/json", `{"name":"x","scopes":["read"],"expires_at":"2026-11-30T13:00:00Z"}`)
		if got := decodeToken(t, a); got.ExpiresAt == nil || !got.ExpiresAt.Equal(f.now.Add(time.Hour)) {
			t.Errorf("an earlier expiry was not kept: %v", got.ExpiresAt)
		}
	})
}
