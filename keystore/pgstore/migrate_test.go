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
	all := embeddedVersions(t)
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
	if n != len(all) {
		t.Errorf("deplo_schema_migrations has %d rows, want %d", n, len(all))
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
	// Each version applied once, by one of them, and recorded once.
	want := embeddedVersions(t)
	slices.Sort(applied)
	if !slices.Equal(applied, want) {
		t.Errorf("the migrators applied %v between them, want each of %v once", applied, want)
	}
	rows, err := e.admin.Query(context.Background(), `SELECT version FROM deplo_schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(versions, want) {
		t.Errorf("versions applied: %v, want %v (each once)", versions, want)
	}
	e.insertToken(t, "tok_after_migrate")
}

// embeddedVersions lists the versions of the embedded schema files, in order.
func embeddedVersions(t *testing.T) []int {
	t.Helper()
	ms, err := migrations()
	if err != nil || len(ms) == 0 {
		t.Fatalf("embedded migrations: %v, %d", err, len(ms))
	}
	vs := make([]int, len(ms))
	for i, m := range ms {
		vs[i] = m.version
	}
	return vs
}
