package tcpproxy

import (
	"bufio"
	"net"
	"testing"
	"time"
)

// TestCutAndRestore: traffic passes, a cut refuses new connections and
// resets open ones, and a restore on the same port lets traffic pass again.
func TestCutAndRestore(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, _ := bufio.NewReader(c).ReadString('\n')
				c.Write([]byte(line))
			}()
		}
	}()
	p, err := New(echo.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Cut()
	roundTrip := func() error {
		c, err := net.DialTimeout("tcp", p.Addr, time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte("ping\n")); err != nil {
			return err
		}
		_, err = bufio.NewReader(c).ReadString('\n')
		return err
	}
	if err := roundTrip(); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}
	open, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // let the proxy register it
	p.Cut()
	if err := roundTrip(); err == nil {
		t.Fatal("a connection went through a cut proxy")
	}
	open.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := open.Read(make([]byte, 1)); err == nil {
		t.Fatal("an open connection survived the cut")
	}
	if err := p.Restore(); err != nil {
		t.Fatal(err)
	}
	if err := roundTrip(); err != nil {
		t.Fatalf("after restore: %v", err)
	}
}
