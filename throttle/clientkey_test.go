package throttle

import (
	"net/netip"
	"testing"
)

func TestClientKey(t *testing.T) {
	cases := []struct{ in, want string }{
		{"192.0.2.1", "192.0.2.1"},
		{"::ffff:192.0.2.1", "192.0.2.1"},
		{"::FFFF:c000:201", "192.0.2.1"},
		{"192.0.2.1:443", "192.0.2.1"},
		{"[::ffff:192.0.2.1]:443", "192.0.2.1"},
		{"2001:db8:1:2::1", "2001:db8:1:2::/64"},
		{"2001:DB8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"},
		{"2001:0db8:0001:0002:0000:0000:0000:0001", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2::1]:8080", "2001:db8:1:2::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"[fe80::1%eth0]:80", "fe80::/64"},
		{"::1", "::/64"},
		{"2001:db8:1:3::1", "2001:db8:1:3::/64"},
		// not addresses: as is
		{"", ""},
		{"unknown", "unknown"},
		{"192.0.2.256", "192.0.2.256"},
		{"01.2.3.4", "01.2.3.4"},
		{"2001:db8::/64", "2001:db8::/64"},
		{"[2001:db8::1]", "[2001:db8::1]"},
		{"1.2.3.4%eth0", "1.2.3.4%eth0"},
		{"\x00\xff", "\x00\xff"},
	}
	for _, c := range cases {
		if got := ClientKey(c.in); got != c.want {
			t.Errorf("ClientKey(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { ClientKey("203.0.113.9") }); n != 0 {
		t.Errorf("ClientKey(IPv4) allocates %v times", n)
	}
}

func FuzzClientKey(f *testing.F) {
	for _, s := range []string{"192.0.2.1", "::ffff:192.0.2.1", "2001:db8:1:2::1", "fe80::1%eth0",
		"[2001:db8::1]:443", "192.0.2.1:80", "", "garbage", "::", "1.2.3.4%x", "[::1%]:0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		k := ClientKey(in)
		if k2 := ClientKey(in); k2 != k {
			t.Fatalf("ClientKey(%q) unstable: %q then %q", in, k, k2)
		}
		if kk := ClientKey(k); kk != k {
			t.Fatalf("ClientKey not idempotent on %q: %q then %q", in, k, kk)
		}
		addr, err := netip.ParseAddr(in)
		if err != nil {
			ap, err := netip.ParseAddrPort(in)
			if err != nil {
				if k != in {
					t.Fatalf("ClientKey(%q) = %q, want the input back", in, k)
				}
				return
			}
			addr = ap.Addr()
		}
		// Equal addresses, however spelt, give equal keys.
		canon := addr.WithZone("").Unmap()
		for _, other := range []string{canon.String(), canon.StringExpanded(), addr.String(),
			netip.AddrFrom16(canon.As16()).String(), netip.AddrPortFrom(addr, 1).String()} {
			if ko := ClientKey(other); ko != k {
				t.Fatalf("ClientKey(%q) = %q but ClientKey(%q) = %q", in, k, other, ko)
			}
		}
		if canon.Is4() {
			if k != canon.String() {
				t.Fatalf("ClientKey(%q) = %q, want %q", in, k, canon)
			}
			return
		}
		// Any address of the same /64 shares the key; flipping a bit of
		// the /64 changes it.
		b := canon.As16()
		b[15] ^= 0xff
		b[8] ^= 0x80
		if ko := ClientKey(netip.AddrFrom16(b).String()); ko != k {
			t.Fatalf("same /64: ClientKey(%q) = %q, ClientKey(%v) = %q", in, k, netip.AddrFrom16(b), ko)
		}
		b[7] ^= 1
		if other := netip.AddrFrom16(b); !other.Is4In6() {
			if ko := ClientKey(other.String()); ko == k {
				t.Fatalf("different /64s %q and %v share key %q", in, other, k)
			}
		}
	})
}
