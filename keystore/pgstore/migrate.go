package pgstore

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

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

// MigrateResult is what Migrate did.
type MigrateResult struct {
	// Version is the schema's version afterwards: the highest recorded in
	// deplo_schema_migrations, which is above this release's own when a
	// newer release migrated the database.
	Version int
	// Applied lists the versions this call applied, in order; empty when
	// the schema was up to date.
	Applied []int
}

// Migrate brings the schema in the first schema of the connection's
// search_path up to date: it applies, in version order, each embedded
// schema file (keystore/pgstore/schema/NNN_*.sql) not yet recorded in
// deplo_schema_migrations. Everything happens in one transaction holding a
// transaction-level advisory lock, so concurrent migrators (several
// instances starting at once) wait for each other and apply each file once;
// a failure applies nothing. Running it again is a no-op.
func Migrate(ctx context.Context, pool *pgxpool.Pool) (MigrateResult, error) {
	ms, err := migrations()
	if err != nil {
		return MigrateResult{}, fmt.Errorf("keystore: migrate: %w", err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return MigrateResult{}, fmt.Errorf("keystore: migrate: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrateLockKey); err != nil {
		return MigrateResult{}, fmt.Errorf("keystore: migrate: taking the lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS deplo_schema_migrations (
	version    integer     PRIMARY KEY,
	applied_at timestamptz NOT NULL DEFAULT now()
)`); err != nil {
		return MigrateResult{}, fmt.Errorf("keystore: migrate: %w", err)
	}
	rows, err := tx.Query(ctx, `SELECT version FROM deplo_schema_migrations`)
	if err != nil {
		return MigrateResult{}, fmt.Errorf("keystore: migrate: %w", err)
	}
	recorded, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return MigrateResult{}, fmt.Errorf("keystore: migrate: %w", err)
	}
	var res MigrateResult
	for _, v := range recorded {
		res.Version = max(res.Version, int(v))
	}
	for _, m := range ms {
		if slices.Contains(recorded, int32(m.version)) {
			continue
		}
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return MigrateResult{}, fmt.Errorf("keystore: migrate: %s: %w", m.name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO deplo_schema_migrations (version) VALUES ($1)`, m.version); err != nil {
			return MigrateResult{}, fmt.Errorf("keystore: migrate: %s: %w", m.name, err)
		}
		res.Applied = append(res.Applied, m.version)
		res.Version = max(res.Version, m.version)
	}
	if err := tx.Commit(ctx); err != nil {
		return MigrateResult{}, fmt.Errorf("keystore: migrate: %w", err)
	}
	return res, nil
}
