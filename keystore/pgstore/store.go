package keystore

import (
	"context"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
)

// Defaults for PostgresOptions' zero values.
const (
	DefaultPostgresMaxConns     = 10
	DefaultPostgresQueryTimeout = 2 * time.Second
	DefaultPostgresChannel      = "deplo_auth"
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

// defaultLookupQuery reads the shipped schema (see schema/001_tokens.sql).
const defaultLookupQuery = `SELECT id, name, workspace, project, scopes, created_at, expires_at, revoked_at
FROM deplo_tokens WHERE hash = $1`

// lookupColumns names the columns a lookup query returns, in order.
const lookupColumns = "id, name, workspace, project, scopes, created_at, expires_at, revoked_at"

// PostgresOptions configures OpenPostgres.
type PostgresOptions struct {
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
	// Cast where the table differs (id::text, expires::timestamptz). No row
	// means an unknown token. The query is checked when the store opens
	// (parameter and column count), and every row read is checked again;
	// a mismatch is an error, never a silent "not found". Change
	// notifications come from triggers: the shipped schema's, or the
	// operator's own sending the same payloads on Channel (see Watch).
	LookupQuery string

	// MaxConns caps the pool (DefaultPostgresMaxConns if zero or negative).
	// The listener uses one more connection of its own.
	MaxConns int32

	// QueryTimeout bounds each lookup, on top of the caller's context
	// (DefaultPostgresQueryTimeout if zero or negative).
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

	// Channel is the LISTEN channel (DefaultPostgresChannel if empty). The
	// shipped schema's triggers notify DefaultPostgresChannel; another
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
	// (tests: to hold the listener down).
	beforeReconnect func()
}

// PostgresStore is a Store backed by PostgreSQL through a pgx connection
// pool. Changes arrive by LISTEN/NOTIFY on a dedicated connection (see
// Watch); revoked dashboard sessions are held in memory (see
// SessionRevoked); last use is recorded in the background (see Touch).
type PostgresStore struct {
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

	beforeReconnect func()

	gen atomic.Uint64

	subsMu sync.Mutex
	subs   map[uint64]func(Hash, bool)
	subSeq uint64

	sessions        atomic.Pointer[sessionSet]
	sessionsEnabled bool          // the deplo_revoked_sessions table exists
	sessionsReload  chan struct{} // capacity 1: a reload is wanted

	lastUsed lastUsedWriter

	ctx       context.Context // cancelled by Close
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

var (
	_ Store   = (*PostgresStore)(nil)
	_ Watcher = (*PostgresStore)(nil)
)

// OpenPostgres connects to PostgreSQL and returns a store once it is ready:
// the pool answers a ping, the lookup query is valid, the listener
// connection is listening, and the revoked-session set is loaded (a
// database without the deplo_revoked_sessions table has none). Any failure
// is returned as a configuration error; its message never contains the
// DSN's password. Close releases everything.
func OpenPostgres(ctx context.Context, opts PostgresOptions) (*PostgresStore, error) {
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
		cfg.MaxConns = DefaultPostgresMaxConns
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

	s := &PostgresStore{
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
		subs:            make(map[uint64]func(Hash, bool)),
		sessionsReload:  make(chan struct{}, 1),
	}
	if strings.TrimSpace(s.lookupSQL) == "" {
		s.lookupSQL = defaultLookupQuery
	}
	if s.timeout <= 0 {
		s.timeout = DefaultPostgresQueryTimeout
	}
	if s.channel == "" {
		s.channel = DefaultPostgresChannel
	}
	if s.health <= 0 {
		s.health = defaultListenHealth
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	s.gen.Store(1)
	s.sessions.Store(emptySessions)

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
		zap.Int32("max_conns", cfg.MaxConns), zap.Int("revoked_sessions", s.sessions.Load().len()),
		zap.Bool("record_last_used", s.lastUsed.enabled))
	return s, nil
}

// checkLookupQuery describes the lookup query on the server and checks its
// shape: one parameter, eight columns.
func (s *PostgresStore) checkLookupQuery(ctx context.Context) error {
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("keystore: postgres: connecting: %w", err)
	}
	defer c.Release()
	sd, err := c.Conn().PgConn().Prepare(ctx, "", s.lookupSQL, nil)
	if err != nil {
		if isUndefinedTable(err) && s.lookupSQL == defaultLookupQuery {
			return fmt.Errorf("keystore: postgres: lookup query: %w (apply the schema: keystore.Migrate, or the migrate option)", err)
		}
		return fmt.Errorf("keystore: postgres: lookup query: %w", err)
	}
	if n := len(sd.ParamOIDs); n != 1 {
		return fmt.Errorf("keystore: postgres: lookup query: takes %d parameters; want exactly one, $1, the 32-byte token hash", n)
	}
	if n := len(sd.Fields); n != 8 {
		return fmt.Errorf("keystore: postgres: lookup query: returns %d columns; want 8: %s", n, lookupColumns)
	}
	return nil
}

// Pool returns the store's connection pool (for Migrate and admin work).
func (s *PostgresStore) Pool() *pgxpool.Pool { return s.pool }

// Name identifies the database for status output: host, port and database
// name from the DSN, never its user, password or parameters.
func (s *PostgresStore) Name() string {
	c := s.pool.Config().ConnConfig
	return fmt.Sprintf("%s:%d/%s", c.Host, c.Port, c.Database)
}

// Generation changes each time the listener connection has been lost and
// re-established (notifications may have been missed meanwhile), and when a
// notification says every token may have changed. It starts at 1.
func (s *PostgresStore) Generation() uint64 { return s.gen.Load() }

// Lookup returns the token whose hash is h, or ErrNotFound when the lookup
// query returns no row. Every other outcome (timeout, unreachable server,
// cancelled ctx, closed store, a row that does not fit) is an error that is
// not ErrNotFound. Each call is bounded by QueryTimeout. The statement is
// prepared once per connection (pgx's statement cache). The returned Token
// is the caller's.
func (s *PostgresStore) Lookup(ctx context.Context, h Hash) (*Token, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	rows, err := s.pool.Query(ctx, s.lookupSQL, h[:])
	if err != nil {
		return nil, fmt.Errorf("keystore: postgres lookup: %w", err)
	}
	defer rows.Close()
	if n := len(rows.FieldDescriptions()); n != 8 {
		rows.Close()
		if err := rows.Err(); err != nil { // the query failed (timeout…) before describing its columns
			return nil, fmt.Errorf("keystore: postgres lookup: %w", err)
		}
		return nil, fmt.Errorf("keystore: postgres lookup: the lookup query returns %d columns; want 8: %s", n, lookupColumns)
	}
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("keystore: postgres lookup: %w", err)
		}
		return nil, ErrNotFound
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
	return tok, nil
}

