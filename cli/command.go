// Package cli is the command line of deplo-auth: "caddy deplo-auth", which
// creates, revokes and lists API tokens in a key store (or through the token
// API of a running gateway), revokes dashboard sessions, hashes a token,
// applies the PostgreSQL schema and mints development JWTs. It registers
// with Caddy's command table; package caddymodule imports it, so every Caddy
// built with the module has the command.
package cli

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/deplo-sh/deplo-auth/apikey"
	"github.com/deplo-sh/deplo-auth/jwtauth"
	"github.com/deplo-sh/deplo-auth/keystore"
	"github.com/deplo-sh/deplo-auth/keystore/pgstore"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "deplo-auth",
		Usage: "token create|revoke|list … | session revoke … | migrate | hash | jwt mint …",
		Short: "Manages deplo API tokens: in a key store, or through a gateway's token API",
		Long:  rootLong,
		CobraFunc: func(cmd *cobra.Command) {
			setHelp(cmd)
			token := &cobra.Command{Use: "token", Short: "Creates, revokes and lists API tokens"}
			token.AddCommand(tokenCreateCommand(), tokenRevokeCommand(), tokenListCommand(), tokenRotateCommand())
			jwtCmd := &cobra.Command{Use: "jwt", Short: "Dashboard session tokens for development"}
			jwtCmd.AddCommand(jwtMintCommand())
			session := &cobra.Command{Use: "session", Short: "Revokes dashboard sessions"}
			session.AddCommand(sessionRevokeCommand())
			cmd.AddCommand(token, hashCommand(), jwtCmd, session, migrateCommand())
		},
	})
}

func tokenCreateCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "create " + tokenModes + " --workspace <ws> --scopes <scopes> [--name <name>] [--project <p>] [--expires <duration|time>] [--allowed-ips <cidr,…>]",
		Short: "Creates a token and prints it once on stdout",
		Long:  "Creates a token and prints it once on stdout (its id on stderr); only its SHA-256 is stored.\n\n" + tokenModesHelp,
		Args:  cobra.ArbitraryArgs, // the words after --scopes
	}
	store := addStoreFlags(cmd)
	name := cmd.Flags().String("name", "", "human-readable name, e.g. \"CI deploys\"")
	workspace := cmd.Flags().String("workspace", "", "workspace id the token belongs to (required)")
	project := cmd.Flags().String("project", "", "project the token is bound to (default: the whole workspace)")
	scopeFlag := addScopesFlag(cmd, "scopes the token grants, required")
	expires := addInstantFlag(cmd, "expires", "when the token expires (default: never)")
	allowedIPs := cmd.Flags().StringSlice("allowed-ips", nil,
		"client addresses the token may be used from: CIDR prefixes or addresses, comma-separated, at most 32 (default: anywhere)")
	api := addAPIFlags(cmd)
	addAdminFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if *workspace == "" {
			return errors.New("--workspace is required")
		}
		scopes, err := scopesOf(cmd, *scopeFlag, args)
		if err != nil {
			return err
		}
		if len(scopes) == 0 {
			return errors.New("--scopes is required (read, deploy, delete, admin)")
		}
		now := time.Now().UTC().Truncate(time.Second)
		var expiresAt time.Time // zero: never
		if expires.set() {
			if expiresAt = expires.at(now); !expiresAt.After(now) {
				return fmt.Errorf("--expires %s: that is not in the future", expires.raw)
			}
		}
		prefixes, err := keystore.ParseAllowedIPs(*allowedIPs)
		if err != nil {
			return fmt.Errorf("--allowed-ips: %w", err)
		}
		allowed := keystore.FormatAllowedIPs(prefixes)
		if c, err := api.client(cmd); err != nil || c != nil {
			if err != nil {
				return err
			}
			if err := adminWithAPI(cmd); err != nil {
				return err
			}
			return c.create(cmd, *name, *project, scopes, expiresAt, allowed)
		}
		raw, err := apikey.Generate()
		if err != nil {
			return err
		}
		id, err := keystore.NewTokenID()
		if err != nil {
			return err
		}
		entry := keystore.TokenEntry{
			ID:         id,
			Name:       *name,
			Hash:       apikey.Sum(raw).String(),
			Workspace:  *workspace,
			Scopes:     slices.Sorted(slices.Values(scopes)),
			CreatedAt:  now,
			CreatedBy:  &keystore.Creator{Kind: keystore.CreatorOperator},
			AllowedIPs: allowed,
		}
		if *project != "" {
			entry.Project = project
		}
		if !expiresAt.IsZero() {
			entry.ExpiresAt = &expiresAt
		}
		admin, where, gw, closeStore, err := store.openTold(cmd)
		if err != nil {
			return err
		}
		defer closeStore()
		if err := admin.CreateToken(cmd.Context(), entry); err != nil {
			return err
		}
		// The gateway is told before the token is printed, so a script
		// that captures it can use it at once; the token is printed even
		// if that fails, for it exists.
		announced := gw.announce(cmd.Context(), store, entry.Hash)
		fmt.Fprintf(cmd.ErrOrStderr(), "created token %s in %s; it is shown once:\n", id, where)
		fmt.Fprintln(cmd.OutOrStdout(), raw)
		return announced
	}
	return cmd
}

func tokenRevokeCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "revoke " + tokenModes + " [--workspace <ws>] [--at <duration|time>] (<token id> | --value - | --created-by <tok_id|session:<sid>|user:<sub>> --workspace <ws>)",
		Short: "Revokes a token (and the tokens it created) now, or at a given time; or everything a credential created",
		Long: "Revokes a token (and the tokens it created) now, or at a given time (an earlier revocation stands);\n" +
			"or, with --created-by, every token a credential created.\n\n" + tokenModesHelp,
		Args: cobra.MaximumNArgs(1),
	}
	store := addStoreFlags(cmd)
	at := addInstantFlag(cmd, "at", "when the revocation takes effect (default: now; store mode only)")
	value := cmd.Flags().String("value", "", `"-": read the token itself from stdin and revoke it, recording revoked_reason "leaked" (the manual leak response)`)
	createdBy := cmd.Flags().String("created-by", "", `revoke every token this credential created: a token id, "session:<sid>" or "user:<sub>"`)
	api := addAPIFlags(cmd)
	addAdminFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		switch {
		case *createdBy != "" && (len(args) > 0 || at.set() || *value != ""):
			return errors.New("--created-by takes no token id, no --value and no --at")
		case *createdBy != "":
			return revokeCreatedBy(cmd, store, api, *createdBy)
		}
		when := time.Now().UTC().Truncate(time.Second)
		if at.set() {
			when = at.at(when)
		}
		switch {
		case *value != "" && len(args) > 0:
			return errors.New("give a token id or --value -, not both")
		case *value != "":
			return revokeByValue(cmd, *value, store, api, when)
		case len(args) == 0:
			return errors.New("name the token: its id (tok_…), or --value - with the token on stdin")
		}
		id := args[0]
		gw, err := gatewayOf(cmd)
		if err != nil {
			return err
		}
		admin, _, closeStore, err := api.open(cmd, store)
		if err != nil {
			return err
		}
		defer closeStore()
		if _, viaAPI := admin.(*apiClient); viaAPI {
			if err := adminWithAPI(cmd); err != nil {
				return err
			}
		}
		rec, err := admin.RevokeToken(cmd.Context(), id, when)
		if err != nil {
			return err
		}
		if _, viaAPI := admin.(*apiClient); !viaAPI {
			if err := gw.announce(cmd.Context(), store, rec.Hash); err != nil {
				return err
			}
		}
		// An earlier revocation stands; say which instant is in force.
		fmt.Fprintf(cmd.OutOrStdout(), "revoked %s at %s\n", id, rec.RevokedAt.Format(time.RFC3339))
		return nil
	}
	return cmd
}

