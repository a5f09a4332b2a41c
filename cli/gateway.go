package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/spf13/cobra"
)

// A change made in store mode is told to the running gateway through its
// Caddy admin endpoint, so that it is in force there when the command
// returns: the gateway re-reads the key file (POST /deplo-auth/reload) or
// drops the token from its caches (POST /deplo-auth/purge). Without that
// call the change still arrives: a key file's watch within milliseconds,
// PostgreSQL's notification — but after the command has returned, and a
// script's next request may come first.

// caddyAdminEnv is Caddy's own variable for its admin address, which the
// gateway also reads.
const caddyAdminEnv = "CADDY_ADMIN"

// adminTimeout bounds one call to the admin endpoint.
const adminTimeout = 5 * time.Second

// addAdminFlag adds --admin to a command that changes a key store.
func addAdminFlag(cmd *cobra.Command) *string {
	return cmd.Flags().String("admin", "", "Caddy admin address of the running gateway, told of the change so that it is in "+
		"force there when this command returns (default $"+caddyAdminEnv+", else localhost:2019, and then a gateway "+
		`that is not running is no error; "off": tell none)`)
}

// adminWithAPI refuses --admin in API mode, where the gateway that serves
// the token API applies the change itself.
func adminWithAPI(cmd *cobra.Command) error {
	if cmd.Flags().Changed("admin") {
		return errors.New("--admin is for store mode (--keys-file, --postgres); through --api the gateway applies the change itself")
	}
	return nil
}

// gateway is the admin endpoint a store-mode command tells of its change.
type gateway struct {
	addr string // "": tell none
	// explicit is set when --admin named the address: a gateway that
	// cannot be told is then an error. Otherwise (the default address) no
	// gateway running is normal, and the watch or NOTIFY carries the change.
	explicit bool
}

// gatewayOf returns the gateway --admin names, or the default one.
func gatewayOf(cmd *cobra.Command) (gateway, error) {
	f := cmd.Flags().Lookup("admin")
	if f == nil {
		return gateway{}, nil
	}
	switch v := f.Value.String(); {
	case v == "off":
		return gateway{}, nil
	case f.Changed && v == "":
		return gateway{}, errors.New(`--admin: want an address such as localhost:2019, or "off"`)
	case f.Changed:
		return gateway{addr: v, explicit: true}, nil
	}
	if v := os.Getenv(caddyAdminEnv); v != "" {
		return gateway{addr: v}, nil
	}
	return gateway{addr: caddy.DefaultAdminListen}, nil
}

// announce tells the gateway of a change to the store f names: it re-reads
// a key file; from PostgreSQL it drops the token whose stored hash is hash
// from its caches (none if hash is "").
func (g gateway) announce(ctx context.Context, f storeFlags, hash string) error {
	if file := orEnv(f.file, keysFileEnv); file != "" {
		return g.keyFileChanged(ctx, file)
	}
	if hash == "" {
		return nil
	}
	return g.tokenChanged(ctx, hash)
}

// keyFileChanged asks the gateway to read the key file at path now.
func (g gateway) keyFileChanged(ctx context.Context, path string) error {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	return g.call(ctx, "/deplo-auth/reload", map[string]string{"path": path})
}

// tokenChanged asks the gateway to drop the token whose stored hash is
// hash from its caches, so its next request reads the store.
func (g gateway) tokenChanged(ctx context.Context, hash string) error {
	return g.call(ctx, "/deplo-auth/purge", map[string]string{"hash": hash})
}

// call POSTs body to the gateway's admin endpoint at uri and waits for its
// answer. It returns nil when the gateway applied the change, or when no
// gateway answers at the default address; an error otherwise, which says
// the store is changed.
func (g gateway) call(ctx context.Context, uri string, body any) error {
	if g.addr == "" {
		return nil
	}
	addr, err := caddy.ParseNetworkAddress(g.addr)
	local := err == nil && (addr.IsUnixNetwork() || addr.IsFdNetwork())
	if err != nil || addr.PortRangeSize() > 1 || (!local && addr.StartPort == 0) {
		return fmt.Errorf("--admin %q: not a Caddy admin address (want host:port or unix/<path>)", g.addr)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	// The Host and Origin Caddy's admin endpoint accepts for its address
	// (a Unix socket: a loopback name, as Caddy's own commands send).
	origin := "http://" + addr.JoinHostPort(0)
	if local {
		origin = "http://127.0.0.1"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, origin+uri, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("--admin %q: not a Caddy admin address (want host:port or unix/<path>)", g.addr)
	}
	req.Header.Set("Content-Type", "application/json")
	if !local {
		req.Header.Set("Origin", origin)
	}
	client := &http.Client{
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, addr.Network, addr.JoinHostPort(0))
		}},
		CheckRedirect: noRedirect,
	}
	resp, err := client.Do(req)
	if err != nil {
		if !g.explicit {
			return nil // no gateway at the default address: normal
		}
		return fmt.Errorf("the store is changed, but the gateway's admin endpoint %s did not answer (%v); "+
			"a gateway reading this store applies the change by itself shortly", g.addr, dialError(err))
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	var refusal struct {
		Error string `json:"error"`
	}
	msg := resp.Status
	if json.Unmarshal(answer, &refusal) == nil && refusal.Error != "" {
		msg = refusal.Error
	}
	if resp.StatusCode == http.StatusNotFound && !g.explicit {
		// Another Caddy at the default address (without deplo_auth, or
		// reading another store): not the gateway of this store.
		return nil
	}
	return fmt.Errorf("the store is changed, but the gateway at %s did not apply it: %s", g.addr, oneLine(msg))
}

// dialError is err without the request's method and URL, which say nothing
// the message does not.
func dialError(err error) error {
	var op *net.OpError
	if errors.As(err, &op) {
		return op
	}
	return err
}
