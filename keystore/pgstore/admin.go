package pgstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/deplo-sh/deplo-auth/keystore"
)

// zero CreatedAt means now. The entry is checked like a key-file entry;
// a duplicate id or hash is an error that does not show the hash.
func (s *Store) CreateToken(ctx context.Context, e keystore.TokenEntry) error {
	h, err := keystore.ParseHash(e.Hash)
	if err != nil {
		return fmt.Errorf("keystore: create token: hash: %w", err)
	}
	switch {
	case e.ID == "":
		return errors.New("keystore: create token: empty id")
	case keystore.LooksSecret(e.ID):
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
			return fmt.Errorf("keystore: create token: a token with id %q already exists", keystore.PrintableID(e.ID))
		}
		return fmt.Errorf("keystore: create token: %w", err)
	}
	return nil
}

// RevokeToken sets the revoked_at of the token with the given id to at (now
// if zero; a future time schedules the revocation). It is an error if no
// token has that id.
func (s *Store) RevokeToken(ctx context.Context, id string, at time.Time) error {
	var when *time.Time
	if !at.IsZero() {
		when = &at
	}
	tag, err := s.pool.Exec(ctx, `UPDATE deplo_tokens SET revoked_at = coalesce($2, now()) WHERE id = $1`, id, when)
	if err != nil {
		return fmt.Errorf("keystore: revoke token: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("keystore: revoke token: no token with id %q", keystore.PrintableID(id))
	}
	return nil
}

// ListTokens returns every token of the shipped table, oldest first, in the
// key-file form (no secret: the hash only).
func (s *Store) ListTokens(ctx context.Context) ([]keystore.TokenEntry, error) {
	rows, err := s.pool.Query(ctx, `SELECT hash, id, name, workspace, project, scopes, created_at, expires_at, revoked_at
FROM deplo_tokens ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("keystore: list tokens: %w", err)
	}
	var out []keystore.TokenEntry
	var (
		raw              []byte
		e                keystore.TokenEntry
		project          pgtype.Text
		created          time.Time
		expires, revoked pgtype.Timestamptz
	)
	_, err = pgx.ForEachRow(rows, []any{&raw, &e.ID, &e.Name, &e.Workspace, &project, &e.Scopes, &created, &expires, &revoked}, func() error {
		var h keystore.Hash
		if len(raw) != len(h) {
			return fmt.Errorf("token %s: hash of %d bytes", keystore.PrintableID(e.ID), len(raw))
		}
		copy(h[:], raw)
		t := e
		t.Scopes = slices.Clone(e.Scopes)
		t.Hash = keystore.FormatHash(h)
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
