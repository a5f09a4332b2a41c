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

	"github.com/deplo-sh/deplo-auth/internal/redact"
	"github.com/deplo-sh/deplo-auth/keystore"
)

var _ keystore.HashRevoker = (*Store)(nil)

// CreateToken inserts a token (see keystore.TokenManager) as Create does, with no
// limit. e.Hash is the stored form "sha256:<hex>"; a zero CreatedAt means
// now. The entry is checked like a key-file entry; a duplicate id or hash
// is an error that does not show the hash.
func (s *Store) CreateToken(ctx context.Context, e keystore.TokenEntry) error {
	_, err := s.Create(ctx, e, keystore.CreateOptions{})
	return err
}

// checkNew checks a new entry as a key-file entry is checked (setting
// defaults: scopes [], created_at now), and returns its hash.
func checkNew(e *keystore.TokenEntry) (keystore.Hash, error) {
	h, err := keystore.ParseHash(e.Hash)
	if err != nil {
		return h, fmt.Errorf("keystore: create token: hash: %w", err)
	}
	switch {
	case e.ID == "":
		return h, errors.New("keystore: create token: empty id")
	case redact.LooksSecret(e.ID):
		return h, errors.New("keystore: create token: the id looks like an API token or its hash")
	case e.Workspace == "":
		return h, errors.New("keystore: create token: empty workspace")
	case e.Project != nil && *e.Project == "":
		return h, errors.New("keystore: create token: empty project; use nil for a workspace-scoped token")
	}
	for _, sc := range e.Scopes {
		if sc == "" {
			return h, errors.New("keystore: create token: empty scope name")
		}
	}
	if e.AllowedIPs != nil {
		prefixes, err := keystore.ParseAllowedIPs(e.AllowedIPs)
		if err != nil || len(prefixes) == 0 {
			return h, errors.New("keystore: create token: allowed_ips: want 1 to 32 CIDR prefixes")
		}
		e.AllowedIPs = keystore.FormatAllowedIPs(prefixes)
	}
	if e.Scopes == nil {
		e.Scopes = []string{}
	}
	if e.CreatedAt.IsZero() {
		e.CreatedAt = time.Now().UTC().Truncate(time.Second)
	}
	return h, nil
}

// insertToken inserts e (checked by checkNew; h its hash) in tx.
func insertToken(ctx context.Context, tx pgx.Tx, e *keystore.TokenEntry, h keystore.Hash) error {
	opt := func(v string) *string {
		if v == "" {
			return nil
		}
		return &v
	}
	var kind, byID, bySubject, bySession *string
	if c := e.CreatedBy; c != nil {
		kind, byID, bySubject, bySession = opt(c.Kind), opt(c.ID), opt(c.Subject), opt(c.Session)
	}
	_, err := tx.Exec(ctx, `INSERT INTO deplo_tokens
	(hash, id, name, workspace, project, scopes, created_at, expires_at, revoked_at, allowed_ips, revoked_reason,
	 created_by_kind, created_by_id, created_by_subject, created_by_session, rotated_from)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text[]::cidr[], $11, $12, $13, $14, $15, $16)`,
		h[:], e.ID, e.Name, e.Workspace, e.Project, e.Scopes, e.CreatedAt, e.ExpiresAt, e.RevokedAt,
		e.AllowedIPs, opt(e.RevokedReason), kind, byID, bySubject, bySession, opt(e.RotatedFrom))
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "23505" { // unique_violation
			switch pe.ConstraintName {
			case "deplo_tokens_pkey":
				return errors.New("keystore: create token: a token with the same hash already exists")
			case "deplo_tokens_rotated_from":
				// A concurrent rotation of the same token won: reuse.
				return keystore.ErrTokenReused
			}
			return fmt.Errorf("keystore: create token: a token with id %q already exists", redact.ID(e.ID))
		}
		return fmt.Errorf("keystore: create token: %w", err)
	}
	return nil
}

// tokenColumns are the columns queryRecords reads, in order.
const tokenColumns = `hash, id, name, workspace, project, scopes, created_at, expires_at, revoked_at, last_used_at,
	allowed_ips::text[], revoked_reason,
	created_by_kind, created_by_id, created_by_subject, created_by_session, rotated_from`

