package cli

import "github.com/spf13/cobra"

// docsURL is where the commands are documented in full.
const docsURL = "https://github.com/deplo-sh/deplo-auth/blob/main/docs/reference.md#commands"

// The modes of the commands, as their usage lines show them.
const (
	tokenModes = "(--keys-file <path> | --postgres <dsn> | --api <url>)"
	storeModes = "(--keys-file <path> | --postgres <dsn>)"
)

// tokenModesHelp is the paragraph every token command's help ends with.
const tokenModesHelp = `Where the tokens are, one of:
  --keys-file <path>  the JSON key file of "keys file <path>" (default $DEPLO_AUTH_KEYS_FILE)
  --postgres <dsn>    the PostgreSQL store of "keys postgres <dsn>" (default $DEPLO_AUTH_POSTGRES)
  --api <url>         the token API of a running gateway, authenticated with $DEPLO_KEY (an
                      admin API token or dashboard session); default $DEPLO_API_URL when no
                      store is named
In store mode a change is in force on the running gateway when the command returns
(--admin, default $CADDY_ADMIN or localhost:2019).`

// rootLong is the help of "caddy deplo-auth".
const rootLong = `
Manages deplo API tokens: in the JSON key file of "keys file <path>" (edited under a
lock and replaced atomically, so a crash never leaves a truncated file), in the
PostgreSQL store of "keys postgres <dsn>", or through the token API of a running
gateway ("--api <url>" with $DEPLO_KEY, from a machine without access to the store).
In store mode, a token created or revoked is in force on the running gateway by the
time the command returns: the command tells it through Caddy's admin endpoint
(--admin, default $CADDY_ADMIN or localhost:2019); every other gateway picks the
change up within milliseconds (the key file's watch, PostgreSQL's notification).

  caddy deplo-auth token create ` + tokenModes + ` --workspace <ws> --scopes read,deploy [--name <name>] [--project <p>] [--expires 720h|<RFC 3339 time>] [--allowed-ips <cidr,…>]
  caddy deplo-auth token revoke ` + tokenModes + ` [--workspace <ws>] [--at <duration|RFC 3339 time>] (<token id> | --value - < token)
  caddy deplo-auth token revoke ` + tokenModes + ` --workspace <ws> --created-by <tok_id|session:<sid>|user:<sub>>
  caddy deplo-auth token rotate ` + tokenModes + ` [--grace 1h] (<token id> | --self)
  caddy deplo-auth token list   ` + tokenModes + ` [--workspace <ws>] [--json]
  caddy deplo-auth session revoke ` + storeModes + ` [--expires <duration|RFC 3339 time>] <sid>
  caddy deplo-auth migrate      --postgres <dsn>
  caddy deplo-auth hash         < token
  caddy deplo-auth jwt mint     (--secret-env <VAR> | --key <private.pem>) --alg <alg> --sub <user> --workspace <ws> --scopes read,deploy [--issuer <iss> --audience <aud>] [--ttl 15m]

create prints the new token once, on stdout; only its SHA-256 is stored.
--keys-file defaults to $DEPLO_AUTH_KEYS_FILE, --postgres to $DEPLO_AUTH_POSTGRES,
--api to $DEPLO_API_URL (when no store is named). --scopes takes read,deploy or
read deploy; --expires and --at a duration from now (720h, 30d) or an RFC 3339 time.
`

// setHelp gives cmd, and the commands under it, the help layout of cobra
// with a closing line that points to this project's documentation rather
// than Caddy's, which the caddy command adds to every other command.
func setHelp(cmd *cobra.Command) {
	cmd.SetHelpTemplate((&cobra.Command{}).HelpTemplate() +
		"\nFull documentation of the deplo-auth commands:\n" + docsURL + "\n")
}
