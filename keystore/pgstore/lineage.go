package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/deplo-sh/deplo-auth/keystore"
)

// Advisory lock keys (the two-key form: a space apart from Migrate's
// one-key lock). Every lineage write of a workspace — create, rotate,
// revoke — first takes the workspace's lock for its transaction, so the
// creator checked, the live tokens counted and the subtree walked are the
// ones committed: a revocation that commits before a create's check is
// seen by it, and a create that commits first is in the revocation's
// subtree. A create by a session takes that session's lock shared;
// RevokeSession takes it exclusively.
const (
	workspaceLockKey int32 = 0x64706c77 // "dplw"
	sessionLockKey   int32 = 0x64706c73 // "dpls"
)

// subtreeSQL walks the tokens named by $1 (text[]) and their descendants.
const subtreeSQL = `WITH RECURSIVE tree(id) AS (
	SELECT id FROM deplo_tokens WHERE id = ANY($1::text[])
	UNION
	SELECT t.id FROM deplo_tokens t JOIN tree ON t.created_by_id = tree.id
)`

// inTx runs fn in a transaction through Write (the change log records
// what fn changes in deplo_tokens; this instance catches up after the
// commit); what names the operation in errors. An error from fn (one of
// keystore's lineage errors, not found…) is returned as is, after rollback.
func (s *Store) inTx(ctx context.Context, what string, fn func(pgx.Tx) error) error {
	return s.write(ctx, what, func(tx pgx.Tx) ([]keystore.Hash, error) { return nil, fn(tx) }, false)
}

// lockWorkspace takes the workspace's lineage lock for the transaction.
func lockWorkspace(ctx context.Context, tx pgx.Tx, workspace string) error {
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, workspaceLockKey, workspace)
	return err
}

// checkCreator re-checks c, creating in workspace, at now inside tx (whose
// workspace lock is held), and returns the end of its life (nil = none).
func checkCreator(ctx context.Context, tx pgx.Tx, c *keystore.Creator, workspace string, now time.Time) (*time.Time, error) {
	switch {
	case c == nil:
		return nil, nil
	case c.Kind == keystore.CreatorAPIKey:
		var (
			ws               string
			expires, revoked pgtype.Timestamptz
		)
		err := tx.QueryRow(ctx, `SELECT workspace, expires_at, revoked_at FROM deplo_tokens WHERE id = $1`, c.ID).
			Scan(&ws, &expires, &revoked)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return nil, keystore.ErrCreatorInactive
		case err != nil:
			return nil, err
		}
		p := keystore.TokenEntry{ExpiresAt: optionalTime(expires), RevokedAt: optionalTime(revoked)}
		if ws != workspace || !p.Live(now) {
			return nil, keystore.ErrCreatorInactive
		}
		return p.EffectiveEnd(), nil
	case c.Kind == keystore.CreatorJWT && c.Session != "":
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock_shared($1, hashtext($2))`, sessionLockKey, c.Session); err != nil {
			return nil, err
		}
		var revoked bool
		// A row is a revocation: revoked_at is when it was written.
		err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM deplo_revoked_sessions WHERE session_id = $1)`,
			c.Session).Scan(&revoked)
		if err != nil {
			return nil, err
		}
		if revoked {
			return nil, keystore.ErrCreatorInactive
		}
	}
	return nil, nil
}

// liveIn counts the tokens of workspace that work at now.
func liveIn(ctx context.Context, tx pgx.Tx, workspace string, now time.Time) (int, error) {
	var n int
	err := tx.QueryRow(ctx, `SELECT count(*) FROM deplo_tokens WHERE workspace = $1
	AND (revoked_at IS NULL OR revoked_at > $2) AND (expires_at IS NULL OR expires_at > $2)`, workspace, now).Scan(&n)
	return n, err
}

// changed is a row a lineage write changed: its hash is dropped from this
// instance's caches after the commit (every other instance hears of it by
// notification).
type changed struct {
	id   string
	hash []byte
}

func scanChanged(rows pgx.Rows) ([]changed, error) {
	var out []changed
	var c changed
	_, err := pgx.ForEachRow(rows, []any{&c.id, &c.hash}, func() error {
		out = append(out, changed{c.id, append([]byte(nil), c.hash...)})
		return nil
	})
	return out, err
}

// revokeTree revokes the tokens ids names and their subtrees at at (the
// earlier revoked_at stands), in tx, and returns the rows changed.
func revokeTree(ctx context.Context, tx pgx.Tx, ids []string, at time.Time) ([]changed, error) {
	return capTree(ctx, tx, "revoked_at", ids, at)
}