// scanToken reads one lookup row (see PostgresOptions.LookupQuery).
func scanToken(rows pgx.Rows, h Hash) (*Token, error) {
	var (
		id, name, workspace, project pgtype.Text
		scopes                       []string
		created, expires, revoked    pgtype.Timestamptz
	)
	if err := rows.Scan(&id, &name, &workspace, &project, &scopes, &created, &expires, &revoked); err != nil {
		return nil, fmt.Errorf("keystore: postgres lookup: reading the row (want %s as text, text, text, text, text[], timestamptz, timestamptz, timestamptz): %w",
			lookupColumns, err)
	}
	if !id.Valid || id.String == "" {
		return nil, errors.New("keystore: postgres lookup: the row has a null or empty id")
	}
	if project.Valid && project.String == "" {
		// Not read as workspace-scoped: that would widen the token.
		return nil, fmt.Errorf("keystore: postgres lookup: token %s has an empty project; use NULL for a workspace-scoped token", printableID(id.String))
	}
	return &Token{
		ID:        id.String,
		Name:      name.String,
		Workspace: workspace.String,
		Project:   project.String,
		Hash:      h,
		Scopes:    scopes,
		CreatedAt: pgTime(created),
		ExpiresAt: pgTime(expires),
		RevokedAt: pgTime(revoked),
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
func (s *PostgresStore) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		s.wg.Wait()
		s.pool.Close()
	})
	return nil
}

// Watch subscribes fn to changes (see Watcher). Notifications are JSON
// payloads on the store's channel:
//
//	{"table": "tokens", "hash": "<64 hex chars>"}   fn(hash, false)
//	{"table": "tokens", "all": true}                fn(_, true)
//	{"table": "sessions", ...}                      the session set is reloaded
//
// A payload that is not one of these is logged (not its contents) and
// treated as "everything may have changed": Generation is bumped and fn is
// called with all=true. So it is when the listener connection was lost, once
// it listens again; OnReconnect is then called too.
func (s *PostgresStore) Watch(fn func(h Hash, all bool)) (stop func()) {
	s.subsMu.Lock()
	id := s.subSeq
	s.subSeq++
	s.subs[id] = fn
	s.subsMu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.subsMu.Lock()
			delete(s.subs, id)
			s.subsMu.Unlock()
		})
	}
}

