package pgstore

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/deplo-sh/deplo-auth/internal/redact"
	"github.com/deplo-sh/deplo-auth/keystore"
)

// Defaults for Options' zero values.
const (
	DefaultMaxConns     = 10
	DefaultQueryTimeout = 2 * time.Second
	DefaultChannel      = "deplo_auth"
	// DefaultApplicationName is the application_name of the pool's
	// connections when the DSN sets none; the listener connection uses it
	// with "-listener" appended.
	DefaultApplicationName = "deplo-auth"
)

// Timings of the background work.
const (
	// listenMinBackoff and listenMaxBackoff bound the delay between two
	// attempts to reconnect the listener (doubling, with jitter).
	listenMinBackoff = 100 * time.Millisecond
	listenMaxBackoff = 10 * time.Second
	// defaultListenHealth is how long the listener waits for a notification
	// before it pings the server, so a silently dead connection (a dropped
	// network path) is noticed and replaced.
	defaultListenHealth = 30 * time.Second
	// backgroundTimeout bounds one background statement (connect + LISTEN,
	// ping, session reload, last-used write, open checks).
	backgroundTimeout = 10 * time.Second
	// sessionRefresh is how often the revoked-session set is reloaded
	// without a notification, dropping sessions past their expires_at.
	sessionRefresh = 5 * time.Minute
)

// defaultLookupQuery reads the shipped schema (see schema/001_tokens.sql
// and 004_conditions.sql).
const defaultLookupQuery = `SELECT id, name, workspace, project, scopes, created_at, expires_at, revoked_at,
	allowed_ips::text[]
FROM deplo_tokens WHERE hash = $1`

// unmigratedLookupQuery is defaultLookupQuery on a schema without
// 004_conditions.sql (no token there can have allowed_ips).
const unmigratedLookupQuery = `SELECT id, name, workspace, project, scopes, created_at, expires_at, revoked_at
FROM deplo_tokens WHERE hash = $1`

// lookupColumns names the columns a lookup query returns, in order; the
// last is optional.
const lookupColumns = "id, name, workspace, project, scopes, created_at, expires_at, revoked_at[, allowed_ips]"

// Options configures Open.
type Options struct {
	// DSN is a PostgreSQL connection string, URL
	// ("postgres://user:pass@host:5432/db?sslmode=verify-full") or key/value
	// ("host=… user=… dbname=…") form, with every parameter pgx accepts
	// (pool_max_conns and friends included). Errors never repeat its
	// password.
	DSN string

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
	// a mismatch is an error, never a silent "not found". Change
	// notifications come from triggers: the shipped schema's, or the
	// operator's own sending the same payloads on Channel (see Watch).
	LookupQuery string

	// MaxConns caps the pool (DefaultMaxConns if zero or negative).
	// The listener uses one more connection of its own.
	MaxConns int32

	// QueryTimeout bounds each lookup, on top of the caller's context
	// (DefaultQueryTimeout if zero or negative).
	QueryTimeout time.Duration

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
	// shipped schema's triggers notify DefaultChannel; another
	// channel is for an operator's own triggers.
	Channel string

	// OnReconnect, if set, is called from the listener goroutine each time
	// the listener connection is back after a loss (a metrics hook). It must
	// return quickly and must not call Close.
	OnReconnect func()

	// Migrate, if set, applies the embedded schema migrations (see Migrate)
	// before the lookup query is checked.
	Migrate bool

	// listenHealth overrides defaultListenHealth (tests).
	listenHealth time.Duration
	// beforeReconnect, if set, is called before each reconnect attempt
	// (tests: to hold the listener down); an error fails the attempt, as
	// an unreachable server would.
	beforeReconnect func() error
}

