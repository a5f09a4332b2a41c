-- deplo-auth key store schema, version 5: a bulk change readable as one row.
--
-- A call of deplo_record_changes with more than 64 hashes (a bulk
-- revocation) is announced without its hashes, and every instance of a
-- fleet reads it at the same moment: N reads of thousands of log rows, which
-- cost the server about a millisecond each. The call now also writes the
-- hashes, packed end to end in sequence order, into ONE row of
-- deplo_change_ranges keyed by its range; an instance whose position is just
-- before the range reads that row instead of the log rows. The log itself is
-- unchanged (one row per hash): the poll, catch-up after a reconnect and an
-- instance that is not just before the range read it as before, and a
-- missing range row only means the log is read.
--
-- The row is written only when the range holds exactly the call's rows (no
-- other writer of deplo_changes took a sequence in between), so its length
-- is always 32 bytes per sequence of the range, and for at most 100,000
-- hashes (3.2 MB): a larger change is read from the log in batches, so that
-- no instance holds tens of megabytes at once. The hashes are random: the
-- column is stored out of line without compression (STORAGE EXTERNAL), which
-- pglz would try on every write and fail.
--
-- A range row is useless once the log rows it stands for are pruned (an
-- instance reads it only from the position just before it). Each new range
-- row first deletes those, so the table stays small whichever release of the
-- gateway prunes the log: a gateway older than this schema prunes
-- deplo_changes and advances deplo_changes_pruned, never this table.

CREATE TABLE deplo_change_ranges (
	first_seq  bigint      PRIMARY KEY,
	last_seq   bigint      NOT NULL,
	hashes     bytea       NOT NULL,
	changed_at timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT deplo_change_ranges_length CHECK (last_seq >= first_seq AND octet_length(hashes) = 32 * (last_seq - first_seq + 1))
);
ALTER TABLE deplo_change_ranges ALTER COLUMN hashes SET STORAGE EXTERNAL;

CREATE OR REPLACE FUNCTION deplo_record_changes(hashes bytea[]) RETURNS bigint LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
	first_seq bigint;
	last_seq  bigint;
	n         bigint;
	log_oid   bigint;
	packed    bytea;
BEGIN
	IF hashes IS NULL OR cardinality(hashes) = 0 THEN
		RETURN NULL;
	END IF;
	-- 'deplochg': writers of the log commit in sequence order.
	PERFORM pg_advisory_xact_lock(7234315393451812711);
	WITH ins AS (
		INSERT INTO deplo_changes (hash) SELECT h FROM unnest(hashes) AS u(h) RETURNING seq, hash, tableoid
	) SELECT min(seq), max(seq), count(*), min(tableoid::bigint), string_agg(hash, ''::bytea ORDER BY seq)
	INTO first_seq, last_seq, n, log_oid, packed FROM ins;
	IF n <= 64 AND array_position(hashes, NULL) IS NULL THEN
		PERFORM pg_notify('deplo_auth', json_build_object('table', 'tokens', 'log', log_oid, 'from', first_seq, 'to', last_seq,
			'hashes', (SELECT json_agg(encode(h, 'hex')) FROM unnest(hashes) AS u(h)))::text);
	ELSE
		IF array_position(hashes, NULL) IS NULL AND last_seq - first_seq + 1 = n AND n <= 100000 THEN
			DELETE FROM deplo_change_ranges r WHERE r.last_seq <= (SELECT through FROM deplo_changes_pruned);
			INSERT INTO deplo_change_ranges (first_seq, last_seq, hashes) VALUES (first_seq, last_seq, packed);
		END IF;
		PERFORM pg_notify('deplo_auth', json_build_object('table', 'tokens', 'log', log_oid, 'from', first_seq, 'to', last_seq)::text);
	END IF;
	RETURN last_seq;
END
$$;
