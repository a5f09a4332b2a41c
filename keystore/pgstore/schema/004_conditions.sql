-- deplo-auth key store schema, version 4: per-token conditions and why a
-- token was revoked.
--
-- allowed_ips: the client addresses the token may be used from (NULL: any).
-- revoked_reason: why it was revoked, when known ('leaked': reported by
-- secret scanning); NULL otherwise.
--
-- Both columns are NULL for every existing row, so existing tokens keep
-- working exactly as before. The update trigger of 001 compares whole rows,
-- so a change to either column notifies every instance.

ALTER TABLE deplo_tokens
	ADD COLUMN allowed_ips cidr[] NULL
		CONSTRAINT deplo_tokens_allowed_ips_bounded
		CHECK (cardinality(allowed_ips) BETWEEN 1 AND 32 AND array_position(allowed_ips, NULL) IS NULL),
	ADD COLUMN revoked_reason text NULL
		CONSTRAINT deplo_tokens_revoked_reason_nonempty CHECK (revoked_reason <> '');