// Store is a keystore.Store backed by PostgreSQL through a pgx connection
// pool. Changes arrive by LISTEN/NOTIFY on a dedicated connection (see
// Watch); revoked dashboard sessions are held in memory (see
// SessionRevoked); last use is recorded in the background (see Touch).
type Store struct {
	pool        *pgxpool.Pool
	listenCfg   *pgx.ConnConfig
	listenName  string // application_name of the listener connection
	lookupSQL   string
	timeout     time.Duration
	channel     string
	health      time.Duration
	log         *zap.Logger
	onReconnect func()
	secrets     []string // removed from every reported error

	beforeReconnect func() error
	// beforeInsert, if set, is called by Create and Rotate inside their
	// transaction, after the lineage checks and before the insert (tests:
	// to let a revocation arrive exactly then).
	beforeInsert func()

	gen atomic.Uint64

	// listening is true while the listener connection is up and listening
	// (see Listening); kick (capacity 1) asks a reconnect loop to try now.
	listening atomic.Bool
	kick      chan struct{}

	subsMu sync.Mutex
	subs   map[uint64]func(keystore.Hash, bool)
	subSeq uint64

	sessions        atomic.Pointer[keystore.SessionSet]
	sessionsEnabled bool          // the deplo_revoked_sessions table exists
	sessionsReload  chan struct{} // capacity 1: a reload is wanted

	lastUsed lastUsedWriter

	ctx       context.Context // cancelled by Close
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

var (
	_ keystore.Store           = (*Store)(nil)
	_ keystore.Watcher         = (*Store)(nil)
	_ keystore.ListenerHealth  = (*Store)(nil)
	_ keystore.SessionDenylist = (*Store)(nil)
	_ keystore.Admin           = (*Store)(nil)
	_ keystore.SessionAdmin    = (*Store)(nil)
)

// Open connects to PostgreSQL and returns a store once it is ready:
// the pool answers a ping, the lookup query is valid, the listener
// connection is listening, and the revoked-session set is loaded (a
// database without the deplo_revoked_sessions table has none). Any failure
// is returned as a configuration error; its message never contains the
// DSN's password. Close releases everything.
func Open(ctx context.Context, opts Options) (*Store, error) {
	secrets := dsnSecrets(opts.DSN)
	fail := func(what string, err error) error {
		return scrub(fmt.Errorf("keystore: postgres: %s: %w", what, err), secrets)
	}
	cfg, err := pgxpool.ParseConfig(opts.DSN)
	if err != nil {
		return nil, fail("invalid DSN", err)
	}
	if pw := cfg.ConnConfig.Password; pw != "" && !slices.Contains(secrets, pw) {
		secrets = append(secrets, pw)
	}
	switch {
	case opts.MaxConns > 0:
		cfg.MaxConns = opts.MaxConns
	case !strings.Contains(opts.DSN, "pool_max_conns"): // else the DSN's own setting stands
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.MinConns > cfg.MaxConns {
		cfg.MinConns = cfg.MaxConns
	}
	app := cfg.ConnConfig.RuntimeParams["application_name"]
	if app == "" {
		app = DefaultApplicationName
		cfg.ConnConfig.RuntimeParams["application_name"] = app
	}
	listenCfg := cfg.ConnConfig.Copy()
	listenName := app + "-listener"
	if len(listenName) > 63 { // NAMEDATALEN - 1: the server would truncate it
		listenName = listenName[len(listenName)-63:]
	}
	listenCfg.RuntimeParams["application_name"] = listenName

	s := &Store{
		listenCfg:       listenCfg,
		listenName:      listenName,
		lookupSQL:       opts.LookupQuery,
		timeout:         opts.QueryTimeout,
		channel:         opts.Channel,
		health:          opts.listenHealth,
		log:             opts.Logger,
		onReconnect:     opts.OnReconnect,
		beforeReconnect: opts.beforeReconnect,
		secrets:         secrets,
		subs:            make(map[uint64]func(keystore.Hash, bool)),
		sessionsReload:  make(chan struct{}, 1),
		kick:            make(chan struct{}, 1),
	}
	if strings.TrimSpace(s.lookupSQL) == "" {
		s.lookupSQL = defaultLookupQuery
	}
	if s.timeout <= 0 {
		s.timeout = DefaultQueryTimeout
	}
	if s.channel == "" {
		s.channel = DefaultChannel
	}
	if s.health <= 0 {
		s.health = defaultListenHealth
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	s.gen.Store(1)
	s.sessions.Store(keystore.NoSessions)

	// Opening is bounded even when the caller's context is not: a
	// black-holed address must not hang provisioning.
	octx, ocancel := context.WithTimeout(ctx, 3*backgroundTimeout)
	defer ocancel()

	s.pool, err = pgxpool.NewWithConfig(octx, cfg)
	if err != nil {
		return nil, fail("invalid pool configuration", err)
	}
	var listener *pgx.Conn
	ok := false
	defer func() {
		if !ok {
			if listener != nil {
				closeConn(listener)
			}
			s.pool.Close()
		}
	}()
	if err := s.pool.Ping(octx); err != nil {
		return nil, fail("connecting", err)
	}
	if opts.Migrate {
		if err := Migrate(octx, s.pool); err != nil {
			return nil, scrub(err, secrets)
		}
	}
	if err := s.checkLookupQuery(octx); err != nil {
		return nil, scrub(err, secrets)
	}
	if listener, err = s.connectListener(octx); err != nil {
		return nil, fail("LISTEN "+s.channel, err)
	}
	// Loaded after LISTEN, so no change is missed in between.
	switch err := s.loadSessions(octx); {
	case err == nil:
		s.sessionsEnabled = true
	case isUndefinedTable(err):
		s.log.Info("postgres key store: no deplo_revoked_sessions table; the session denylist is empty")
	default:
		return nil, fail("loading revoked sessions", err)
	}

	s.lastUsed.init(opts)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	ok = true
	s.listening.Store(true)
	s.wg.Add(1)
	go s.listen(listener)
	if s.sessionsEnabled {
		s.wg.Add(1)
		go s.sessionLoop()
	}
	if s.lastUsed.enabled {
		s.wg.Add(1)
		go s.lastUsedLoop()
	}
	s.log.Info("postgres key store ready", zap.String("channel", s.channel),
		zap.Int32("max_conns", cfg.MaxConns), zap.Int("revoked_sessions", s.sessions.Load().Len()),
		zap.Bool("record_last_used", s.lastUsed.enabled))
	return s, nil
}

// checkLookupQuery describes the lookup query on the server and checks its
// shape: one parameter, eight columns.
func (s *Store) checkLookupQuery(ctx context.Context) error {
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("keystore: postgres: connecting: %w", err)
	}
	defer c.Release()
	sd, err := c.Conn().PgConn().Prepare(ctx, "", s.lookupSQL, nil)
	if err != nil {
		if isUndefinedColumn(err) && s.lookupSQL == defaultLookupQuery {
			// A schema from before 004_conditions.sql: its tokens keep
			// working (none can have allowed_ips) until it is migrated.
			if s.log != nil {
				s.log.Warn("the deplo_tokens table predates allowed_ips; run caddy deplo-auth migrate (or the migrate option)")
			}
			s.lookupSQL = unmigratedLookupQuery
			return s.checkLookupQuery(ctx)
		}
		if isUndefinedTable(err) && s.lookupSQL == defaultLookupQuery {
			return fmt.Errorf("keystore: postgres: lookup query: %w (apply the schema: pgstore.Migrate, or the migrate option)", err)
		}
		return fmt.Errorf("keystore: postgres: lookup query: %w", err)
	}
	if n := len(sd.ParamOIDs); n != 1 {
		return fmt.Errorf("keystore: postgres: lookup query: takes %d parameters; want exactly one, $1, the 32-byte token hash", n)
	}
	if n := len(sd.Fields); n != 8 && n != 9 {
		return fmt.Errorf("keystore: postgres: lookup query: returns %d columns; want 8 or 9: %s", n, lookupColumns)
	}
	return nil
}

// Pool returns the store's connection pool (for Migrate and admin work).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Name identifies the database for status output: host, port and database
// name from the DSN, never its user, password or parameters.
func (s *Store) Name() string {
	c := s.pool.Config().ConnConfig
	return fmt.Sprintf("%s:%d/%s", c.Host, c.Port, c.Database)
}

// Generation changes each time the listener connection has been lost and
// re-established (notifications may have been missed meanwhile), and when a
// notification says every token may have changed. It starts at 1.
func (s *Store) Generation() uint64 { return s.gen.Load() }

// Lookup returns the token whose hash is h, or ErrNotFound when the lookup
// query returns no row. Every other outcome (timeout, unreachable server,
// cancelled ctx, closed store, a row that does not fit) is an error that is
// not ErrNotFound. Each call is bounded by QueryTimeout. The statement is
// prepared once per connection (pgx's statement cache). The returned Token
// is the caller's.
func (s *Store) Lookup(ctx context.Context, h keystore.Hash) (*keystore.Token, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	rows, err := s.pool.Query(ctx, s.lookupSQL, h[:])
	if err != nil {
		return nil, fmt.Errorf("keystore: postgres lookup: %w", err)
	}
	defer rows.Close()
	if n := len(rows.FieldDescriptions()); n != 8 && n != 9 {
		rows.Close()
		if err := rows.Err(); err != nil { // the query failed (timeout…) before describing its columns
			return nil, fmt.Errorf("keystore: postgres lookup: %w", err)
		}
		return nil, fmt.Errorf("keystore: postgres lookup: the lookup query returns %d columns; want 8 or 9: %s", n, lookupColumns)
	}
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("keystore: postgres lookup: %w", err)
		}
		s.lookupAnswered()
		return nil, keystore.ErrNotFound
	}
	tok, err := scanToken(rows, h)
	if err != nil {
		return nil, err
	}
	if rows.Next() {
		return nil, errors.New("keystore: postgres lookup: the lookup query returned more than one row for one hash")
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("keystore: postgres lookup: %w", err)
	}
	s.lookupAnswered()
	return tok, nil
}