// RevokeToken sets the revoked_at of the token with the given id, and of
// every token in its subtree, to the earlier of its current value and at
// (now if zero; a future time schedules the revocation), in one transaction
// holding the workspace's lock, and returns the row. See keystore.TokenManager.
func (s *Store) RevokeToken(ctx context.Context, id string, at time.Time) (keystore.TokenRecord, error) {
	if at.IsZero() {
		at = time.Now()
	}
	var (
		rec keystore.TokenRecord
		cs  []changed
	)
	err := s.inTx(ctx, "revoke token", func(tx pgx.Tx) error {
		var workspace string
		err := tx.QueryRow(ctx, `SELECT workspace FROM deplo_tokens WHERE id = $1`, id).Scan(&workspace)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return keystore.NoTokenError("revoke token", id)
		case err != nil:
			return err
		}
		if err := lockWorkspace(ctx, tx, workspace); err != nil {
			return err
		}
		if cs, err = revokeTree(ctx, tx, []string{id}, at); err != nil {
			return err
		}
		recs, err := queryRecords(ctx, tx, "revoke token", `SELECT `+tokenColumns+` FROM deplo_tokens WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			return keystore.NoTokenError("revoke token", id)
		}
		rec = recs[0]
		return nil
	})
	if err != nil {
		return keystore.TokenRecord{}, wrapLineage("revoke token", err)
	}
	s.forget(cs) // this instance at once, as in Create
	return rec, nil
}

// RevokeHash revokes the token whose hash is h, recording reason when this
// call revokes it. See keystore.HashRevoker.
func (s *Store) RevokeHash(ctx context.Context, h keystore.Hash, at time.Time, reason string) (keystore.TokenRecord, bool, error) {
	if at.IsZero() {
		at = time.Now().UTC().Truncate(time.Second)
	}
	var why *string
	if reason != "" {
		why = &reason
	}
	// The row is locked and read as it was, then revoked as RevokeToken
	// does: an earlier revocation stands with its reason. The workspace's
	// lineage lock first (see lockWorkspace), so the subtree revoked below
	// is the one committed. The table's trigger records every revoked row
	// in the change log, in this transaction.
	var (
		active bool
		rec    keystore.TokenRecord
		cs     []changed
	)
	err := s.inTx(ctx, "revoke token", func(tx pgx.Tx) error {
		var workspace string
		err := tx.QueryRow(ctx, `SELECT workspace FROM deplo_tokens WHERE hash = $1`, h[:]).Scan(&workspace)
		if err == nil {
			err = lockWorkspace(ctx, tx, workspace)
		}
		if err == nil {
			err = tx.QueryRow(ctx, `SELECT (revoked_at IS NULL OR $2 < revoked_at) AND (expires_at IS NULL OR $2 < expires_at)
FROM deplo_tokens WHERE hash = $1 FOR UPDATE`, h[:], at).Scan(&active)
		}
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return keystore.NoTokenError("revoke token", "")
		case err != nil:
			return fmt.Errorf("keystore: revoke token: %w", err)
		}
		recs, err := queryRecords(ctx, tx, "revoke token", `UPDATE deplo_tokens SET revoked_at = LEAST(revoked_at, $2),
	revoked_reason = CASE WHEN revoked_at IS NULL OR $2 < revoked_at THEN coalesce($3, revoked_reason) ELSE revoked_reason END
WHERE hash = $1 RETURNING `+tokenColumns, h[:], at, why)
		if err != nil {
			return err
		}
		rec = recs[0]
		// Its subtree goes with it (the token itself is already revoked).
		if cs, err = revokeTree(ctx, tx, []string{rec.ID}, at); err != nil {
			return fmt.Errorf("keystore: revoke token: %w", err)
		}
		return nil
	})
	if err != nil {
		return keystore.TokenRecord{}, false, err
	}
	s.broadcast(h, false) // this instance at once, as in RevokeToken
	s.forget(cs)
	return rec, active, nil
}

// Token returns the token with the given id. See keystore.TokenManager.
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

// querier is a pool, a transaction or a connection (the listener's).
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
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
		kind, byID, bySub, bySess  pgtype.Text
		rotatedFrom                pgtype.Text
	)
	_, err = pgx.ForEachRow(rows, []any{&raw, &e.ID, &e.Name, &e.Workspace, &project, &e.Scopes, &created, &expires, &revoked, &lastUsed,
		&allowed, &reason, &kind, &byID, &bySub, &bySess, &rotatedFrom}, func() error {
		var h keystore.Hash
		if len(raw) != len(h) {
			return fmt.Errorf("token %s: hash of %d bytes", redact.ID(e.ID), len(raw))
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
		t.CreatedBy = nil
		if kind.Valid {
			t.CreatedBy = &keystore.Creator{Kind: kind.String, ID: byID.String, Subject: bySub.String, Session: bySess.String}
		}
		t.RotatedFrom = rotatedFrom.String
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
