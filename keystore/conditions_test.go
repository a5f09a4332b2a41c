package keystore

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseAllowedIPs(t *testing.T) {
	for _, tt := range []struct {
		in   []string
		want []string // nil: refused
	}{
		{[]string{"203.0.113.0/24", "2001:db8::/32"}, []string{"203.0.113.0/24", "2001:db8::/32"}},
		{[]string{"203.0.113.77/24"}, []string{"203.0.113.0/24"}},                    // host bits cleared
		{[]string{"198.51.100.7"}, []string{"198.51.100.7/32"}},                      // one address
		{[]string{"2001:db8::1"}, []string{"2001:db8::1/128"}},                       // one address
		{[]string{"::ffff:203.0.113.0/120"}, []string{"203.0.113.0/24"}},             // mapped
		{[]string{"10.0.0.0/8", "10.0.0.0/8", "10.1.2.3/8"}, []string{"10.0.0.0/8"}}, // duplicates
		{[]string{"0.0.0.0/0"}, []string{"0.0.0.0/0"}},
		{[]string{"203.0.113.0/33"}, nil},
		{[]string{"203.0.113.0/-1"}, nil},
		{[]string{"example.com"}, nil},
		{[]string{"fe80::1%eth0"}, nil},
		{[]string{"fe80::/10%eth0"}, nil},
		{[]string{""}, nil},
		{[]string{" 10.0.0.0/8"}, nil},
		{[]string{"010.0.0.0/8"}, nil},
		{slices.Repeat([]string{"10.0.0.0/8"}, 33), nil},
	} {
		got, err := ParseAllowedIPs(tt.in)
		if tt.want == nil {
			if err == nil {
				t.Errorf("ParseAllowedIPs(%q) accepted: %v", tt.in, got)
			}
			continue
		}
		if err != nil || !slices.Equal(FormatAllowedIPs(got), tt.want) {
			t.Errorf("ParseAllowedIPs(%q) = %v, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	if got, err := ParseAllowedIPs(slices.Repeat([]string{"10.0.0.0/8"}, 32)); err != nil || len(got) != 1 {
		t.Errorf("32 entries: %v, %v", got, err)
	}
}

func TestTokenAllowedFrom(t *testing.T) {
	tok := &Token{AllowedIPs: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8::/32")}}
	for client, want := range map[string]bool{
		"203.0.113.1":           true,
		"203.0.113.255":         true,
		"::ffff:203.0.113.9":    true,
		"2001:db8:1::5":         true,
		"fe80::1%eth0":          false,
		"203.0.114.1":           false,
		"2001:db9::1":           false,
		"":                      false,
		"not an address":        false,
		"203.0.113.1:443":       false,
		"::ffff:198.51.100.100": false,
	} {
		if got := tok.AllowedFrom(client); got != want {
			t.Errorf("AllowedFrom(%q) = %v, want %v", client, got, want)
		}
	}
	if !(&Token{}).AllowedFrom("") || !(&Token{}).AllowedFrom("198.51.100.1") {
		t.Error("a token without allowed_ips is refused")
	}
}

// allowed_ips in the key file: read, enforced through a FileStore lookup,
// written back as read; a bad list names the entry and field.
func TestKeyFileAllowedIPs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	admin := &FileTokenManager{Path: path}
	e := newEntry("tok_pinned", "")
	e.AllowedIPs = []string{"203.0.113.0/24"}
	if err := admin.CreateToken(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	plain := newEntry("tok_plain", "")
	if err := admin.CreateToken(context.Background(), plain); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), `"allowed_ips": [`) || strings.Count(string(data), "allowed_ips") != 1 {
		t.Errorf("file:\n%s", data)
	}
	kf, tokens, err := parseKeyFile(path, data)
	if err != nil {
		t.Fatal(err)
	}
	if got := kf.Find("tok_pinned").AllowedIPs; !slices.Equal(got, e.AllowedIPs) {
		t.Errorf("read back %q", got)
	}
	for _, tok := range tokens {
		if pinned := tok.ID == "tok_pinned"; pinned == tok.AllowedFrom("198.51.100.1") || !tok.AllowedFrom("203.0.113.5") {
			t.Errorf("%s: AllowedFrom does not follow the file", tok.ID)
		}
	}
	for bad, msg := range map[string]string{
		`"allowed_ips": []`:                 "allowed_ips: empty",
		`"allowed_ips": ["203.0.113.0/33"]`: "allowed_ips: entry 0",
		`"allowed_ips": "203.0.113.0/24"`:   "allowed_ips",
	} {
		doc := strings.Replace(string(data), `"allowed_ips": [
        "203.0.113.0/24"
      ]`, bad, 1)
		if _, _, err := parseKeyFile(path, []byte(doc)); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: %v, want an error containing %q", bad, err, msg)
		}
	}
}