// broadcast calls every subscriber.
func (s *PostgresStore) broadcast(h Hash, all bool) {
	s.subsMu.Lock()
	fns := make([]func(Hash, bool), 0, len(s.subs))
	for _, fn := range s.subs {
		fns = append(fns, fn)
	}
	s.subsMu.Unlock()
	for _, fn := range fns {
		fn(h, all)
	}
}

// invalidateAll says every token may have changed.
func (s *PostgresStore) invalidateAll() {
	s.gen.Add(1)
	s.broadcast(Hash{}, true)
}

// connectListener opens the dedicated listener connection and LISTENs.
func (s *PostgresStore) connectListener(ctx context.Context) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, backgroundTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, s.listenCfg)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.channel}.Sanitize()); err != nil {
		closeConn(conn)
		return nil, err
	}
	return conn, nil
}

// closeConn closes a connection, waiting at most a second for the server.
func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}

// listen is the listener goroutine: it receives notifications on conn and,
// when the connection is lost, reconnects with backoff.
func (s *PostgresStore) listen(conn *pgx.Conn) {
	defer s.wg.Done()
	for {
		err := s.receive(conn)
		closeConn(conn)
		if s.ctx.Err() != nil {
			return
		}
		s.log.Warn("postgres key store: listener connection lost; reconnecting",
			zap.String("channel", s.channel), zap.Error(scrub(err, s.secrets)))
		if conn = s.reconnect(); conn == nil {
			return // closing
		}
		// Changes made while nobody listened were not announced.
		s.triggerSessionReload()
		s.invalidateAll()
		s.log.Info("postgres key store: listener reconnected; cached tokens dropped",
			zap.String("channel", s.channel), zap.Uint64("generation", s.Generation()))
		if s.onReconnect != nil {
			s.onReconnect()
		}
	}
}

// receive handles notifications on conn until the connection fails or the
// store closes. After s.health without a notification it pings the server.
func (s *PostgresStore) receive(conn *pgx.Conn) error {
	for {
		wctx, cancel := context.WithTimeout(s.ctx, s.health)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if n != nil {
			s.handle(n)
		}
		if err == nil {
			continue
		}
		if s.ctx.Err() != nil {
			return s.ctx.Err()
		}
		if errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed() {
			// Idle: a timed-out wait leaves the connection usable.
			pctx, pcancel := context.WithTimeout(s.ctx, backgroundTimeout)
			err = conn.Ping(pctx)
			pcancel()
			if err == nil {
				continue
			}
			if s.ctx.Err() != nil {
				return s.ctx.Err()
			}
		}
		return err
	}
}