// revokeByValue revokes the token read from stdin (--value -), by its hash,
// in the key store the flags name. The token is never an argument (shell
// history, process lists) and never printed.
func revokeByValue(cmd *cobra.Command, value string, store storeFlags, api apiFlags, when time.Time) error {
	if value != "-" {
		return errors.New(`--value takes "-" and reads the token from stdin; never put a token on the command line`)
	}
	if c, err := api.client(cmd); err != nil || c != nil {
		if err != nil {
			return err
		}
		return errors.New("--value needs the key store (--keys-file or --postgres): the token API never takes a token's value")
	}
	line, err := bufio.NewReader(io.LimitReader(cmd.InOrStdin(), 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	token := strings.TrimSpace(line)
	// The checksum is not required: a token from before it can leak too.
	if err := apikey.Check(token, false); err != nil {
		return fmt.Errorf("stdin: not a deplo API token: %w", err)
	}
	admin, where, gw, closeStore, err := store.openTold(cmd)
	if err != nil {
		return err
	}
	defer closeStore()
	hashes, ok := admin.(keystore.HashRevoker)
	if !ok {
		return fmt.Errorf("%s cannot revoke a token by its value", where)
	}
	rec, active, err := hashes.RevokeHash(cmd.Context(), keystore.Hash(apikey.Sum(token)), when, keystore.RevokedLeaked)
	if errors.Is(err, keystore.ErrNotFound) {
		return fmt.Errorf("no token in %s has that value", where)
	}
	if err != nil {
		return err
	}
	if err := gw.announce(cmd.Context(), store, rec.Hash); err != nil {
		return err
	}
	if !active {
		fmt.Fprintf(cmd.OutOrStdout(), "%s was no longer active; revoked at %s\n", printable(rec.ID), rec.RevokedAt.Format(time.RFC3339))
		return nil
	}
	fmt.Fprintf(cmd.OutOrStdout(), "revoked %s (workspace %s) at %s, reason %s\n", printable(rec.ID), printable(rec.Workspace),
		rec.RevokedAt.Format(time.RFC3339), printable(rec.RevokedReason))
	return nil
}

func tokenListCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list " + tokenModes + " [--workspace <ws>] [--json]",
		Short: "Lists tokens (never their secrets)",
		Long:  "Lists tokens: never a token, never its hash (--json: the stored fields but the hash).\n\n" + tokenModesHelp,
		Args:  cobra.NoArgs,
	}
	store := addStoreFlags(cmd)
	asJSON := cmd.Flags().Bool("json", false, "print the entries as JSON")
	api := addAPIFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		admin, _, closeStore, err := api.open(cmd, store)
		if err != nil {
			return err
		}
		defer closeStore()
		tokens, err := admin.ListTokens(cmd.Context(), "")
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		if *asJSON {
			b, err := json.MarshalIndent(tokens, "", "  ")
			if err != nil {
				return err
			}
			_, err = out.Write(append(jsonPrintable(b), '\n'))
			return err
		}
		now := time.Now()
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tWORKSPACE\tPROJECT\tSCOPES\tCREATED\tSTATUS")
		for _, t := range tokens {
			project := "*"
			if t.Project != nil && *t.Project != "" {
				project = *t.Project
			}
			// A tab in a name would shift the columns: printable makes
			// it a space, as every control character.
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", printable(t.ID), printable(t.Name), printable(t.Workspace),
				printable(project), printable(strings.Join(t.Scopes, ",")), t.CreatedAt.Format(time.RFC3339), tokenStatus(t, now))
		}
		return tw.Flush()
	}
	return cmd
}

func tokenStatus(t keystore.TokenRecord, now time.Time) string {
	switch {
	case t.RevokedAt != nil && !now.Before(*t.RevokedAt) && t.RevokedReason != "":
		return "revoked " + t.RevokedAt.Format(time.RFC3339) + " (" + printable(t.RevokedReason) + ")"
	case t.RevokedAt != nil && !now.Before(*t.RevokedAt):
		return "revoked " + t.RevokedAt.Format(time.RFC3339)
	case t.ExpiresAt != nil && !now.Before(*t.ExpiresAt):
		return "expired " + t.ExpiresAt.Format(time.RFC3339)
	case t.RevokedAt != nil:
		return "active, revoked from " + t.RevokedAt.Format(time.RFC3339)
	case t.ExpiresAt != nil:
		return "active until " + t.ExpiresAt.Format(time.RFC3339)
	}
	return "active"
}

func hashCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hash [--no-checksum] < token",
		Short: "Prints the stored form (sha256:…) of a token read from stdin",
		Args:  cobra.NoArgs,
	}
	noChecksum := cmd.Flags().Bool("no-checksum", false, "accept a token without a valid CRC-32 tail (as \"checksum off\")")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		line, err := bufio.NewReader(io.LimitReader(cmd.InOrStdin(), 4096)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		token := strings.TrimSpace(line)
		if err := apikey.Check(token, !*noChecksum); err != nil {
			return fmt.Errorf("not a deplo API token: %w", err)
		}
		fmt.Fprintln(cmd.OutOrStdout(), apikey.Sum(token).String())
		return nil
	}
	return cmd
}

func jwtMintCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "mint (--secret-env <VAR> | --key <private-key.pem>) --alg <alg> --sub <subject> --workspace <ws> --scopes <scopes> [--issuer <iss>] [--audience <aud>] [--project <p>] [--ttl 15m]",
		Short: "Mints a development dashboard session JWT and prints it on stdout",
		Long: `Mints a dashboard session token (JOSE typ at+jwt) for development and
tests, signed with an HMAC secret read from an environment variable (never
from the command line, where it would land in the shell history) or with a
private key PEM file. The claims are iss, aud (when given), sub, workspace,
project (when given), scope (space-separated), iat, exp = iat + ttl, and a
random sid.

--issuer and --audience must match the gateway's "jwt { issuer … audience … }"
(and --alg and the key its keys): the gateway refuses a token with another
issuer or audience (401 invalid_token).`,
		Args: cobra.ArbitraryArgs, // the words after --scopes
	}
	secretEnv := cmd.Flags().String("secret-env", "", "environment variable holding the HS* secret, e.g. DEPLO_JWT_SECRET")
	keyFile := cmd.Flags().String("key", "", "private key PEM file (RS*, ES*, EdDSA)")
	alg := cmd.Flags().String("alg", "", "algorithm: HS256 HS384 HS512 RS256 RS384 RS512 ES256 ES384 EdDSA (required)")
	kid := cmd.Flags().String("kid", "", "key id header (JWKS keys)")
	sub := cmd.Flags().String("sub", "", "subject, e.g. the user id (required)")
	workspace := cmd.Flags().String("workspace", "", "workspace claim")
	project := cmd.Flags().String("project", "", "project claim (a project-scoped session)")
	scopeFlag := addScopesFlag(cmd, "scope claim")
	issuer := cmd.Flags().String("issuer", "", "iss claim: must be the gateway's jwt issuer, or it refuses the token")
	audience := cmd.Flags().String("audience", "", "aud claim: must be the gateway's jwt audience, when it sets one")
	ttl := cmd.Flags().Duration("ttl", 15*time.Minute, "lifetime")
	typ := cmd.Flags().String("typ", "", "override the typ header (e.g. refresh+jwt, to test a refusal)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		scopes, err := scopesOf(cmd, *scopeFlag, args)
		if err != nil {
			return err
		}
		if *alg == "" || *sub == "" {
			return errors.New("--alg and --sub are required")
		}
		if *ttl <= 0 {
			return errors.New("--ttl must be positive")
		}
		var key any
		switch {
		case *secretEnv != "" && *keyFile != "":
			return errors.New("give either --secret-env or --key, not both")
		case *secretEnv != "":
			v := os.Getenv(*secretEnv)
			if v == "" {
				return fmt.Errorf("environment variable %s is empty or unset", *secretEnv)
			}
			key = []byte(v)
		case *keyFile != "":
			signer, err := jwtauth.LoadPrivateKeyPEM(*keyFile)
			if err != nil {
				return err
			}
			key = signer
		default:
			return errors.New("a key is required: --secret-env <VAR> or --key <file>")
		}
		sid, err := keystore.NewTokenID()
		if err != nil {
			return err
		}
		now := time.Now()
		claims := map[string]any{
			"sub":   *sub,
			"iat":   now.Unix(),
			"exp":   now.Add(*ttl).Unix(),
			"sid":   "sess_" + strings.TrimPrefix(sid, "tok_"),
			"scope": strings.Join(scopes, " "),
		}
		for k, v := range map[string]string{"workspace": *workspace, "project": *project, "iss": *issuer, "aud": *audience} {
			if v != "" {
				claims[k] = v
			}
		}
		header := "at+jwt"
		if *typ != "" {
			header = *typ
		}
		tok, err := jwtauth.MintWithType(*alg, key, *kid, header, claims)
		if err != nil {
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), tok)
		return nil
	}
	return cmd
}

func migrateCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate --postgres <dsn>",
		Short: "Applies the PostgreSQL key store schema (idempotent, safe to run concurrently)",
		Args:  cobra.NoArgs,
	}
	dsnFlag := postgresFlag(cmd, "PostgreSQL DSN")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		dsn := orEnv(dsnFlag, postgresEnv)
		if dsn == "" {
			return errors.New("--postgres is required (or set " + postgresEnv + ")")
		}
		pg, err := pgstore.Open(cmd.Context(), pgstore.Options{DSN: dsn, AdminOnly: true})
		if err != nil {
			return err
		}
		defer pg.Close()
		res, err := pgstore.Migrate(cmd.Context(), pg.Pool())
		if err != nil {
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), migrationSummary(res))
		return nil
	}
	return cmd
}

// migrationSummary is migrate's one line: the schema's version, and what
// this run applied ("none" when the schema was up to date).
func migrationSummary(res pgstore.MigrateResult) string {
	applied := "none"
	if len(res.Applied) > 0 {
		parts := make([]string, len(res.Applied))
		for i, v := range res.Applied {
			parts[i] = strconv.Itoa(v)
		}
		applied = strings.Join(parts, ", ")
	}
	return fmt.Sprintf("schema at version %d (applied now: %s)", res.Version, applied)
}

func sessionRevokeCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "revoke " + storeModes + " [--expires <duration|time>] <session id>",
		Short: "Cuts off a dashboard session (its sid or jti) before its token expires",
		Args:  cobra.ExactArgs(1),
	}
	store := addStoreFlags(cmd)
	expires := addInstantFlag(cmd, "expires", "when the session would have expired anyway (the entry may be dropped after it)")
	addAdminFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var exp time.Time // zero: none
		if expires.set() {
			exp = expires.at(time.Now().UTC().Truncate(time.Second))
		}
		admin, where, gw, closeStore, err := store.openTold(cmd)
		if err != nil {
			return err
		}
		defer closeStore()
		if err := admin.RevokeSession(cmd.Context(), args[0], exp); err != nil {
			return err
		}
		if err := gw.announce(cmd.Context(), store, ""); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "revoked session %s in %s\n", args[0], where)
		return nil
	}
	return cmd
}
