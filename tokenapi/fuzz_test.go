package tokenapi

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/deplo-sh/deplo-auth/grant"
)

// FuzzServe drives Serve with any method, path tail, body and caller, and
// checks the rules that must hold whatever the input: a token is created
// only on 201 and never beyond the caller's scopes or project, and no
// answer shows a stored hash.
func FuzzServe(f *testing.F) {
	f.Add("POST", "", `{"name":"x","scopes":["read"]}`, uint8(grant.ScopeRead), "")
	f.Add("POST", "", `{"name":"x","scopes":["admin"],"project":"weekly-report"}`, uint8(grant.ScopeDeploy), "weekly-report")
	f.Add("DELETE", "/tok_other", ``, uint8(grant.ScopeAdmin), "")
	f.Add("GET", "/tok_proj", ``, uint8(grant.ScopeRead), "weekly-report")
	f.Add("GET", "/../tok_other", ``, uint8(grant.ScopeAdmin), "")
	f.Fuzz(func(t *testing.T, method, tail, body string, scopes uint8, project string) {
		fx := newFixture(t)
		who := &grant.Principal{Kind: grant.KindAPIKey, Subject: "tok_f", Workspace: "ws_acme", Project: project,
			Scopes: grant.ScopeSet(scopes) & (grant.ScopeRead | grant.ScopeDeploy | grant.ScopeDelete | grant.ScopeAdmin)}
		path := "/v1/workspaces/ws_acme/tokens" + tail
		target, ok := base.Match(path)
		if !ok {
			return
		}
		before := fx.tokens(t)
		a := fx.svc.Serve(t.Context(), &Request{Method: method, Target: target, Caller: who, ContentType: "application/json", Body: strings.NewReader(body)})
		if strings.Contains(string(a.Body), "sha256:") {
			t.Fatalf("answer shows a hash: %s", a.Body)
		}
		after := fx.tokens(t)
		if a.Status != 201 {
			if len(after) != len(before) {
				t.Fatalf("status %d but the key file went from %d to %d tokens", a.Status, len(before), len(after))
			}
			return
		}
		if len(after) != len(before)+1 {
			t.Fatalf("201 but the key file went from %d to %d tokens", len(before), len(after))
		}
		var got struct {
			Scopes  []string
			Project *string
		}
		if err := json.Unmarshal(a.Body, &got); err != nil {
			t.Fatal(err)
		}
		granted, _ := grant.ParseScopeNames(got.Scopes)
		if who.Scopes&grant.ScopeAdmin == 0 && !who.Scopes.Has(granted) {
			t.Fatalf("caller %s granted %s", who.Scopes, granted)
		}
		if project != "" && (got.Project == nil || *got.Project != project) {
			t.Fatalf("project caller %q created a token of project %v", project, got.Project)
		}
	})
}
