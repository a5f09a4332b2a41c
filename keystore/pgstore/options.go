package pgstore

import (
	"time"

	"go.uber.org/zap"
)

// Defaults for Options' zero values.
const (
	// DefaultMaxConns caps the lookup pool: a fleet of N instances holds at
	// most N × (DefaultMaxConns + 1) server connections, the listener's
	// included, and far fewer at rest (idle ones close after a minute).
	DefaultMaxConns     = 4
	DefaultQueryTimeout = 2 * time.Second
	DefaultChannel      = "deplo_auth"
	// DefaultPoll is how often the change log is read without a
	// notification: the bound on how long a change takes to reach an
	// instance whose notifications are lost.
	DefaultPoll = time.Second
	// DefaultHeartbeat bounds how long a listener that hears nothing goes
	// unreported: after a quarter to a half of it in silence (drawn anew
	// each time) the listener notifies itself, and its own notification
	// must arrive within another half.
	DefaultHeartbeat = 10 * time.Second
	// DefaultApplicationName is the application_name of the pool's
	// connections when the DSN sets none; the listener connection uses it
	// with "-listener" appended.
	DefaultApplicationName = "deplo-auth"
	// HeartbeatChannel carries the listeners' self-notifications (a
	// channel of its own, so that stores of an older version listening on
	// DefaultChannel never see them).
	HeartbeatChannel = "deplo_auth_heartbeat"
)

// Options configures Open.
type Options struct {
	// DSN is a PostgreSQL connection string, URL
	// ("postgres://user:pass@host:5432/db?sslmode=verify-full") or key/value
	// ("host=… user=… dbname=…") form, with every parameter pgx accepts
	// (pool_max_conns and friends included). Errors never repeat its
	// password. It may point at pgbouncer in transaction mode: the store
	// keeps no session state there (no named prepared statements; see
	// Open), and listens through ListenDSN.
	DSN string

	// ListenDSN is the connection string of the listener (LISTEN needs a
	// session of its own: a direct connection, or pgbouncer in session
	// mode). Default: DSN.
	ListenDSN string

	// LookupQuery, if set, replaces the query on the shipped schema, so an
	// existing table can serve as the key store. It takes one parameter, $1:
	// the 32-byte SHA-256 of the whole token (bytea), and returns at most one
	// row with exactly these 8 columns, in this order (names do not matter,
	// types do):
	//
	//	id          text, not null
	//	name        text (null = "")
	//	workspace   text (null = none)
	//	project     text; null = workspace-scoped ('' is an error, never "all projects")
	//	scopes      text[] (null = none)
	//	created_at  timestamptz (null = unknown)
	//	expires_at  timestamptz; null = never
	//	revoked_at  timestamptz; null = not revoked
	//
	// and optionally a ninth:
	//
	//	allowed_ips text[] of CIDR prefixes; null = usable from anywhere
	//
	// Cast where the table differs (id::text, expires::timestamptz). No row
	// means an unknown token. The query is checked when the store opens
	// (parameter and column count), and every row read is checked again;
	// a mismatch is an error, never a silent "not found". Changes come from
	// the change log (deplo_changes, see Write) when the schema has one,
	// else from notifications only: the operator's own triggers sending
	// the payloads Watch describes on Channel.
	LookupQuery string

	// MaxConns caps the lookup pool (DefaultMaxConns if zero or negative,
	// unless the DSN sets pool_max_conns). Pool connections idle for a
	// minute are closed. The listener uses one more connection of its own.
	MaxConns int32

	// QueryTimeout bounds each lookup, on top of the caller's context
	// (DefaultQueryTimeout if zero or negative).
	QueryTimeout time.Duration

	// Poll is how often the change log is read when no notification came
	// (DefaultPoll if zero or negative): the bound on staleness when
	// notifications are lost.
	Poll time.Duration

	// Heartbeat bounds how long a deaf listener goes unreported
	// (DefaultHeartbeat if zero or negative; see Hearing).
	Heartbeat time.Duration

	// Logger receives connection and background reports (nothing is logged
	// if nil). Hashes, tokens and passwords are never logged.
	Logger *zap.Logger

	// RecordLastUsed enables Touch: last_used_at is written in batches in
	// the background, at most once a minute per token. It needs the shipped
	// deplo_tokens table.
	RecordLastUsed bool
	// TouchInterval is how often touched tokens are written (default 5s).
	TouchInterval time.Duration
	// TouchQueueSize caps the distinct tokens waiting to be written
	// (default 10000); Touch drops and counts past it.
	TouchQueueSize int

	// Channel is the LISTEN channel (DefaultChannel if empty). The
	// shipped schema notifies DefaultChannel; another channel is for an
	// operator's own triggers.
	Channel string

	// OnReconnect, if set, is called from the listener goroutine each time
	// the listener connection is back after a loss (a metrics hook). It must
	// return quickly and must not call Close.
	OnReconnect func()

	// OnHearing, if set, is called with each change of Hearing (a metrics
	// hook), from the listener goroutine; same rules as OnReconnect.
	OnHearing func(hearing bool)

	// Migrate, if set, applies the embedded schema migrations (see Migrate)
	// before the lookup query is checked.
	Migrate bool

	// StartWithoutServer lets Open return a store whose server cannot be
	// reached yet (a gateway starting while its database is down): lookups
	// fail with ErrNotReady, Ready is false, and the store keeps trying
	// (jittered backoff) until the server answers. A DSN that does not
	// parse, and a server that answers but refuses the schema or the
	// lookup query, still fail Open.
	StartWithoutServer bool

	// AdminOnly opens a store for admin writes only (the CLI): one
	// connection, no listener, no change-log poll, no session set.
	AdminOnly bool

	// beforeReconnect, if set, is called before each reconnect attempt
	// (tests: to hold the listener down); an error fails the attempt, as
	// an unreachable server would.
	beforeReconnect func() error
	// deafen, if set and true, makes the listener drop what it receives,
	// as a LISTEN through pgbouncer in transaction mode would (tests).
	deafen func() bool
	// stallListenerRead, if set, is called inside each read the listener
	// makes over its own connection, where the query waits for the server
	// (tests: a stalled listener connection).
	stallListenerRead func()
}
