-- Conveyor schema, version 13: the REST API's tokens and idempotency records (docs/api.md).
--
-- A token is shown once when it is made; only its SHA-256 hash is kept (looked up by that hash,
-- then compared in constant time), with a short prefix to tell tokens apart in a list. A
-- revoked token keeps its row (revoked_at set), so a list shows who had access and when.
CREATE TABLE conveyor.api_token (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL CHECK (name <> '' AND length(name) <= 200),
    scopes text[] NOT NULL
        CHECK (cardinality(scopes) >= 1 AND scopes <@ ARRAY['enqueue', 'read', 'admin']),
    prefix text NOT NULL,
    hash bytea NOT NULL UNIQUE CHECK (length(hash) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at timestamptz
);

-- one live token per name, so `conveyor token revoke NAME` names exactly one
CREATE UNIQUE INDEX api_token_live_name ON conveyor.api_token (name) WHERE revoked_at IS NULL;

-- The first response to a POST with an Idempotency-Key header, per token (token_id 0: a
-- loopback caller without a token), stored in the transaction of the action it answers.
-- `fingerprint` is a hash of the request (method, path, body): the same key with another
-- request is refused. Records older than 24 hours are reclaimed by the next request with the
-- key and deleted by the pruner.
CREATE TABLE conveyor.api_idempotency (
    token_id bigint NOT NULL,
    key text NOT NULL CHECK (octet_length(key) BETWEEN 1 AND 255),
    fingerprint bytea NOT NULL,
    status integer,
    body jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (token_id, key)
);

CREATE INDEX api_idempotency_created_at ON conveyor.api_idempotency (created_at);