// reconnect re-establishes the listener, retrying with exponential backoff
// and jitter. It returns nil when the store is closing.
func (s *PostgresStore) reconnect() *pgx.Conn {
	delay := listenMinBackoff
	for attempt := 1; ; attempt++ {
		// Half to all of delay: listeners of many instances do not retry
		// in step.
		wait := delay/2 + rand.N(delay/2+1)
		t := time.NewTimer(wait)
		select {
		case <-s.ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		if s.beforeReconnect != nil {
			s.beforeReconnect()
		}
		conn, err := s.connectListener(s.ctx)
		if err == nil {
			return conn
		}
		if s.ctx.Err() != nil {
			return nil
		}
		delay = min(2*delay, listenMaxBackoff)
		s.log.Warn("postgres key store: listener reconnect failed",
			zap.Int("attempt", attempt), zap.Duration("next_in_at_most", delay),
			zap.Error(scrub(err, s.secrets)))
	}
}

// notification is the JSON payload of a change notification.
type notification struct {
	Table string  `json:"table"`
	Hash  *string `json:"hash"`
	ID    *string `json:"id"`
	All   bool    `json:"all"`
}

// handle acts on one notification.
func (s *PostgresStore) handle(n *pgconn.Notification) {
	if n.Channel != s.channel {
		return
	}
	var p notification
	if err := json.Unmarshal([]byte(n.Payload), &p); err != nil {
		s.malformed(n, "not a JSON object")
		return
	}
	switch p.Table {
	case "tokens":
		if p.All {
			s.invalidateAll()
			return
		}
		if p.Hash == nil {
			s.malformed(n, `"hash" missing`)
			return
		}
		h, ok := parseHexHash(*p.Hash)
		if !ok {
			s.malformed(n, `"hash" is not 64 hex characters`)
			return
		}
		s.broadcast(h, false)
	case "sessions":
		s.triggerSessionReload()
	default:
		s.malformed(n, `"table" is neither "tokens" nor "sessions"`)
	}
}

// malformed handles a payload that cannot be understood: the safe side is to
// assume everything changed.
func (s *PostgresStore) malformed(n *pgconn.Notification, why string) {
	s.log.Warn("postgres key store: malformed notification; dropping every cached token",
		zap.String("channel", n.Channel), zap.Uint32("sender_pid", n.PID),
		zap.Int("payload_bytes", len(n.Payload)), zap.String("problem", why))
	s.triggerSessionReload()
	s.invalidateAll()
}

// parseHexHash parses 64 hex characters (either case).
func parseHexHash(s string) (Hash, bool) {
	var h Hash
	if len(s) != 2*len(h) {
		return h, false
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return Hash{}, false
	}
	return h, true
}

// SessionRevoked reports whether the dashboard session id is in
// deplo_revoked_sessions with revoked_at at or before now (and expires_at
// null or in the future as of the last reload). It is an in-memory check;
// the set is reloaded on each "sessions" notification, after a listener
// reconnect, and every few minutes.
func (s *PostgresStore) SessionRevoked(id string) bool {
	return s.sessions.Load().revoked(id, time.Now())
}

// RevokeSession revokes a dashboard session now. expiresAt, if not zero, is
// when the session would expire anyway; the row is not needed after it.
// Revoking a revoked session keeps the earlier revoked_at and sets
// expires_at. The change reaches every store on the database by
// notification.
func (s *PostgresStore) RevokeSession(ctx context.Context, id string, expiresAt time.Time) error {
	if id == "" {
		return errors.New("keystore: revoke session: empty session id")
	}
	var exp *time.Time
	if !expiresAt.IsZero() {
		exp = &expiresAt
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO deplo_revoked_sessions (session_id, expires_at) VALUES ($1, $2)
ON CONFLICT (session_id) DO UPDATE SET
	revoked_at = LEAST(deplo_revoked_sessions.revoked_at, EXCLUDED.revoked_at),
	expires_at = EXCLUDED.expires_at`, id, exp)
	if err != nil {
		return fmt.Errorf("keystore: revoke session: %w", err)
	}
	s.triggerSessionReload()
	return nil
}

// triggerSessionReload asks the session goroutine to reload the set.
func (s *PostgresStore) triggerSessionReload() {
	if !s.sessionsEnabled {
		return
	}
	select {
	case s.sessionsReload <- struct{}{}:
	default: // one is already pending; it will read the latest rows
	}
}

// sessionLoop reloads the revoked-session set when asked, every
// sessionRefresh, and after a failure with backoff.
func (s *PostgresStore) sessionLoop() {
	defer s.wg.Done()
	refresh := time.NewTicker(sessionRefresh)
	defer refresh.Stop()
	var retry <-chan time.Time
	delay := time.Second
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.sessionsReload:
		case <-refresh.C:
		case <-retry:
		}
		err := s.loadSessions(s.ctx)
		if err == nil {
			retry, delay = nil, time.Second
			continue
		}
		if s.ctx.Err() != nil {
			return
		}
		s.log.Warn("postgres key store: reloading revoked sessions failed; keeping the last set",
			zap.Duration("retry_in", delay), zap.Error(scrub(err, s.secrets)))
		retry = time.After(delay)
		delay = min(2*delay, listenMaxBackoff)
	}
}

// loadSessions reads the revoked sessions still in force and swaps them in.
func (s *PostgresStore) loadSessions(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, backgroundTimeout)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT session_id, revoked_at FROM deplo_revoked_sessions
WHERE expires_at IS NULL OR expires_at > now()`)
	if err != nil {
		return err
	}
	m := make(map[string]time.Time)
	var (
		id string
		at pgtype.Timestamptz
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &at}, func() error {
		if at.Valid && at.InfinityModifier == pgtype.Infinity {
			return nil // revoked at +infinity: never
		}
		m[id] = pgTime(at) // NULL (custom tables) and -infinity: always
		return nil
	})
	if err != nil {
		return err
	}
	set := emptySessions
	if len(m) > 0 {
		set = &sessionSet{revokedAt: m}
	}
	s.sessions.Store(set)
	return nil
}

