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

var _ keystore.HashAdmin = (*Store)(nil)

// CreateToken inserts a token (see keystore.Admin). e.Hash is the stored form
// "sha256:<hex>"; a // zero CreatedAt means now. The entry is checked like a key-file entry;
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
	var allowed []string // NULL: anywhere
	if e.AllowedIPs != nil {
		prefixes, err := keystore.ParseAllowedIPs(e.AllowedIPs)
		if err != nil || len(prefixes) == 0 {
			return errors.New("keystore: create token: allowed_ips: want 1 to 32 CIDR prefixes")
		}
		allowed = keystore.FormatAllowedIPs(prefixes)
	}
	var reason *string
	if e.RevokedReason != "" {
		reason = &e.RevokedReason
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
	(hash, id, name, workspace, project, scopes, created_at, expires_at, revoked_at, allowed_ips, revoked_reason)
VALUES ($1, $2, $3, $4, $5, $6, coalesce($7, now()), $8, $9, $10::text[]::cidr[], $11)`,
		h[:], e.ID, e.Name, e.Workspace, e.Project, scopes, created, e.ExpiresAt, e.RevokedAt, allowed, reason)
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
	// The insert trigger notifies every instance; this one drops the hash
	// from its caches now, without waiting for its own notification.
	s.broadcast(h, false)
	return nil
}

// tokenColumns are the columns queryRecords reads, in order.
const tokenColumns = `hash, id, name, workspace, project, scopes, created_at, expires_at, revoked_at, last_used_at,
	allowed_ips::text[], revoked_reason`

// RevokeToken sets the revoked_at of the token with the given id to the
// earlier of its current value and at (now if zero; a future time schedules
// the revocation), and returns the row. See keystore.Admin.
func (s *Store) RevokeToken(ctx context.Context, id string, at time.Time) (keystore.TokenRecord, error) {
	var when *time.Time
	if !at.IsZero() {
		when = &at
	}
	// LEAST ignores a NULL revoked_at. An unchanged row sets off no
	// notification (the update trigger compares the rows).
	rec, err := s.queryOne(ctx, "revoke token", id, `UPDATE deplo_tokens SET revoked_at = LEAST(revoked_at, coalesce($2, now()))
WHERE id = $1 RETURNING `+tokenColumns, id, when)
	if err != nil {
		return keystore.TokenRecord{}, err
	}
	if h, err := keystore.ParseHash(rec.Hash); err == nil {
		s.broadcast(h, false) // this instance at once, as in CreateToken
	}
	return rec, nil
}

// RevokeHash revokes the token whose hash is h, recording reason when this
// call revokes it. See keystore.HashAdmin.
func (s *Store) RevokeHash(ctx context.Context, h keystore.Hash, at time.Time, reason string) (keystore.TokenRecord, bool, error) {
	if at.IsZero() {
		at = time.Now().UTC().Truncate(time.Second)
	}
	var why *string
	if reason != "" {
		why = &reason
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return keystore.TokenRecord{}, false, fmt.Errorf("keystore: revoke token: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	// The row is locked and read as it was, then revoked as RevokeToken
	// does: an earlier revocation stands with its reason.
	var active bool
	err = tx.QueryRow(ctx, `SELECT (revoked_at IS NULL OR $2 < revoked_at) AND (expires_at IS NULL OR $2 < expires_at)
FROM deplo_tokens WHERE hash = $1 FOR UPDATE`, h[:], at).Scan(&active)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return keystore.TokenRecord{}, false, keystore.NoTokenError("revoke token", "")
	case err != nil:
		return keystore.TokenRecord{}, false, fmt.Errorf("keystore: revoke token: %w", err)
	}
	recs, err := queryRecords(ctx, tx, "revoke token", `UPDATE deplo_tokens SET revoked_at = LEAST(revoked_at, $2),
	revoked_reason = CASE WHEN revoked_at IS NULL OR $2 < revoked_at THEN coalesce($3, revoked_reason) ELSE revoked_reason END
WHERE hash = $1 RETURNING `+tokenColumns, h[:], at, why)
	if err != nil {
		return keystore.TokenRecord{}, false, err
	}
	if err := tx.Commit(ctx); err != nil {
		return keystore.TokenRecord{}, false, fmt.Errorf("keystore: revoke token: %w", err)
	}
	s.broadcast(h, false) // this instance at once, as in RevokeToken
	return recs[0], active, nil
}

// Token returns the token with the given id. See keystore.Admin.
func (s *Store) Token(ctx context.Context, id string) (keystore.TokenRecord, error) {
	return s.queryOne(ctx, "token", id, `SELECT `+tokenColumns+` FROM deplo_tokens WHERE id = $1`, id)
}

// ListTokens returns the tokens of workspace ("" = all) in the shipped
// table, oldest first, in the key-file form (no secret: the hash only) with
// last_used_at.
func (s *Store) ListTokens(ctx context.Context, workspace string) ([]keystore.TokenRecord, error) {
	return s.queryRecords(ctx, "list tokens", `SELECT `+tokenColumns+` FROM deplo_tokens
WHERE $1 = '' OR workspace = $1 ORDER BY created_at, id`, workspace)
}

// queryOne runs a statement returning at most one row of tokenColumns, for
// the token with the given id; no row is keystore.NoTokenError. what names
// the operation in errors.
func (s *Store) queryOne(ctx context.Context, what, id, sql string, args ...any) (keystore.TokenRecord, error) {
	recs, err := s.queryRecords(ctx, what, sql, args...)
	switch {
	case err != nil:
		return keystore.TokenRecord{}, err
	case len(recs) == 0:
		return keystore.TokenRecord{}, keystore.NoTokenError(what, id)
	}
	return recs[0], nil
}

// queryRecords runs a statement returning rows of tokenColumns and reads
// them. what names the operation in errors.
func (s *Store) queryRecords(ctx context.Context, what, sql string, args ...any) ([]keystore.TokenRecord, error) {
	return queryRecords(ctx, s.pool, what, sql, args...)
}

// querier is a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// queryRecords is Store.queryRecords on q.
func queryRecords(ctx context.Context, q querier, what, sql string, args ...any) ([]keystore.TokenRecord, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("keystore: %s: %w", what, err)
	}
	var out []keystore.TokenRecord
	var (
		raw                        []byte
		e                          keystore.TokenEntry
		project, reason            pgtype.Text
		created                    time.Time
		expires, revoked, lastUsed pgtype.Timestamptz
		allowed                    []string
	)
	_, err = pgx.ForEachRow(rows, []any{&raw, &e.ID, &e.Name, &e.Workspace, &project, &e.Scopes, &created, &expires, &revoked, &lastUsed,
		&allowed, &reason}, func() error {
		var h keystore.Hash
		if len(raw) != len(h) {
			return fmt.Errorf("token %s: hash of %d bytes", keystore.PrintableID(e.ID), len(raw))
		}
		copy(h[:], raw)
		t := keystore.TokenRecord{TokenEntry: e}
		t.Scopes = slices.Clone(e.Scopes)
		t.Hash = keystore.FormatHash(h)
		t.CreatedAt = created
		t.Project = nil
		if project.Valid {
			p := project.String
			t.Project = &p
		}
		t.ExpiresAt = optionalTime(expires)
		t.RevokedAt = optionalTime(revoked)
		t.LastUsedAt = optionalTime(lastUsed)
		t.AllowedIPs = slices.Clone(allowed)
		t.RevokedReason = reason.String
		out = append(out, t)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("keystore: %s: %w", what, err)
	}
	return out, nil
}

// optionalTime converts a nullable timestamptz for a TokenRecord: NULL is
// nil; infinities as pgTime reads them.
func optionalTime(t pgtype.Timestamptz) *time.Time {
	if !t.Valid {
		return nil
	}
	x := pgTime(t)
	return &x
}
