package throttle

import "net/netip"

// ClientKey normalises a client IP address into the key to throttle it by:
//
//   - an IPv4 address is returned as is ("192.0.2.1");
//   - an IPv4-mapped IPv6 address is the IPv4 address ("::ffff:192.0.2.1" →
//     "192.0.2.1");
//   - any other IPv6 address stands for its /64, since a whole /64 is what an
//     attacker gets as cheaply as one address ("2001:db8:1:2::5" →
//     "2001:db8:1:2::/64"); its zone, if any, is ignored;
//   - an address with a port ("192.0.2.1:443", "[2001:db8::1]:443") is keyed
//     by its address, so that handing in a RemoteAddr by mistake does not give
//     every connection a budget of its own;
//   - anything else is returned as is.
//
// Equal addresses give equal keys whatever their spelling, ClientKey never
// panics, and ClientKey(ClientKey(x)) == ClientKey(x). A plain IPv4 address
// costs no allocation.
func ClientKey(ip string) string {
	addr, err := netip.ParseAddr(ip)
	asIs := err == nil && addr.Is4() // dotted quad: ParseAddr accepts only the canonical spelling
	if err != nil {
		ap, err := netip.ParseAddrPort(ip)
		if err != nil {
			return ip
		}
		addr = ap.Addr()
	}
	if asIs {
		return ip
	}
	addr = addr.Unmap().WithZone("")
	if addr.Is4() {
		return addr.String()
	}
	p, err := addr.Prefix(64)
	if err != nil { // unreachable for a valid IPv6 address
		return ip
	}
	var buf [64]byte // one allocation, for the result
	return string(append(p.Addr().AppendTo(buf[:0]), "/64"...))
}