// CreateToken inserts a token. e.Hash is the stored form "sha256:<hex>"; a
// zero CreatedAt means now. The entry is checked like a key-file entry;
// a duplicate id or hash is an error that does not show the hash.
func (s *PostgresStore) CreateToken(ctx context.Context, e TokenEntry) error {
	h, err := ParseHash(e.Hash)
	if err != nil {
		return fmt.Errorf("keystore: create token: hash: %w", err)
	}
	switch {
	case e.ID == "":
		return errors.New("keystore: create token: empty id")
	case looksSecret(e.ID):
		return errors.New("keystore: create token: the id looks like an API token or its hash")
	case e.Workspace == "":
		return errors.New("keystore: create token: empty workspace")
	case e.Project != nil && *e.Project == "":
		return errors.New("keystore: create token: empty project; use nil for a workspace-scoped token")
	}
	for _, sc := range e.Scopes {
		if sc == "" {
			return errors.New("keystore: create token: empty scope name")
		}
	}
	scopes := e.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	var created *time.Time
	if !e.CreatedAt.IsZero() {
		created = &e.CreatedAt
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO deplo_tokens
	(hash, id, name, workspace, project, scopes, created_at, expires_at, revoked_at)
VALUES ($1, $2, $3, $4, $5, $6, coalesce($7, now()), $8, $9)`,
		h[:], e.ID, e.Name, e.Workspace, e.Project, scopes, created, e.ExpiresAt, e.RevokedAt)
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "23505" { // unique_violation
			if pe.ConstraintName == "deplo_tokens_pkey" {
				return errors.New("keystore: create token: a token with the same hash already exists")
			}
			return fmt.Errorf("keystore: create token: a token with id %q already exists", printableID(e.ID))
		}
		return fmt.Errorf("keystore: create token: %w", err)
	}
	return nil
}

// RevokeToken sets the revoked_at of the token with the given id to at (now
// if zero; a future time schedules the revocation). It is an error if no
// token has that id.
func (s *PostgresStore) RevokeToken(ctx context.Context, id string, at time.Time) error {
	var when *time.Time
	if !at.IsZero() {
		when = &at
	}
	tag, err := s.pool.Exec(ctx, `UPDATE deplo_tokens SET revoked_at = coalesce($2, now()) WHERE id = $1`, id, when)
	if err != nil {
		return fmt.Errorf("keystore: revoke token: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("keystore: revoke token: no token with id %q", printableID(id))
	}
	return nil
}

// ListTokens returns every token of the shipped table, oldest first, in the
// key-file form (no secret: the hash only).
func (s *PostgresStore) ListTokens(ctx context.Context) ([]TokenEntry, error) {
	rows, err := s.pool.Query(ctx, `SELECT hash, id, name, workspace, project, scopes, created_at, expires_at, revoked_at
FROM deplo_tokens ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("keystore: list tokens: %w", err)
	}
	var out []TokenEntry
	var (
		raw              []byte
		e                TokenEntry
		project          pgtype.Text
		created          time.Time
		expires, revoked pgtype.Timestamptz
	)
	_, err = pgx.ForEachRow(rows, []any{&raw, &e.ID, &e.Name, &e.Workspace, &project, &e.Scopes, &created, &expires, &revoked}, func() error {
		var h Hash
		if len(raw) != len(h) {
			return fmt.Errorf("token %s: hash of %d bytes", printableID(e.ID), len(raw))
		}
		copy(h[:], raw)
		t := e
		t.Scopes = slices.Clone(e.Scopes)
		t.Hash = FormatHash(h)
		t.CreatedAt = created
		t.Project, t.ExpiresAt, t.RevokedAt = nil, nil, nil
		if project.Valid {
			p := project.String
			t.Project = &p
		}
		if expires.Valid {
			x := pgTime(expires)
			t.ExpiresAt = &x
		}
		if revoked.Valid {
			x := pgTime(revoked)
			t.RevokedAt = &x
		}
		out = append(out, t)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("keystore: list tokens: %w", err)
	}
	return out, nil
}

//go:embed schema/*.sql
var schemaFiles embed.FS

// migration is one embedded schema file.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded schema files in version order. A file is
// named "<version>_<what>.sql".
func migrations() ([]migration, error) {
	names, err := fs.Glob(schemaFiles, "schema/*.sql")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, name := range names {
		base := path.Base(name)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("schema file %s: name must start with a positive version and '_'", base)
		}
		data, err := schemaFiles.ReadFile(name)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: base, sql: string(data)})
	}
	slices.SortFunc(out, func(a, b migration) int { return a.version - b.version })
	for i := 1; i < len(out); i++ {
		if out[i].version == out[i-1].version {
			return nil, fmt.Errorf("schema files %s and %s have the same version", out[i-1].name, out[i].name)
		}
	}
	return out, nil
}

