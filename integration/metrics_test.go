package integration

import (
	"strings"
	"testing"
)

// TestMetricsExact sends a scripted mix of requests through Caddy and checks
// that each counter moved by exactly the expected amount with the expected
// labels, then that a config reload keeps the counts.
func TestMetricsExact(t *testing.T) {
	read := newToken(t, "tok_m_read", "ws_acme", "", "read")
	agent := newToken(t, "tok_m_agent", "ws_acme", "weekly-report", "deploy")
	unknown := newToken(t, "tok_m_unknown", "ws_acme", "", "read") // never stored
	e := start(t, read, agent)
	ws := "/v1/workspaces/ws_acme"

	type sample = string
	watched := []sample{
		`deplo_auth_requests_total{method="api_key",outcome="allowed",reason="allowed"}`,
		`deplo_auth_requests_total{method="api_key",outcome="denied",reason="insufficient_scope"}`,
		`deplo_auth_requests_total{method="api_key",outcome="denied",reason="project_mismatch"}`,
		`deplo_auth_requests_total{method="api_key",outcome="denied",reason="unknown_token"}`,
		`deplo_auth_requests_total{method="api_key",outcome="denied",reason="malformed_token"}`,
		`deplo_auth_requests_total{method="none",outcome="denied",reason="no_credential"}`,
		`deplo_auth_requests_total{method="none",outcome="allowed",reason="public"}`,
		`deplo_auth_cache_lookups_total{result="miss"}`,
		`deplo_auth_cache_lookups_total{result="hit"}`,
		`deplo_auth_cache_lookups_total{result="negative_hit"}`,
		`deplo_auth_store_requests_total{result="found",store="file"}`,
		`deplo_auth_store_requests_total{result="not_found",store="file"}`,
		`deplo_auth_decision_duration_seconds_count{method="api_key"}`,
	}
	snapshot := func() map[sample]float64 {
		body := scrape(t)
		m := map[sample]float64{}
		for _, w := range watched {
			m[w] = metricValue(body, w)
		}
		return m
	}

	before := snapshot()
	// The script. Cache state: a token's first use is a miss, later ones hits.
	steps := []struct {
		method, path, auth string
		status             int
	}{
		{"GET", ws + "/projects", "Bearer " + read.Raw, 200},                             // miss, found
		{"GET", ws + "/projects", "Bearer " + read.Raw, 200},                             // hit
		{"GET", ws + "/projects", "Bearer " + read.Raw, 200},                             // hit
		{"POST", ws + "/projects/p1/deployments", "Bearer " + read.Raw, 403},             // hit, insufficient_scope
		{"POST", ws + "/projects/weekly-report/deployments", "Bearer " + agent.Raw, 200}, // miss, found
		{"POST", ws + "/projects/billing/deployments", "Bearer " + agent.Raw, 403},       // hit, project_mismatch
		{"GET", ws + "/projects", "Bearer " + unknown.Raw, 401},                          // miss, not_found
		{"GET", ws + "/projects", "Bearer " + unknown.Raw, 401},                          // negative hit
		{"GET", ws + "/projects", "Bearer sk_live_short", 401},                           // malformed, no lookup
		{"GET", ws + "/projects", "", 401},                                               // no credential
		{"GET", "/healthz", "", 200},                                                     // public
	}
	for i, st := range steps {
		var auth []string
		if st.auth != "" {
			auth = []string{st.auth}
		}
		if resp, body := e.do(st.method, st.path, auth...); resp.StatusCode != st.status {
			t.Fatalf("step %d: %d, want %d: %s", i, resp.StatusCode, st.status, body)
		}
	}
	e.up.take()
	want := map[sample]float64{
		watched[0]: 4, watched[1]: 1, watched[2]: 1, watched[3]: 2, watched[4]: 1, watched[5]: 1, watched[6]: 1,
		watched[7]: 3, watched[8]: 4, watched[9]: 1,
		watched[10]: 2, watched[11]: 1,
		watched[12]: 9, // every api_key decision: 4 allowed + 2 denied by policy + 2 unknown + 1 malformed
	}
	after := snapshot()
	for _, w := range watched {
		if got := after[w] - before[w]; got != want[w] {
			t.Errorf("%s moved by %v, want %v", w, got, want[w])
		}
	}

	// A config reload (same config, a comment changed) keeps the counts.
	load(t, e.tester, caddyfile(e.keysFile, e.up.addr(), e.logDir)+"\n# reloaded\n")
	reloaded := snapshot()
	for _, w := range watched {
		if reloaded[w] != after[w] {
			t.Errorf("%s is %v after a reload, was %v", w, reloaded[w], after[w])
		}
	}
	if !strings.Contains(scrape(t), "deplo_auth_requests_total") {
		t.Fatal("metrics gone after reload")
	}
}
