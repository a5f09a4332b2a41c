package decide

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

func mustRanges(t testing.TB, ss ...string) Ranges {
	t.Helper()
	r, err := ParseRanges(ss)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestParseRanges(t *testing.T) {
	r := mustRanges(t, "10.1.2.3/8", "192.0.2.7", "::1", "fd00::/8")
	for _, c := range []struct {
		addr string
		in   bool
	}{
		{"10.200.0.1", true}, {"11.0.0.1", false}, {"192.0.2.7", true}, {"192.0.2.8", false},
		{"::1", true}, {"::2", false}, {"fd12::5", true}, {"::ffff:10.0.0.1", true}, {"fe80::1%eth0", false},
	} {
		if got := r.Contains(netip.MustParseAddr(c.addr)); got != c.in {
			t.Errorf("Contains(%s) = %v", c.addr, got)
		}
	}
	for _, bad := range []string{"localhost", "10.0.0.0/33", "", "10.0.0.1:80", "10.0.0.0/8/8"} {
		if _, err := ParseRanges([]string{"::1", bad}); err == nil || !strings.Contains(err.Error(), `"`+bad+`"`) {
			t.Errorf("ParseRanges(%q) = %v, want an error naming it", bad, err)
		}
	}
}

func TestTrusts(t *testing.T) {
	loop := mustRanges(t, "127.0.0.0/8", "::1")
	for _, c := range []struct {
		unix   bool
		remote string
		want   bool
	}{
		{true, "@", true}, {true, "", true},
		{false, "127.0.0.1:5000", true}, {false, "[::1]:5000", true}, {false, "[::ffff:127.0.0.2]:1", true},
		{false, "192.0.2.1:5000", false}, {false, "", false}, {false, "@", false}, {false, "127.0.0.1", false},
	} {
		if got := loop.Trusts(CallerOf(c.unix, c.remote)); got != c.want {
			t.Errorf("unix=%v %q: Trusts = %v, want %v", c.unix, c.remote, got, c.want)
		}
	}
}

// TestClientOf: the rightmost X-Forwarded-For entry outside the trusted
// proxies; all inside → the leftmost; else X-Real-IP; else the caller.
func TestClientOf(t *testing.T) {
	lb := mustRanges(t, "127.0.0.0/8", "10.0.0.0/8", "2001:db8:ffff::/48")
	tcp := CallerOf(false, "127.0.0.1:4000")
	for _, c := range []struct {
		name    string
		h       http.Header
		caller  Caller
		proxies Ranges
		want    string
	}{
		{"caller only", nil, tcp, lb, "127.0.0.1"},
		{"unix caller only", nil, CallerOf(true, "@"), lb, "invalid IP"},
		{"one entry", http.Header{"X-Forwarded-For": {"198.51.100.7"}}, tcp, lb, "198.51.100.7"},
		{"behind the balancer", http.Header{"X-Forwarded-For": {"198.51.100.7, 10.0.0.5"}}, tcp, lb, "198.51.100.7"},
		{"spoofed entries left of the client are never read", http.Header{"X-Forwarded-For": {"203.0.113.9, 198.51.100.7, 10.0.0.5"}}, tcp, lb, "198.51.100.7"},
		{"a trusted-looking spoof left of the client", http.Header{"X-Forwarded-For": {"10.9.9.9, 198.51.100.7, 10.0.0.5"}}, tcp, lb, "198.51.100.7"},
		{"several lines read as one list", http.Header{"X-Forwarded-For": {"203.0.113.9", "198.51.100.7,10.0.0.5", "10.0.0.6"}}, tcp, lb, "198.51.100.7"},
		{"without trusted proxies the last entry", http.Header{"X-Forwarded-For": {"198.51.100.7, 10.0.0.5"}}, tcp, nil, "10.0.0.5"},
		{"all inside: the leftmost", http.Header{"X-Forwarded-For": {"10.0.0.9, 127.0.0.1, 10.0.0.5"}}, tcp, lb, "10.0.0.9"},
		{"garbage ends the walk", http.Header{"X-Forwarded-For": {"198.51.100.7, nonsense, 10.0.0.5"}}, tcp, lb, "10.0.0.5"},
		{"garbage only: X-Real-IP", http.Header{"X-Forwarded-For": {"unknown"}, "X-Real-Ip": {"198.51.100.8"}}, tcp, lb, "198.51.100.8"},
		{"empty entry ends the walk", http.Header{"X-Forwarded-For": {"198.51.100.7,"}}, tcp, lb, "127.0.0.1"},
		{"a port is not an address", http.Header{"X-Forwarded-For": {"198.51.100.7:443"}}, tcp, lb, "127.0.0.1"},
		{"mapped", http.Header{"X-Forwarded-For": {"::ffff:198.51.100.7"}}, tcp, lb, "198.51.100.7"},
		{"zone dropped", http.Header{"X-Forwarded-For": {"fe80::1%eth0"}}, tcp, lb, "fe80::1"},
		{"IPv6 balancer", http.Header{"X-Forwarded-For": {"2001:db8:1::7, 2001:db8:ffff::1"}}, tcp, lb, "2001:db8:1::7"},
		{"X-Real-IP", http.Header{"X-Real-Ip": {" 198.51.100.8 "}}, tcp, lb, "198.51.100.8"},
		{"two X-Real-IP", http.Header{"X-Real-Ip": {"198.51.100.8", "198.51.100.9"}}, tcp, lb, "127.0.0.1"},
		{"X-Forwarded-For before X-Real-IP", http.Header{"X-Forwarded-For": {"198.51.100.7"}, "X-Real-Ip": {"198.51.100.8"}}, tcp, lb, "198.51.100.7"},
	} {
		got := ClientOf(c.h, c.caller, c.proxies)
		if got.String() != c.want {
			t.Errorf("%s: ClientOf = %s, want %s", c.name, got, c.want)
		}
	}
}

// FuzzClientOf: whatever the headers, the client is one of the addresses
// they or the caller hold, never an entry left of the rightmost address
// outside the proxies, and ClientOf never panics.
func FuzzClientOf(f *testing.F) {
	f.Add("198.51.100.7, 10.0.0.5", "", "10.0.0.0/8")
	f.Add("10.0.0.9,10.0.0.5", "198.51.100.8", "10.0.0.0/8")
	f.Add("::ffff:10.0.0.1,fe80::1%lo", "x", "::/0")
	f.Add(",,,", " ", "0.0.0.0/0")
	f.Fuzz(func(t *testing.T, xff, realIP, proxy string) {
		proxies, err := ParseRanges([]string{proxy})
		if err != nil {
			proxies = nil
		}
		h := http.Header{"X-Forwarded-For": {xff}, "X-Real-Ip": {realIP}}
		caller := CallerOf(false, "127.0.0.1:1")
		got := ClientOf(h, caller, proxies)
		if !got.IsValid() {
			t.Fatalf("invalid client for %q %q", xff, realIP)
		}
		if got == caller.Addr {
			return
		}
		entries := strings.Split(xff, ",")
		idx := -1
		for i := len(entries) - 1; i >= 0; i-- {
			a, err := netip.ParseAddr(strings.TrimSpace(entries[i]))
			if err != nil {
				break
			}
			if a.Unmap().WithZone("") == got {
				idx = i
				break
			}
		}
		if idx < 0 {
			if r, err := netip.ParseAddr(strings.TrimSpace(realIP)); err != nil || r.Unmap().WithZone("") != got {
				t.Fatalf("client %s is in neither header (%q, %q)", got, xff, realIP)
			}
			return
		}
		for _, e := range entries[idx+1:] {
			if a, err := netip.ParseAddr(strings.TrimSpace(e)); err != nil || !proxies.Contains(a) {
				t.Fatalf("client %s chosen left of %q, which is no trusted proxy (%q)", got, e, xff)
			}
		}
	})
}