// migrateLockKey is the pg_advisory_xact_lock key Migrate holds ("deploaut").
const migrateLockKey int64 = 0x6465706c6f617574

// Migrate brings the schema in the first schema of the connection's
// search_path up to date: it applies, in version order, each embedded
// schema file (keystore/schema/NNN_*.sql) not yet recorded in
// deplo_schema_migrations. Everything happens in one transaction holding a
// transaction-level advisory lock, so concurrent migrators (several
// instances starting at once) wait for each other and apply each file once;
// a failure applies nothing. Running it again is a no-op.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	ms, err := migrations()
	if err != nil {
		return fmt.Errorf("keystore: migrate: %w", err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("keystore: migrate: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrateLockKey); err != nil {
		return fmt.Errorf("keystore: migrate: taking the lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS deplo_schema_migrations (
	version    integer     PRIMARY KEY,
	applied_at timestamptz NOT NULL DEFAULT now()
)`); err != nil {
		return fmt.Errorf("keystore: migrate: %w", err)
	}
	rows, err := tx.Query(ctx, `SELECT version FROM deplo_schema_migrations`)
	if err != nil {
		return fmt.Errorf("keystore: migrate: %w", err)
	}
	applied, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return fmt.Errorf("keystore: migrate: %w", err)
	}
	for _, m := range ms {
		if slices.Contains(applied, int32(m.version)) {
			continue
		}
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return fmt.Errorf("keystore: migrate: %s: %w", m.name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO deplo_schema_migrations (version) VALUES ($1)`, m.version); err != nil {
			return fmt.Errorf("keystore: migrate: %s: %w", m.name, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("keystore: migrate: %w", err)
	}
	return nil
}

// isUndefinedTable reports whether err is PostgreSQL's undefined_table.
func isUndefinedTable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "42P01"
}

// Password patterns, for DSNs that do not parse.
var (
	urlPassword = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*://[^:@/]*:([^@/]*)@`)
	kvPassword  = regexp.MustCompile(`(?:^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|[^\s]+)`)
)

// dsnSecrets returns the password spellings a DSN contains, as written and
// decoded, so they can be removed from error messages.
func dsnSecrets(dsn string) []string {
	var out []string
	add := func(s string) {
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	if m := urlPassword.FindStringSubmatch(dsn); m != nil {
		add(m[1])
		if d, err := url.PathUnescape(m[1]); err == nil {
			add(d)
		}
	}
	if u, err := url.Parse(dsn); err == nil {
		if u.User != nil {
			if pw, ok := u.User.Password(); ok {
				add(pw)
			}
		}
		if q, err := url.ParseQuery(u.RawQuery); err == nil {
			add(q.Get("password"))
		}
	}
	for _, m := range kvPassword.FindAllStringSubmatch(dsn, -1) {
		v := m[1]
		add(v)
		if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
			add(v[1 : len(v)-1])
			add(strings.NewReplacer(`\'`, `'`, `\\`, `\`).Replace(v[1 : len(v)-1]))
		}
	}
	// Longest first, so a password containing another is removed whole.
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

// scrub returns err, or, when its message contains one of secrets, an error
// with the same message and every secret replaced by "xxxxx". The
// replacement does not wrap err, so the secret cannot be reached through
// errors.Unwrap.
func scrub(err error, secrets []string) error {
	if err == nil || len(secrets) == 0 {
		return err
	}
	msg := err.Error()
	clean := msg
	for _, s := range secrets {
		clean = strings.ReplaceAll(clean, s, "xxxxx")
	}
	if clean == msg {
		return err
	}
	return errors.New(clean)
}
