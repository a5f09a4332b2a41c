package integration

import (
	"strconv"
	"testing"
)

// TestThrottle is the 429 row of the refusal table: past its failure budget a
// client gets 429 with Retry-After, before any store lookup, unless its
// credential is one the caches already hold as valid (this one is not yet).
func TestThrottle(t *testing.T) {
	read := newToken(t, "tok_t_read", "ws_acme", "", "read")
	e := startWith(t, []string{"throttle 3 1m"}, read)
	ws := "/v1/workspaces/ws_acme/projects"
	for i := 0; i < 3; i++ {
		if resp, _ := e.do("GET", ws, "Bearer "+newToken(t, "x", "ws_acme", "").Raw); resp.StatusCode != 401 {
			t.Fatalf("failure %d: %d", i, resp.StatusCode)
		}
	}
	resp, body := e.do("GET", ws, "Bearer "+read.Raw)
	if resp.StatusCode != 429 {
		t.Fatalf("after 3 failures: %d %s", resp.StatusCode, body)
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || s < 1 {
		t.Errorf("Retry-After %q", resp.Header.Get("Retry-After"))
	}
	if resp.Header.Get("WWW-Authenticate") != "" {
		t.Error("429 with a challenge")
	}
	if body != `{"error":"too_many_requests","error_description":"too many failed authentications from this client; retry later"}` {
		t.Errorf("body %s", body)
	}
	if got := e.up.take(); len(got) != 0 {
		t.Fatal("a throttled request reached the upstream")
	}
	if m := scrape(t); metricValue(m, `deplo_auth_requests_total{method="none",outcome="denied",reason="throttled"}`) < 1 {
		t.Error("throttled requests not counted")
	}
}
