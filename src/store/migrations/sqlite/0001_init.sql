-- Accounts: one per enrolled person and provider. The provider's user id is personal
-- data and is stored encrypted, like the tokens.
CREATE TABLE accounts (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    name             TEXT NOT NULL UNIQUE,
    provider         TEXT NOT NULL CHECK (provider IN ('fitbit', 'withings')),
    status           TEXT NOT NULL CHECK (status IN ('active', 'needs_reconsent', 'removed')),
    provider_user_id BLOB,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);

-- OAuth tokens, AEAD-encrypted (nonce || ciphertext), bound to their account and field.
CREATE TABLE tokens (
    account_id        INTEGER PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    refresh_token     BLOB NOT NULL,
    access_token      BLOB,
    access_expires_at TEXT,
    updated_at        TEXT NOT NULL
);

-- Sync cursors: how far each account's dataset has been read into the outbox.
CREATE TABLE cursors (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    dataset    TEXT NOT NULL,
    position   TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (account_id, dataset)
);

-- Messages waiting for confirmed delivery. A message id is deterministic, so re-reading
-- the same upstream record never adds a second row.
CREATE TABLE outbox (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id    TEXT NOT NULL UNIQUE,
    account_id    INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    stream        TEXT NOT NULL,
    partition_key TEXT NOT NULL,
    payload       TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'quarantined')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    created_at    TEXT NOT NULL
);
CREATE INDEX outbox_by_status ON outbox (status, seq);
