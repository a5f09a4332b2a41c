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

// Timings of the background work.
const (
	// listenMinBackoff and listenMaxBackoff bound the delay between two
	// attempts to reconnect the listener, or to reach the server at start
	// (doubling, with jitter).
	listenMinBackoff = 100 * time.Millisecond
	listenMaxBackoff = 10 * time.Second
	// backgroundTimeout bounds one background statement (connect + LISTEN,
	// ping, session reload, last-used write, open checks).
	backgroundTimeout = 10 * time.Second
	// startTimeout bounds the first attempt to reach the server in Open;
	// past it a store that may start without the server does so.
	startTimeout = 5 * time.Second
	// sessionRefresh is how often the revoked-session set is reloaded
	// without a notification, dropping sessions past their expires_at.
	sessionRefresh = 5 * time.Minute
	// idleConnTimeout closes pool connections idle that long.
	idleConnTimeout = time.Minute
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

// ErrNotReady is the lookup error of a store that has not reached its
// server yet (see Options.StartWithoutServer).
var ErrNotReady = errors.New("keystore: postgres: not connected to the server yet")

// Store is a keystore.Store backed by PostgreSQL through a pgx connection
// pool. Changes arrive by the change log (see Write): LISTEN/NOTIFY on a
// dedicated connection as the fast path, a poll of the log as the bound;
// revoked dashboard sessions are held in memory (see SessionRevoked); last
// use is recorded in the background (see Touch).
type Store struct {
	pool        *pgxpool.Pool
	listenCfg   *pgx.ConnConfig
	listenName  string // application_name of the listener connection
	lookupSQL   string
	timeout     time.Duration
	channel     string
	poll        time.Duration
	heartbeat   time.Duration
	log         *zap.Logger
	onReconnect func()
	onHearing   func(bool)
	secrets     []string // removed from every reported error
	opts        Options  // as given (for the start loop)

	beforeReconnect func() error
	// beforeInsert, if set, is called by Create and Rotate inside their
	// transaction, after the lineage checks and before the insert (tests:
	// to let a revocation arrive exactly then).
	beforeInsert func()
	deafen       func() bool
	stallRead    func()

	gen atomic.Uint64

	// ready is true once the server has answered and the store runs (see
	// Ready); started is closed then.
	ready   atomic.Bool
	started chan struct{}
	// listenTried is closed after the listener's first attempt.
	listenTried chan struct{}

	// hearing is true while the listener has proven, within its
	// heartbeat, that it receives notifications (see Hearing); listenUp
	// while its connection is up; kick (capacity 1) asks a reconnect loop
	// to try now.
	hearing  atomic.Bool
	listenUp atomic.Bool
	kick     chan struct{}

	// The change log (see follow.go).
	changes changeFollower

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
	_ keystore.TokenManager    = (*Store)(nil)
	_ keystore.SessionRevoker  = (*Store)(nil)
)

// Open connects to PostgreSQL and returns a store once it is ready: the
// pool answers a ping, the lookup query is valid, the change log's last
// sequence is known and the revoked-session set is loaded (a database
// without the deplo_revoked_sessions table has none); the listener
// connects in the background. Any failure is returned as a configuration
// error, except an unreachable server with StartWithoutServer; its message
// never contains a password. Close releases everything.
//
// Statements run in pgx's QueryExecModeCacheDescribe unless the DSN sets
// default_query_exec_mode: unnamed statements only, each sent with its
// parameters in one round trip once its description is cached, so that a
// lookup costs one round trip and nothing outlives a transaction, which
// pgbouncer in transaction mode requires (named prepared statements, pgx's
// default, would land on another server connection). The description cache
// holds types only, the same on every server connection of one database.
func Open(ctx context.Context, opts Options) (*Store, error) {
	secrets := append(dsnSecrets(opts.DSN), dsnSecrets(opts.ListenDSN)...)
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
	if !strings.Contains(opts.DSN, "default_query_exec_mode") {
		cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeCacheDescribe
	}
	switch {
	case opts.AdminOnly:
		cfg.MaxConns = 1
	case opts.MaxConns > 0:
		cfg.MaxConns = opts.MaxConns
	case !strings.Contains(opts.DSN, "pool_max_conns"): // else the DSN's own setting stands
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.MinConns > cfg.MaxConns {
		cfg.MinConns = cfg.MaxConns
	}
	if !strings.Contains(opts.DSN, "pool_max_conn_idle_time") {
		cfg.MaxConnIdleTime = idleConnTimeout
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		// A server (or pgbouncer) that accepts and never answers must not
		// hold a connection attempt, and so Close, forever.
		cfg.ConnConfig.ConnectTimeout = backgroundTimeout
	}
	app := cfg.ConnConfig.RuntimeParams["application_name"]
	if app == "" {
		app = DefaultApplicationName
		cfg.ConnConfig.RuntimeParams["application_name"] = app
	}
	listenCfg := cfg.ConnConfig.Copy()
	if opts.ListenDSN != "" {
		lc, err := pgx.ParseConfig(opts.ListenDSN)
		if err != nil {
			return nil, fail("invalid listen DSN", err)
		}
		if pw := lc.Password; pw != "" && !slices.Contains(secrets, pw) {
			secrets = append(secrets, pw)
		}
		if lc.RuntimeParams["application_name"] == "" {
			lc.RuntimeParams["application_name"] = app
		}
		listenCfg = lc
	}
	if listenCfg.ConnectTimeout == 0 {
		listenCfg.ConnectTimeout = backgroundTimeout
	}
	listenName := listenCfg.RuntimeParams["application_name"] + "-listener"
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
		poll:            opts.Poll,
		heartbeat:       opts.Heartbeat,
		log:             opts.Logger,
		onReconnect:     opts.OnReconnect,
		onHearing:       opts.OnHearing,
		beforeReconnect: opts.beforeReconnect,
		deafen:          opts.deafen,
		stallRead:       opts.stallListenerRead,
		opts:            opts,
		secrets:         secrets,
		subs:            make(map[uint64]func(keystore.Hash, bool)),
		sessionsReload:  make(chan struct{}, 1),
		kick:            make(chan struct{}, 1),
		started:         make(chan struct{}),
		listenTried:     make(chan struct{}),
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
	if s.poll <= 0 {
		s.poll = DefaultPoll
	}
	if s.heartbeat <= 0 {
		s.heartbeat = DefaultHeartbeat
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	s.gen.Store(1)
	s.sessions.Store(keystore.NoSessions)
	s.changes.init()
	s.lastUsed.init(opts)
	s.ctx, s.cancel = context.WithCancel(context.Background())

	s.pool, err = pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		s.cancel()
		return nil, fail("invalid pool configuration", err)
	}
	// The first attempt is bounded even when the caller's context is not:
	// a black-holed address must not hang provisioning.
	octx, ocancel := context.WithTimeout(ctx, startTimeout)
	reachable, err := s.prepare(octx)
	ocancel()
	switch {
	case err == nil:
		s.run()
		if !opts.AdminOnly {
			// Changes are announced from here on (the poll would carry
			// them anyway, a poll interval later).
			t := time.NewTimer(startTimeout)
			select {
			case <-s.listenTried:
			case <-t.C:
			}
			t.Stop()
		}
	case (reachable && isServerError(err)) || !opts.StartWithoutServer || opts.AdminOnly:
		s.cancel()
		s.pool.Close()
		return nil, scrub(err, secrets)
	default:
		s.log.Error("postgres key store: the server cannot be reached; starting without it (uncached lookups fail until it answers)",
			zap.String("database", s.Name()), zap.Error(scrub(err, secrets)))
		s.wg.Add(1)
		go s.startLoop()
	}
	return s, nil
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
// cancelled ctx, closed store, a store not ready yet, a row that does not
// fit) is an error that is not ErrNotFound. Each call is bounded by
// QueryTimeout and is one round trip once the query's description is cached
// on the connection (see Open). The returned Token is the caller's.
func (s *Store) Lookup(ctx context.Context, h keystore.Hash) (*keystore.Token, error) {
	if !s.ready.Load() {
		return nil, ErrNotReady
	}
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

// isServerError reports whether err is an error the server answered with
// (a configuration problem), not a timeout or a lost connection (an
// outage).
func isServerError(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe)
}

// isUndefinedFunction reports whether err is PostgreSQL's undefined_function.
func isUndefinedFunction(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "42883"
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
