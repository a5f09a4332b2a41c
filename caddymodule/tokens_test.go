package caddymodule

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestUnmarshalTokensCaddyfile(t *testing.T) {
	tests := []struct {
		name, input, want, err string
	}{
		{"base", "deplo_auth_tokens {\n base /v1/workspaces/{workspace}/tokens\n}", `{"base":"/v1/workspaces/{workspace}/tokens"}`, ""},
		{"no base", "deplo_auth_tokens", "", "base is required"},
		{"empty block", "deplo_auth_tokens {\n}", "", "base is required"},
		{"argument", "deplo_auth_tokens /v1/x {\n base /v1/{workspace}/tokens\n}", "", "wrong argument count"},
		{"base twice", "deplo_auth_tokens {\n base /a/{workspace}\n base /b/{workspace}\n}", "", "base given twice"},
		{"base without workspace", "deplo_auth_tokens {\n base /v1/tokens\n}", "", "{workspace} exactly once"},
		{"base with another wildcard", "deplo_auth_tokens {\n base /v1/{workspace}/{project}/tokens\n}", "", "the only wildcard is {workspace}"},
		{"base with a trailing slash", "deplo_auth_tokens {\n base /v1/{workspace}/tokens/\n}", "", "trailing /"},
		{"base with two arguments", "deplo_auth_tokens {\n base /v1/{workspace}/tokens extra\n}", "", "wrong argument count"},
		{"unknown subdirective", "deplo_auth_tokens {\n base /v1/{workspace}/tokens\n keys file x.json\n}", "", `unknown subdirective "keys"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h TokensHandler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(h)
			if string(got) != tt.want {
				t.Errorf("JSON %s, want %s", got, tt.want)
			}
		})
	}
}