// scanToken reads one lookup row (see Options.LookupQuery).
func scanToken(rows pgx.Rows, h keystore.Hash) (*keystore.Token, error) {
	var (
		id, name, workspace, project pgtype.Text
		scopes, allowed              []string
		created, expires, revoked    pgtype.Timestamptz
	)
	dest := []any{&id, &name, &workspace, &project, &scopes, &created, &expires, &revoked, &allowed}
	if err := rows.Scan(dest[:len(rows.FieldDescriptions())]...); err != nil {
		return nil, fmt.Errorf("keystore: postgres lookup: reading the row (want %s as text, text, text, text, text[], timestamptz, timestamptz, timestamptz, text[]): %w",
			lookupColumns, err)
	}
	if !id.Valid || id.String == "" {
		return nil, errors.New("keystore: postgres lookup: the row has a null or empty id")
	}
	if project.Valid && project.String == "" {
		// Not read as workspace-scoped: that would widen the token.
		return nil, fmt.Errorf("keystore: postgres lookup: token %s has an empty project; use NULL for a workspace-scoped token", redact.ID(id.String))
	}
	var prefixes []netip.Prefix
	if allowed != nil {
		// An empty array would read as "anywhere": refused, as a bad
		// prefix is, never widened.
		var err error
		if prefixes, err = keystore.ParseAllowedIPs(allowed); err != nil || len(prefixes) == 0 {
			return nil, fmt.Errorf("keystore: postgres lookup: token %s: allowed_ips: not a non-empty list of CIDR prefixes", redact.ID(id.String))
		}
	}
	return &keystore.Token{
		AllowedIPs: prefixes,
		ID:         id.String,
		Name:       name.String,
		Workspace:  workspace.String,
		Project:    project.String,
		Hash:       h,
		Scopes:     scopes,
		CreatedAt:  pgTime(created),
		ExpiresAt:  pgTime(expires),
		RevokedAt:  pgTime(revoked),
	}, nil
}

// longAgo stands for -infinity: an instant every now is after.
var longAgo = time.Unix(1, 0).UTC()

// pgTime converts a timestamptz for a Token: NULL and +infinity are "none"
// (the zero time), -infinity is long ago.
func pgTime(t pgtype.Timestamptz) time.Time {
	switch {
	case !t.Valid || t.InfinityModifier == pgtype.Infinity:
		return time.Time{}
	case t.InfinityModifier == pgtype.NegativeInfinity:
		return longAgo
	}
	return t.Time
}

// Close stops the listener and the session reloader, flushes the last-used
// writer, and closes the pool. Lookups after Close fail. Close is
// idempotent and waits for every goroutine the store started.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		s.wg.Wait()
		s.pool.Close()
	})
	return nil
}

// isUndefinedTable reports whether err is PostgreSQL's undefined_table.
func isUndefinedColumn(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "42703"
}

func isUndefinedTable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "42P01"
}
