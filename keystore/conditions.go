package keystore

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// MaxAllowedIPs is the most prefixes a token's allowed_ips may hold.
const MaxAllowedIPs = 32

// RevokedLeaked is the revoked_reason of a token revoked because it was
// reported leaked (the secret-scanning endpoint).
const RevokedLeaked = "leaked"

// ParseAllowedIPs checks and normalises a token's allowed_ips: at most
// MaxAllowedIPs entries, each a CIDR prefix ("203.0.113.0/24",
// "2001:db8::/32") or a single address (read as /32 or /128). Host bits
// are cleared, an IPv4-mapped IPv6 prefix becomes its IPv4 form, duplicates
// are dropped; zones are refused. Errors name the entry by its index, never
// echo a value that is not an address. An empty list is nil: no condition.
func ParseAllowedIPs(list []string) ([]netip.Prefix, error) {
	if len(list) == 0 {
		return nil, nil
	}
	if len(list) > MaxAllowedIPs {
		return nil, fmt.Errorf("at most %d prefixes, got %d", MaxAllowedIPs, len(list))
	}
	out := make([]netip.Prefix, 0, len(list))
	for i, s := range list {
		p, err := parsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	const want = `want a CIDR prefix such as "203.0.113.0/24" or "2001:db8::/32", or one address`
	if s == "" || len(s) > 64 || strings.ContainsAny(s, "%") {
		return netip.Prefix{}, errors.New(want)
	}
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, errors.New(want)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, errors.New(want)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// FormatAllowedIPs returns prefixes in their stored form, nil for none.
func FormatAllowedIPs(prefixes []netip.Prefix) []string {
	if len(prefixes) == 0 {
		return nil
	}
	out := make([]string, len(prefixes))
	for i, p := range prefixes {
		out[i] = p.String()
	}
	return out
}

// AllowedFrom reports whether the token may be used from client, an IP
// address as the front door determined it. A token without allowed_ips is
// allowed from anywhere, at the cost of one length check; with allowed_ips,
// an address that does not parse is never allowed.
func (t *Token) AllowedFrom(client string) bool {
	if len(t.AllowedIPs) == 0 {
		return true
	}
	a, err := netip.ParseAddr(client)
	if err != nil {
		return false
	}
	a = a.Unmap().WithZone("")
	for _, p := range t.AllowedIPs {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
