package decide

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// Ranges is a set of address ranges: the sidecar's trusted callers, or the
// proxies to skip in X-Forwarded-For.
type Ranges []netip.Prefix

// ParseRanges reads CIDRs ("10.0.0.0/8") and single addresses ("::1", a
// one-address range). It names the first entry that is neither.
func ParseRanges(ss []string) (Ranges, error) {
	r := make(Ranges, 0, len(ss))
	for _, s := range ss {
		var p netip.Prefix
		var err error
		if strings.Contains(s, "/") {
			p, err = netip.ParsePrefix(s)
			p = p.Masked()
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(s); err == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR or an IP address", s)
		}
		r = append(r, p)
	}
	return r, nil
}

// Contains reports whether a (an IPv4-mapped IPv6 address read as IPv4) is
// in one of the ranges.
func (r Ranges) Contains(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	for _, p := range r {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Caller is the peer of a sidecar request: the proxy asking, not its client.
type Caller struct {
	// Unix: it connected over a Unix socket, whose owner, group and mode
	// are the access control.
	Unix bool
	// Addr is its address on TCP (invalid on a Unix socket).
	Addr netip.Addr
}

// CallerOf reads a connection's peer: unix says the connection is on a
// Unix socket, remote is net/http's RemoteAddr ("ip:port").
func CallerOf(unix bool, remote string) Caller {
	if unix {
		return Caller{Unix: true}
	}
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return Caller{}
	}
	return Caller{Addr: ap.Addr().Unmap()}
}

// Trusts reports whether c may name an original request: it came over a
// Unix socket, or from an address inside trusted.
func (trusted Ranges) Trusts(c Caller) bool {
	return c.Unix || (c.Addr.IsValid() && trusted.Contains(c.Addr))
}

// ClientOf is the original client's address as a trusted caller reports it,
// for the brute-force guard and logs:
//
//   - X-Forwarded-For (every line, in order, read as one list) is walked from
//     the right, skipping addresses inside proxies; the first address outside
//     them is the client. Entries left of it are the client's own word and
//     never read.
//   - If every entry is inside proxies, the leftmost is the client.
//   - An entry that is not an IP address ends the walk: the leftmost address
//     skipped so far is the client, or, with none, the next rule applies.
//   - No usable X-Forwarded-For: a single valid X-Real-IP.
//   - Neither: the caller's own address (invalid on a Unix socket).
//
// The result is unmapped (IPv4-mapped IPv6 reads as IPv4) and has no zone.
func ClientOf(h http.Header, caller Caller, proxies Ranges) netip.Addr {
	var leftmost netip.Addr
	lines := h["X-Forwarded-For"]
walk:
	for i := len(lines) - 1; i >= 0; i-- {
		line := lines[i]
		for {
			j := strings.LastIndexByte(line, ',')
			a, err := netip.ParseAddr(strings.TrimSpace(line[j+1:]))
			if err != nil {
				break walk
			}
			a = a.Unmap().WithZone("")
			if !proxies.Contains(a) {
				return a
			}
			leftmost = a
			if j < 0 {
				break
			}
			line = line[:j]
		}
	}
	if leftmost.IsValid() {
		return leftmost
	}
	if v := h["X-Real-Ip"]; len(v) == 1 {
		if a, err := netip.ParseAddr(strings.TrimSpace(v[0])); err == nil {
			return a.Unmap().WithZone("")
		}
	}
	return caller.Addr
}
