// Command upstream is an example service behind deplo-auth. It verifies the
// signed identity of every request (package identity) and answers with it,
// the method and the path as JSON; GET /healthz is open.
//
//	DEPLO_IDENTITY_KEYS=gw-1:<secret of 32 bytes or more> upstream -listen :8081
//
// DEPLO_IDENTITY_KEYS lists the accepted keys as kid1:secret1,kid2:secret2,
// the same keys as the gateway's. Without keys the service refuses to start,
// unless -insecure-no-signature is given: it then trusts the identity
// headers unsigned, which is only safe where nothing but the gateway can
// reach it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/deplo-sh/deplo-auth/examples/upstream/upstreamapp"
	"github.com/deplo-sh/deplo-auth/identity"
)

// keysEnv names the environment variable holding the keys.
const keysEnv = "DEPLO_IDENTITY_KEYS"

type config struct {
	listen  string
	handler http.Handler
}

// setup reads the flags and the environment and builds the handler.
func setup(args []string, getenv func(string) string, log *slog.Logger) (config, error) {
	fs := flag.NewFlagSet("upstream", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	listen := fs.String("listen", ":8081", "address to listen on")
	prefix := fs.String("prefix", identity.DefaultPrefix, "identity header prefix (the gateway's header_prefix)")
	maxAge := fs.Duration("max-age", identity.DefaultMaxAge, "how old a signature may be")
	insecure := fs.Bool("insecure-no-signature", false, "without "+keysEnv+", trust unsigned identity headers (only where nothing but the gateway can reach this service)")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	cfg := config{listen: *listen}

	keysText := strings.TrimSpace(getenv(keysEnv))
	if keysText == "" {
		if !*insecure {
			return config{}, errors.New(keysEnv + " is not set: refusing to start without identity keys " +
				"(-insecure-no-signature trusts unsigned identity headers, only for a service nothing but the gateway can reach)")
		}
		if err := (identity.Parser{Prefix: *prefix}).Validate(); err != nil {
			return config{}, err
		}
		log.Warn("identity signatures are NOT checked (-insecure-no-signature): any client that reaches this service can claim any identity")
		cfg.handler = upstreamapp.InsecureHandler(identity.Parser{Prefix: *prefix})
		return cfg, nil
	}
	keys, err := identity.ParseKeys(keysText)
	if err != nil {
		return config{}, fmt.Errorf("%s: %w", keysEnv, err)
	}
	if *insecure {
		log.Warn("-insecure-no-signature ignored: " + keysEnv + " is set, signatures are checked")
	}
	v := &identity.Verifier{
		Keys:   keys,
		MaxAge: *maxAge,
		Prefix: *prefix,
		OnRefuse: func(r *http.Request, err error) {
			log.Info("refused", "method", r.Method, "path", r.URL.EscapedPath(), "remote", r.RemoteAddr, "reason", err.Error())
		},
	}
	if err := v.Validate(); err != nil {
		return config{}, err
	}
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.ID
	}
	log.Info("verifying identity signatures", "keys", ids, "max_age", v.MaxAge)
	cfg.handler = upstreamapp.Handler(v)
	return cfg, nil
}

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg, err := setup(os.Args[1:], os.Getenv, log)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "usage: "+keysEnv+"=kid:secret upstream [-listen :8081] [-prefix X-Deplo-] [-max-age 30s] [-insecure-no-signature]")
		os.Exit(2)
	}
	if err != nil {
		log.Error(err.Error())
		os.Exit(2)
	}
	srv := &http.Server{
		Addr:              cfg.listen,
		Handler:           cfg.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	log.Info("listening", "addr", cfg.listen)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		log.Error(err.Error())
		os.Exit(1)
	}
}
