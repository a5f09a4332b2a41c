-- deplo-auth key store schema, version 2: the change log.
--
-- Every change that can alter the answer for a token (insert, revocation,
-- expiry change, deletion, truncation) appends one row per token hash to
-- deplo_changes, in the transaction that makes the change, through ONE
-- function: deplo_record_changes. Instances follow the log: by NOTIFY when
-- they can (fast path), by reading "seq > last" every poll interval always
-- (the bound on staleness), and from their last sequence after a reconnect
-- or failover instead of dropping their caches.
--
-- deplo_record_changes takes a transaction-level advisory lock, so writers of
-- the log commit in sequence order: a reader that has seen seq N has seen
-- every row below N that will ever be visible. It then sends ONE notification
-- per call on 'deplo_auth':
--   {"table": "tokens", "log": <oid of deplo_changes>, "from": <first seq>, "to": <last seq>, "hashes": ["<64 hex>", …]}
-- with "hashes" only when the call recorded at most 64 (a bulk revocation is
-- one notification carrying its range; listeners read the rows). "log" tells
-- the change logs of several schemas in one database apart.
--
-- Both functions run with the search_path of the migration (SET search_path
-- FROM CURRENT), so a write from a session with another search_path (an
-- operator's, schema-qualified) finds this schema's log.
--
-- The row-level notify triggers of version 1 are replaced by statement-level
-- triggers that record every changed row of a statement in one call. An
-- UPDATE that changes only last_used_at records nothing.

CREATE TABLE deplo_changes (
	seq        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	-- NULL: every token may have changed (TRUNCATE).
	hash       bytea       NULL CONSTRAINT deplo_changes_hash_length CHECK (hash IS NULL OR octet_length(hash) = 32),
	changed_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX deplo_changes_changed_at ON deplo_changes (changed_at);

-- One row: the highest sequence pruned. An instance whose last sequence is
-- below it cannot know what it missed and drops its caches.
CREATE TABLE deplo_changes_pruned (
	one     boolean PRIMARY KEY DEFAULT true CONSTRAINT deplo_changes_pruned_one_row CHECK (one),
	through bigint  NOT NULL
);
INSERT INTO deplo_changes_pruned (through) VALUES (0);
-- Statistics at once: without them the planner guesses thousands of rows.
ANALYZE deplo_changes_pruned;

-- deplo_record_changes records a change to each hash (NULL: every token) and
-- notifies the range. It must be called in the transaction that makes the
-- change; the rows and the notification become visible when it commits.
-- Returns the last sequence recorded (NULL when hashes is empty).
CREATE FUNCTION deplo_record_changes(hashes bytea[]) RETURNS bigint LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
	first_seq bigint;
	last_seq  bigint;
	n         bigint;
	log_oid   bigint;
BEGIN
	IF hashes IS NULL OR cardinality(hashes) = 0 THEN
		RETURN NULL;
	END IF;
	-- 'deplochg': writers of the log commit in sequence order.
	PERFORM pg_advisory_xact_lock(7234315393451812711);
	WITH ins AS (
		INSERT INTO deplo_changes (hash) SELECT h FROM unnest(hashes) AS u(h) RETURNING seq, tableoid
	) SELECT min(seq), max(seq), count(*), min(tableoid::bigint) INTO first_seq, last_seq, n, log_oid FROM ins;
	IF n <= 64 AND array_position(hashes, NULL) IS NULL THEN
		PERFORM pg_notify('deplo_auth', json_build_object('table', 'tokens', 'log', log_oid, 'from', first_seq, 'to', last_seq,
			'hashes', (SELECT json_agg(encode(h, 'hex')) FROM unnest(hashes) AS u(h)))::text);
	ELSE
		PERFORM pg_notify('deplo_auth', json_build_object('table', 'tokens', 'log', log_oid, 'from', first_seq, 'to', last_seq)::text);
	END IF;
	RETURN last_seq;
END
$$;

DROP TRIGGER deplo_tokens_notify_insert_delete ON deplo_tokens;
DROP TRIGGER deplo_tokens_notify_update ON deplo_tokens;
DROP TRIGGER deplo_tokens_notify_truncate ON deplo_tokens;
DROP FUNCTION deplo_tokens_notify();

CREATE FUNCTION deplo_tokens_changed() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
	hs bytea[];
BEGIN
	IF TG_OP = 'TRUNCATE' THEN
		PERFORM deplo_record_changes(ARRAY[NULL::bytea]);
		RETURN NULL;
	ELSIF TG_OP = 'INSERT' THEN
		SELECT array_agg(hash) INTO hs FROM new_rows;
	ELSIF TG_OP = 'DELETE' THEN
		SELECT array_agg(hash) INTO hs FROM old_rows;
	ELSE
		-- Every column but last_used_at is compared (columns added later
		-- included); a row that moved to another hash changed both. A FULL
		-- JOIN, which the planner can only hash or merge: a nested loop
		-- over two transition tables of a bulk update is quadratic. The
		-- rows are compared whole first (cheap); only a row whose
		-- last_used_at changed too is compared without it (to_jsonb).
		SELECT array_agg(coalesce(n.hash, o.hash)) INTO hs
		FROM old_rows o FULL JOIN new_rows n ON o.hash = n.hash
		WHERE o.hash IS NULL OR n.hash IS NULL
			OR (o IS DISTINCT FROM n AND (o.last_used_at IS NOT DISTINCT FROM n.last_used_at
				OR (to_jsonb(o) - 'last_used_at') IS DISTINCT FROM (to_jsonb(n) - 'last_used_at')));
	END IF;
	PERFORM deplo_record_changes(hs);
	RETURN NULL;
END
$$;

CREATE TRIGGER deplo_tokens_changed_insert
	AFTER INSERT ON deplo_tokens REFERENCING NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION deplo_tokens_changed();

CREATE TRIGGER deplo_tokens_changed_update
	AFTER UPDATE ON deplo_tokens REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION deplo_tokens_changed();

CREATE TRIGGER deplo_tokens_changed_delete
	AFTER DELETE ON deplo_tokens REFERENCING OLD TABLE AS old_rows
	FOR EACH STATEMENT EXECUTE FUNCTION deplo_tokens_changed();

CREATE TRIGGER deplo_tokens_changed_truncate
	AFTER TRUNCATE ON deplo_tokens
	FOR EACH STATEMENT EXECUTE FUNCTION deplo_tokens_changed();
