package cli

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/spf13/cobra"

	"github.com/deplo-sh/deplo-auth/grant"
	"github.com/deplo-sh/deplo-auth/keystore"
	"github.com/deplo-sh/deplo-auth/keystore/pgstore"
)

// storeFlags are the flags that name the key store a command edits.
type storeFlags struct{ file, postgres *string }

// The environment variables a store flag falls back to. Their values are
// read when the command runs, never made flag defaults: --help prints
// defaults, and a DSN holds a password.
const (
	keysFileEnv = "DEPLO_AUTH_KEYS_FILE"
	postgresEnv = "DEPLO_AUTH_POSTGRES"
)

func addStoreFlags(cmd *cobra.Command) storeFlags {
	return storeFlags{
		file:     cmd.Flags().String("keys-file", "", "path of the JSON key file (default $"+keysFileEnv+")"),
		postgres: postgresFlag(cmd, "PostgreSQL DSN of the key store"),
	}
}

// postgresFlag defines --postgres, with no default value (see postgresEnv).
func postgresFlag(cmd *cobra.Command, usage string) *string {
	return cmd.Flags().String("postgres", "", usage+" (default $"+postgresEnv+")")
}

// orEnv returns the flag's value, or the environment variable's when the
// flag is empty.
func orEnv(flag *string, env string) string {
	if *flag != "" {
		return *flag
	}
	return os.Getenv(env)
}

// storeManager is what the commands need of a key store: its tokens and its
// revoked sessions.
type storeManager interface {
	keystore.TokenManager
	keystore.SessionRevoker
}

// open opens the key store the flags of cmd name. where names it in
// messages; closeStore releases it. With none named, the error lists every
// mode cmd has (--api included, where it has it).
func (f storeFlags) open(cmd *cobra.Command) (admin storeManager, where string, closeStore func(), err error) {
	file, dsn := orEnv(f.file, keysFileEnv), orEnv(f.postgres, postgresEnv)
	switch {
	case file != "" && dsn != "":
		return nil, "", nil, errors.New("give either --keys-file or --postgres, not both")
	case file != "":
		return &keystore.FileTokenManager{Path: file}, file, func() {}, nil
	case dsn != "":
		pg, err := pgstore.Open(cmd.Context(), pgstore.Options{DSN: dsn, AdminOnly: true})
		if err != nil {
			return nil, "", nil, err
		}
		return pg, "PostgreSQL", func() { _ = pg.Close() }, nil
	}
	if cmd.Flags().Lookup("api") != nil {
		return nil, "", nil, errors.New("--keys-file, --postgres or --api is required: a key file (or $" + keysFileEnv +
			"), a PostgreSQL DSN (or $" + postgresEnv + "), or the URL of the deplo API (or $DEPLO_API_URL) with $DEPLO_KEY")
	}
	return nil, "", nil, errors.New("--keys-file or --postgres is required (or set " + keysFileEnv + " or " + postgresEnv + ")")
}

// openTold is open for a command that changes the store: it first reads
// which gateway to tell of the change (--admin), so a bad --admin fails
// before the store is opened.
func (f storeFlags) openTold(cmd *cobra.Command) (admin storeManager, where string, gw gateway, closeStore func(), err error) {
	if gw, err = gatewayOf(cmd); err != nil {
		return nil, "", gateway{}, nil, err
	}
	admin, where, closeStore, err = f.open(cmd)
	return admin, where, gw, closeStore, err
}

// instantFlag is a flag that names an instant as the CLI does everywhere
// (--expires, --at): a duration from now (720h, 30d, 90m) or an RFC 3339
// time (2027-01-31T00:00:00Z).
type instantFlag struct {
	raw string
	d   time.Duration // when raw is a duration
	t   time.Time     // when raw is a time
}

// instantForms says what an instantFlag takes, for help texts and errors.
const instantForms = "a duration from now (720h, 30d) or an RFC 3339 time (2027-01-31T00:00:00Z)"

func (f *instantFlag) String() string { return f.raw }
func (f *instantFlag) Type() string   { return "duration|time" }

func (f *instantFlag) Set(s string) error {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		*f = instantFlag{raw: s, t: t}
		return nil
	}
	d, err := caddy.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want %s", instantForms)
	}
	if d <= 0 {
		return errors.New("want a positive duration, or an RFC 3339 time")
	}
	*f = instantFlag{raw: s, d: d}
	return nil
}

// set reports whether the flag was given.
func (f *instantFlag) set() bool { return f.raw != "" }

// at returns the instant: now plus the duration, or the time given.
func (f *instantFlag) at(now time.Time) time.Time {
	if f.d > 0 {
		return now.Add(f.d)
	}
	return f.t
}

// addInstantFlag defines an instantFlag named name.
func addInstantFlag(cmd *cobra.Command, name, usage string) *instantFlag {
	f := &instantFlag{}
	cmd.Flags().Var(f, name, usage+": "+instantForms)
	return f
}

// addScopesFlag defines --scopes, which takes the scopes comma- or
// space-separated in one argument, or as the words after it: --scopes
// read,deploy, --scopes "read deploy" and --scopes read deploy all name
// read and deploy. A command that has it takes positional words as scopes
// only when --scopes is given (see scopesOf).
func addScopesFlag(cmd *cobra.Command, usage string) *[]string {
	return cmd.Flags().StringSlice("scopes", nil, usage+": read, deploy, delete, admin, as read,deploy or read deploy")
}

// scopesOf returns the scopes of --scopes and of the words after it (args:
// the command's positional arguments), each checked, in order, without
// repeats. Words with no --scopes before them are an error.
func scopesOf(cmd *cobra.Command, flag []string, args []string) ([]string, error) {
	if len(args) > 0 && !cmd.Flags().Changed("scopes") {
		return nil, fmt.Errorf("unexpected argument %q", args[0])
	}
	var out []string
	for _, v := range append(flag, args...) {
		for _, s := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' }) {
			if _, ok := grant.ParseScope(s); !ok {
				return nil, fmt.Errorf("--scopes: unknown scope %q (want read, deploy, delete or admin)", s)
			}
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out, nil
}
