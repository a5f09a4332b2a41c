package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/deplo-sh/deplo-auth/apikey"
	"github.com/deplo-sh/deplo-auth/keystore"
)

// TestCommandRotateAndRevokeCreatedBy in store mode: create records the
// operator; rotate --self with $DEPLO_KEY prints the new token once and
// ends the old one after --grace; a second rotation of the old one is
// reuse; revoke --created-by revokes a parent's children, not the parent.
func TestCommandRotateAndRevokeCreatedBy(t *testing.T) {
	path := t.TempDir() + "/keys.json"
	t.Setenv(keysFileEnv, path)
	ctx := context.Background()
	admin := &keystore.FileTokenManager{Path: path}
	out, err := runDeploAuth(t, "token", "create", "--admin", "off", "--workspace", "ws_acme", "--scopes", "admin", "--name", "ci")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	raw := lines[len(lines)-1]
	recs, _ := admin.ListTokens(ctx, "")
	if len(recs) != 1 || recs[0].CreatedBy == nil || recs[0].CreatedBy.Kind != keystore.CreatorOperator {
		t.Fatalf("store-mode create: %+v", recs)
	}
	old := recs[0].ID
	// Refused: no id and no --self; both; a grace past 7 days. Nothing changes.
	for _, args := range [][]string{{"token", "rotate"}, {"token", "rotate", "--self", old}, {"token", "rotate", "--grace", "200h", old}} {
		if _, err := runDeploAuth(t, append(args, "--admin", "off")...); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
	if recs, _ := admin.ListTokens(ctx, ""); len(recs) != 1 || recs[0].ExpiresAt != nil {
		t.Fatalf("a refused rotation changed the store: %+v", recs)
	}
	t.Setenv("DEPLO_KEY", raw)
	out, err = runDeploAuth(t, "token", "rotate", "--admin", "off", "--self", "--grace", "1h")
	if err != nil {
		t.Fatal(err)
	}
	newRaw := strings.TrimSpace(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:])
	if apikey.Check(newRaw, true) != nil || strings.Count(out, newRaw) != 1 || strings.Contains(out, raw) {
		t.Fatalf("rotate --self printed:\n%s", out)
	}
	rec, _ := admin.Token(ctx, old)
	if rec.ExpiresAt == nil || time.Until(*rec.ExpiresAt) > time.Hour || time.Until(*rec.ExpiresAt) < 59*time.Minute {
		t.Fatalf("the old token after --grace 1h: %+v", rec)
	}
	if _, err := runDeploAuth(t, "token", "rotate", "--admin", "off", old); err == nil || !strings.Contains(err.Error(), "rotated before") {
		t.Fatalf("a second rotation: %v", err)
	}
	if rec, _ := admin.Token(ctx, old); rec.RevokedAt == nil {
		t.Fatal("reuse left the old token working")
	}
	// --created-by.
	parentRaw, _ := apikey.Generate()
	parent := keystore.TokenEntry{ID: "tok_parent", Hash: apikey.Sum(parentRaw).String(), Workspace: "ws_acme", Scopes: []string{"admin"}}
	child := keystore.TokenEntry{ID: "tok_child", Hash: apikey.Sum(raw + "x").String(), Workspace: "ws_acme", Scopes: []string{"read"},
		CreatedBy: &keystore.Creator{Kind: keystore.CreatorAPIKey, ID: "tok_parent"}}
	for _, e := range []keystore.TokenEntry{parent, child} {
		if err := admin.CreateToken(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := runDeploAuth(t, "token", "revoke", "--admin", "off", "--created-by", "tok_parent"); err == nil {
		t.Error("--created-by without --workspace accepted")
	}
	out, err = runDeploAuth(t, "token", "revoke", "--admin", "off", "--workspace", "ws_acme", "--created-by", "tok_parent")
	if err != nil || !strings.Contains(out, "revoked 1 tokens") || !strings.Contains(out, "tok_child") {
		t.Fatalf("revoke --created-by: %v\n%s", err, out)
	}
	if rec, _ := admin.Token(ctx, "tok_parent"); rec.RevokedAt != nil {
		t.Error("--created-by revoked the creator")
	}
	if rec, _ := admin.Token(ctx, "tok_child"); rec.RevokedAt == nil {
		t.Error("--created-by left the child working")
	}
}
