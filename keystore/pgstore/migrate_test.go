package pgstore

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestPostgresMigrate(t *testing.T) {
	e := newPGEnv(t, false)
	ctx := context.Background()
	ms, err := migrations()
	if err != nil || len(ms) == 0 {
		t.Fatalf("embedded migrations: %v, %d", err, len(ms))
	}
	var all []int
	for _, m := range ms {
		all = append(all, m.version)
	}
	last := all[len(all)-1]
	// The first call applies every version, the second none.
	for i, want := range [][]int{all, nil} {
		res, err := Migrate(ctx, e.admin)
		if err != nil {
			t.Fatalf("Migrate #%d: %v", i+1, err)
		}
		if res.Version != last || !slices.Equal(res.Applied, want) {
			t.Errorf("Migrate #%d: %+v, want version %d, applied %v", i+1, res, last, want)
		}
	}
	// A newer release's version recorded: reported as the schema's.
	if _, err := e.admin.Exec(ctx, `INSERT INTO deplo_schema_migrations (version) VALUES ($1)`, last+1); err != nil {
		t.Fatal(err)
	}
	if res, err := Migrate(ctx, e.admin); err != nil || res.Version != last+1 || len(res.Applied) != 0 {
		t.Errorf("with version %d recorded: %+v, %v; want version %d, nothing applied", last+1, res, err, last+1)
	}
	if _, err := e.admin.Exec(ctx, `DELETE FROM deplo_schema_migrations WHERE version = $1`, last+1); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := e.admin.QueryRow(ctx, `SELECT count(*) FROM deplo_schema_migrations`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(ms) {
		t.Errorf("deplo_schema_migrations has %d rows, want %d", n, len(ms))
	}

	// The table's constraints hold.
	_, h := newToken("tok_x")
	for _, bad := range []struct {
		what string
		sql  string
		args []any
	}{
		{"short hash", `INSERT INTO deplo_tokens (hash, id, workspace, scopes) VALUES ('\x00ff', 'tok_s', 'ws', '{}')`, nil},
		{"empty project", `INSERT INTO deplo_tokens (hash, id, workspace, project, scopes) VALUES ($1, 'tok_p', 'ws', '', '{}')`, []any{h[:]}},
		{"null scope", `INSERT INTO deplo_tokens (hash, id, workspace, scopes) VALUES ($1, 'tok_n', 'ws', ARRAY[NULL]::text[])`, []any{h[:]}},
		{"empty session id", `INSERT INTO deplo_revoked_sessions (session_id) VALUES ('')`, nil},
	} {
		if _, err := e.admin.Exec(ctx, bad.sql, bad.args...); err == nil {
			t.Errorf("%s accepted", bad.what)
		}
	}
}

func TestPostgresMigrateConcurrent(t *testing.T) {
	e := newPGEnv(t, false)
	var wg sync.WaitGroup
	errs := make([]error, 5)
	results := make([]MigrateResult, len(errs))
	for i := range errs {
		wg.Go(func() { results[i], errs[i] = Migrate(context.Background(), e.admin) })
	}
	wg.Wait()
	var applied []int
	for i, err := range errs {
		if err != nil {
			t.Errorf("migrator %d: %v", i, err)
		}
		applied = append(applied, results[i].Applied...)
	}
	// Each version applied once, by one of them.
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	var all []int
	for _, m := range ms {
		all = append(all, m.version)
	}
	slices.Sort(applied)
	if !slices.Equal(applied, all) {
		t.Errorf("the migrators applied %v between them, want each of %v once", applied, all)
	}
	var versions []int32
	rows, err := e.admin.Query(context.Background(), `SELECT version FROM deplo_schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	if versions, err = pgx.CollectRows(rows, pgx.RowTo[int32]); err != nil {
		t.Fatal(err)
	}
	var want []int32
	for _, m := range ms {
		want = append(want, int32(m.version))
	}
	if !slices.Equal(versions, want) {
		t.Errorf("versions applied: %v, want %v (each once)", versions, want)
	}
	e.insertToken(t, "tok_after_migrate")
}

// TestPostgresOpenMigrates: with Options.Migrate a store applies the schema
// when it reaches the server and reports what it applied (the CLI's migrate
// prints it); without the option it reports nothing.
func TestPostgresOpenMigrates(t *testing.T) {
	e := newPGEnv(t, false)
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	s := e.open(t, Options{Migrate: true, AdminOnly: true})
	res, ok := s.Migration()
	if !ok || res.Version != ms[len(ms)-1].version || len(res.Applied) != len(ms) {
		t.Errorf("Migration() = %+v, %v; want every version applied", res, ok)
	}
	if _, ok := e.open(t, Options{AdminOnly: true}).Migration(); ok {
		t.Error("a store opened without Migrate reports a migration")
	}
}
