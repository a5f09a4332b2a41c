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
	for i := range 2 {
		if err := Migrate(ctx, e.admin); err != nil {
			t.Fatalf("Migrate #%d: %v", i+1, err)
		}
	}
	ms, err := migrations()
	if err != nil || len(ms) == 0 {
		t.Fatalf("embedded migrations: %v, %d", err, len(ms))
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
	for i := range errs {
		wg.Go(func() { errs[i] = Migrate(context.Background(), e.admin) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("migrator %d: %v", i, err)
		}
	}
	var versions []int32
	rows, err := e.admin.Query(context.Background(), `SELECT version FROM deplo_schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	if versions, err = pgx.CollectRows(rows, pgx.RowTo[int32]); err != nil {
		t.Fatal(err)
	}
	ms, err := migrations()
	if err != nil {
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
