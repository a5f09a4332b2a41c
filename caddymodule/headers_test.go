package caddymodule

import (
	"net/http"
	"testing"
)

func TestIdentityHeaderSpellings(t *testing.T) {
	ih, err := newIdentityHeaders(defaultHeaderPrefix)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		want bool
	}{
		{"X-Deplo-Subject", true},
		{"x-deplo-subject", true},
		{"X_Deplo_Subject", true},
		{"X.Deplo.Scopes", true},
		{"x_DEPLO-workspace", true},
		{"X-Deplo-", true},
		{"X-Deplo-Anything-New", true},
		{"X-Deplo", false},
		{"X-Deplomat", false},
		{"X-Deplo Subject", false},
		{"Accept", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := ih.matches(tt.name); got != tt.want {
			t.Errorf("matches(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// BenchmarkStripIdentityHeaders is the strip every request pays before any
// decision, on the dozen headers of BenchmarkServeHTTP's request: a walk
// over the header map, so its cost grows with the number of headers.
func BenchmarkStripIdentityHeaders(b *testing.B) {
	ih, err := newIdentityHeaders(defaultHeaderPrefix)
	if err != nil {
		b.Fatal(err)
	}
	base := http.Header{}
	for k, v := range map[string]string{
		"User-Agent": "deplo-cli/1.4.2", "Accept": "application/json", "Accept-Encoding": "gzip",
		"Content-Type": "application/json", "Content-Length": "128", "X-Request-Id": "req_8f2a1c",
		"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https", "Traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"Connection": "keep-alive", "Authorization": "Bearer sk_live_x", "Host": "api.deplo.sh",
	} {
		base.Set(k, v)
	}
	r := &http.Request{Header: base}
	b.ReportAllocs()
	for b.Loop() {
		ih.strip(r) // nothing to remove: the map stays as it is
	}
}
