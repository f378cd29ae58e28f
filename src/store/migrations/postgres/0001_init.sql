-- Accounts: one per enrolled person and provider. The provider's user id is personal
-- data and is stored encrypted, like the tokens.
CREATE TABLE accounts (
    id               BIGSERIAL PRIMARY KEY,
    name             TEXT NOT NULL UNIQUE,
    provider         TEXT NOT NULL CHECK (provider IN ('fitbit', 'withings')),
    status           TEXT NOT NULL CHECK (status IN ('active', 'needs_reconsent', 'removed')),
    provider_user_id BYTEA,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL
);

-- OAuth tokens, AEAD-encrypted (nonce || ciphertext), bound to their account and field.
CREATE TABLE tokens (
    account_id        BIGINT PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    refresh_token     BYTEA NOT NULL,
    access_token      BYTEA,
    access_expires_at TIMESTAMPTZ,
    updated_at        TIMESTAMPTZ NOT NULL
);

-- Sync cursors: how far each account's dataset has been read into the outbox.
CREATE TABLE cursors (
    account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    dataset    TEXT NOT NULL,
    position   TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (account_id, dataset)
);

-- Messages waiting for confirmed delivery. A message id is deterministic, so re-reading
-- the same upstream record never adds a second row.
CREATE TABLE outbox (
    seq           BIGSERIAL PRIMARY KEY,
    message_id    TEXT NOT NULL UNIQUE,
    account_id    BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    stream        TEXT NOT NULL,
    partition_key TEXT NOT NULL,
    payload       TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'quarantined')),
    attempts      BIGINT NOT NULL DEFAULT 0,
    last_error    TEXT,
    created_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX outbox_by_status ON outbox (status, seq);
