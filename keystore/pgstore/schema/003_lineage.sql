-- deplo-auth key store schema, version 3: token lineage and rotation.
--
-- Who created each token, and which token a rotation replaced. Existing
-- rows get NULLs: an unknown creator (a root) and no rotation, so every
-- token keeps working exactly as before; the lookup query is unchanged.
--   created_by_kind    'api_key' (created_by_id is the parent token's id),
--                      'jwt' (created_by_subject, created_by_session) or
--                      'operator' (the CLI in store mode); NULL: unknown
--   rotated_from       the id of the token this one replaced
-- Each token is rotated at most once (the unique index): a second rotation
-- of the same token is reuse.

ALTER TABLE deplo_tokens
	ADD COLUMN created_by_kind    text NULL CONSTRAINT deplo_tokens_created_by_kind CHECK (created_by_kind IN ('api_key', 'jwt', 'operator')),
	ADD COLUMN created_by_id      text NULL,
	ADD COLUMN created_by_subject text NULL,
	ADD COLUMN created_by_session text NULL,
	ADD COLUMN rotated_from       text NULL,
	ADD CONSTRAINT deplo_tokens_created_by_shape CHECK (
		created_by_kind IS NULL AND created_by_id IS NULL AND created_by_subject IS NULL AND created_by_session IS NULL
		OR created_by_kind = 'api_key' AND created_by_id <> '' AND created_by_subject IS NULL AND created_by_session IS NULL
		OR created_by_kind = 'jwt' AND created_by_id IS NULL AND created_by_subject <> ''
		OR created_by_kind = 'operator' AND created_by_id IS NULL AND created_by_subject IS NULL AND created_by_session IS NULL);

-- A parent's children (the cascade walks it), a session's or a user's
-- tokens (revoke by creator), a workspace's tokens (the live-token limit).
CREATE INDEX deplo_tokens_created_by_id ON deplo_tokens (created_by_id) WHERE created_by_id IS NOT NULL;
CREATE INDEX deplo_tokens_created_by_jwt ON deplo_tokens (workspace, created_by_subject, created_by_session) WHERE created_by_kind = 'jwt';
CREATE INDEX deplo_tokens_workspace ON deplo_tokens (workspace);
CREATE UNIQUE INDEX deplo_tokens_rotated_from ON deplo_tokens (rotated_from) WHERE rotated_from IS NOT NULL;
