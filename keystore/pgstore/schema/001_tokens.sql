-- deplo-auth key store schema, version 1.
--
-- Applied by keystore.Migrate inside one transaction. Objects are created in
-- the first schema of the search_path. Every change that can alter an
-- authentication answer is announced on the channel 'deplo_auth' with a JSON
-- payload:
--   {"table": "tokens", "hash": "<64 lowercase hex chars>"}  a token row changed
--   {"table": "tokens", "all": true}                         deplo_tokens was truncated
--   {"table": "sessions", "id": "<session id>"}              a revoked session changed
--   {"table": "sessions", "all": true}                       deplo_revoked_sessions was truncated
-- An UPDATE that changes only last_used_at announces nothing.

CREATE TABLE deplo_tokens (
	hash         bytea       PRIMARY KEY CONSTRAINT deplo_tokens_hash_length CHECK (octet_length(hash) = 32),
	id           text        NOT NULL UNIQUE CONSTRAINT deplo_tokens_id_nonempty CHECK (id <> ''),
	name         text        NOT NULL DEFAULT '',
	workspace    text        NOT NULL CONSTRAINT deplo_tokens_workspace_nonempty CHECK (workspace <> ''),
	-- NULL: workspace-scoped. '' would be ambiguous, so it is refused.
	project      text        NULL CONSTRAINT deplo_tokens_project_nonempty CHECK (project <> ''),
	scopes       text[]      NOT NULL CONSTRAINT deplo_tokens_scopes_no_nulls CHECK (array_position(scopes, NULL) IS NULL),
	created_at   timestamptz NOT NULL DEFAULT now(),
	expires_at   timestamptz NULL,
	revoked_at   timestamptz NULL,
	last_used_at timestamptz NULL
);

CREATE TABLE deplo_revoked_sessions (
	-- Bounded so that a notification payload (8000 bytes at most) always fits.
	session_id text        PRIMARY KEY CONSTRAINT deplo_revoked_sessions_id_length CHECK (octet_length(session_id) BETWEEN 1 AND 1024),
	revoked_at timestamptz NOT NULL DEFAULT now(),
	-- When the session would have expired anyway; the row is no longer
	-- needed after that. NULL: kept for good.
	expires_at timestamptz NULL
);

CREATE INDEX deplo_revoked_sessions_expires_at ON deplo_revoked_sessions (expires_at);

CREATE FUNCTION deplo_tokens_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_LEVEL = 'STATEMENT' THEN -- TRUNCATE
		PERFORM pg_notify('deplo_auth', json_build_object('table', 'tokens', 'all', true)::text);
		RETURN NULL;
	END IF;
	IF TG_OP = 'UPDATE' AND NEW.hash IS DISTINCT FROM OLD.hash THEN
		-- The row moved to another hash: the old one changed too.
		PERFORM pg_notify('deplo_auth', json_build_object('table', 'tokens', 'hash', encode(OLD.hash, 'hex'))::text);
	END IF;
	PERFORM pg_notify('deplo_auth', json_build_object('table', 'tokens', 'hash', encode(coalesce(NEW.hash, OLD.hash), 'hex'))::text);
	RETURN NULL;
END
$$;

CREATE TRIGGER deplo_tokens_notify_insert_delete
	AFTER INSERT OR DELETE ON deplo_tokens
	FOR EACH ROW EXECUTE FUNCTION deplo_tokens_notify();

-- Every column but last_used_at is compared (columns added later included),
-- so the last-used writer never sets off a notification.
CREATE TRIGGER deplo_tokens_notify_update
	AFTER UPDATE ON deplo_tokens
	FOR EACH ROW
	WHEN ((to_jsonb(OLD) - 'last_used_at') IS DISTINCT FROM (to_jsonb(NEW) - 'last_used_at'))
	EXECUTE FUNCTION deplo_tokens_notify();

CREATE TRIGGER deplo_tokens_notify_truncate
	AFTER TRUNCATE ON deplo_tokens
	FOR EACH STATEMENT EXECUTE FUNCTION deplo_tokens_notify();

CREATE FUNCTION deplo_revoked_sessions_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_LEVEL = 'STATEMENT' THEN -- TRUNCATE
		PERFORM pg_notify('deplo_auth', json_build_object('table', 'sessions', 'all', true)::text);
		RETURN NULL;
	END IF;
	IF TG_OP = 'UPDATE' AND NEW.session_id IS DISTINCT FROM OLD.session_id THEN
		PERFORM pg_notify('deplo_auth', json_build_object('table', 'sessions', 'id', OLD.session_id)::text);
	END IF;
	PERFORM pg_notify('deplo_auth', json_build_object('table', 'sessions', 'id', coalesce(NEW.session_id, OLD.session_id))::text);
	RETURN NULL;
END
$$;

CREATE TRIGGER deplo_revoked_sessions_notify
	AFTER INSERT OR UPDATE OR DELETE ON deplo_revoked_sessions
	FOR EACH ROW EXECUTE FUNCTION deplo_revoked_sessions_notify();

CREATE TRIGGER deplo_revoked_sessions_notify_truncate
	AFTER TRUNCATE ON deplo_revoked_sessions
	FOR EACH STATEMENT EXECUTE FUNCTION deplo_revoked_sessions_notify();