// expireTree caps the expiry of the tokens ids names and of their subtrees
// at at, in tx.
func expireTree(ctx context.Context, tx pgx.Tx, ids []string, at time.Time) ([]changed, error) {
	return capTree(ctx, tx, "expires_at", ids, at)
}

// capTree sets column (revoked_at or expires_at) to at on the subtrees of
// ids where it is later or unset: one statement.
func capTree(ctx context.Context, tx pgx.Tx, column string, ids []string, at time.Time) ([]changed, error) {
	rows, err := tx.Query(ctx, subtreeSQL+`
UPDATE deplo_tokens SET `+column+` = $2 WHERE id IN (SELECT id FROM tree) AND (`+column+` IS NULL OR `+column+` > $2)
RETURNING id, hash`, ids, at)
	if err != nil {
		return nil, err
	}
	return scanChanged(rows)
}

// forget drops the changed rows' hashes from this instance's caches.
func (s *Store) forget(cs []changed) {
	for _, c := range cs {
		var h keystore.Hash
		if len(c.hash) == len(h) {
			copy(h[:], c.hash)
			s.broadcast(h, false)
		}
	}
}

func ids(cs []changed) []string {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.id)
	}
	return out
}

// Create inserts e after the lineage checks, in one transaction holding the
// workspace's lock (see keystore.TokenManager).
func (s *Store) Create(ctx context.Context, e keystore.TokenEntry, opt keystore.CreateOptions) (keystore.TokenEntry, error) {
	h, err := checkNew(&e)
	if err != nil {
		return keystore.TokenEntry{}, err
	}
	now := opt.Now
	if now.IsZero() {
		now = time.Now()
	}
	err = s.inTx(ctx, "create token", func(tx pgx.Tx) error {
		if err := lockWorkspace(ctx, tx, e.Workspace); err != nil {
			return fmt.Errorf("keystore: create token: %w", err)
		}
		end, err := checkCreator(ctx, tx, e.CreatedBy, e.Workspace, now)
		if err != nil {
			return wrapLineage("create token", err)
		}
		e.ExpiresAt = keystore.CapExpiry(e.ExpiresAt, end)
		if opt.MaxLive > 0 {
			n, err := liveIn(ctx, tx, e.Workspace, now)
			if err != nil {
				return fmt.Errorf("keystore: create token: %w", err)
			}
			if n >= opt.MaxLive {
				return keystore.ErrLimitReached
			}
		}
		if s.beforeInsert != nil {
			s.beforeInsert()
		}
		return insertToken(ctx, tx, &e, h)
	})
	if err != nil {
		return keystore.TokenEntry{}, err
	}
	// The insert is notified to every instance; this one drops the hash
	// from its caches now, without waiting for its own notification.
	s.broadcast(h, false)
	return e, nil
}

// wrapLineage returns the lineage sentinels as they are (callers test them
// with errors.Is) and wraps anything else as a store failure.
func wrapLineage(what string, err error) error {
	for _, sentinel := range []error{keystore.ErrCreatorInactive, keystore.ErrLimitReached,
		keystore.ErrTokenInactive, keystore.ErrTokenReused, keystore.ErrNotFound} {
		if errors.Is(err, sentinel) {
			return err
		}
	}
	return fmt.Errorf("keystore: %s: %w", what, err)
}

// Rotate replaces a token in one transaction holding the workspace's lock
// (see keystore.TokenManager).
func (s *Store) Rotate(ctx context.Context, r keystore.RotateRequest) (keystore.TokenEntry, error) {
	now := r.Now
	if now.IsZero() {
		now = time.Now().UTC().Truncate(time.Second)
	}
	var (
		out    keystore.TokenEntry
		h      keystore.Hash
		reused []changed
		done   []changed
	)
	h, err := keystore.ParseHash(r.NewHash)
	if err != nil {
		return out, fmt.Errorf("keystore: rotate token: hash: %w", err)
	}
	err = s.inTx(ctx, "rotate token", func(tx pgx.Tx) error {
		if err := lockWorkspace(ctx, tx, r.Workspace); err != nil {
			return err
		}
		recs, err := queryRecords(ctx, tx, "rotate token", `SELECT `+tokenColumns+` FROM deplo_tokens WHERE id = $1 AND workspace = $2`, r.ID, r.Workspace)
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			return keystore.NoTokenError("rotate token", r.ID)
		}
		old := recs[0].TokenEntry
		if _, err := checkCreator(ctx, tx, r.Caller, r.Workspace, now); err != nil {
			return err
		}
		var rotated bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM deplo_tokens WHERE rotated_from = $1)`, r.ID).Scan(&rotated); err != nil {
			return err
		}
		if rotated {
			// Reuse: the token, every token rotated from it (and from
			// those), and their subtrees.
			reused, err = reuseFamily(ctx, tx, r.ID, now)
			return err
		}
		if !old.Live(now) {
			return keystore.ErrTokenInactive
		}
		end, err := checkCreator(ctx, tx, old.CreatedBy, r.Workspace, now)
		if err != nil {
			return keystore.ErrTokenInactive // its parent is gone: so is it
		}
		out = keystore.TokenEntry{
			ID: r.NewID, Name: old.Name, Hash: r.NewHash, Workspace: old.Workspace, Project: old.Project,
			Scopes: old.Scopes, CreatedAt: now, CreatedBy: old.CreatedBy, RotatedFrom: old.ID, AllowedIPs: old.AllowedIPs,
		}
		out.ExpiresAt = keystore.CapExpiry(keystore.RotatedLifetime(&old, now), end)
		if r.MaxLifetime > 0 {
			x := now.Add(r.MaxLifetime)
			out.ExpiresAt = keystore.CapExpiry(out.ExpiresAt, &x)
		}
		if r.MaxLive > 0 {
			n, err := liveIn(ctx, tx, r.Workspace, now)
			if err != nil {
				return err
			}
			if r.Grace == 0 {
				n-- // the old one stops now
			}
			if n >= r.MaxLive {
				return keystore.ErrLimitReached
			}
		}
		if r.Grace == 0 {
			done, err = revokeTree(ctx, tx, []string{old.ID}, now)
		} else {
			done, err = expireTree(ctx, tx, []string{old.ID}, now.Add(r.Grace))
		}
		if err != nil {
			return err
		}
		return insertToken(ctx, tx, &out, h)
	})
	if err != nil {
		return keystore.TokenEntry{}, wrapLineage("rotate token", err)
	}
	if reused != nil {
		s.forget(reused)
		return keystore.TokenEntry{}, &keystore.ReuseError{Revoked: ids(reused)}
	}
	s.forget(done)
	s.broadcast(h, false)
	return out, nil
}

// reuseFamily revokes, at now, the token id, the chain of tokens rotated
// from it, and all their subtrees. It returns a non-nil slice.
func reuseFamily(ctx context.Context, tx pgx.Tx, id string, now time.Time) ([]changed, error) {
	rows, err := tx.Query(ctx, `WITH RECURSIVE chain(id) AS (
	SELECT $1::text
	UNION
	SELECT t.id FROM deplo_tokens t JOIN chain ON t.rotated_from = chain.id
) SELECT id FROM chain`, id)
	if err != nil {
		return nil, err
	}
	family, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	cs, err := revokeTree(ctx, tx, family, now)
	if cs == nil {
		cs = []changed{}
	}
	return cs, err
}

// RevokeCreatedBy revokes everything a credential created, in one
// transaction holding the workspace's lock (see keystore.TokenManager).
func (s *Store) RevokeCreatedBy(ctx context.Context, workspace, project string, f keystore.Creator, at time.Time) ([]string, error) {
	if at.IsZero() {
		at = time.Now().UTC().Truncate(time.Second)
	}
	nilIfEmpty := func(v string) *string {
		if v == "" {
			return nil
		}
		return &v
	}
	var cs []changed
	err := s.inTx(ctx, "revoke tokens by creator", func(tx pgx.Tx) error {
		if err := lockWorkspace(ctx, tx, workspace); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT id FROM deplo_tokens WHERE workspace = $1
	AND ($2::text IS NULL OR project = $2) AND created_by_kind = $3
	AND ($4::text IS NULL OR created_by_id = $4) AND ($5::text IS NULL OR created_by_subject = $5)
	AND ($6::text IS NULL OR created_by_session = $6)`,
			workspace, nilIfEmpty(project), f.Kind, nilIfEmpty(f.ID), nilIfEmpty(f.Subject), nilIfEmpty(f.Session))
		if err != nil {
			return err
		}
		roots, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		cs, err = revokeTree(ctx, tx, roots, at)
		return err
	})
	if err != nil {
		return nil, wrapLineage("revoke tokens by creator", err)
	}
	s.forget(cs)
	return ids(cs), nil
}
