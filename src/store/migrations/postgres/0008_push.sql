-- Push notifications. A notification is a note on an account's dataset: due now (after
-- the coalescing delay), when it arrived (`pushed_at`, Unix ms) and the earliest instant
-- it says changed (`push_from`), both cleared by the sync that serves them. A sync that
-- a notification arrived during leaves its dataset due again.
ALTER TABLE schedule ADD COLUMN pushed_at BIGINT;
ALTER TABLE schedule ADD COLUMN push_from BIGINT;
-- When the account's provider-side subscriptions were last checked (Unix ms).
ALTER TABLE accounts ADD COLUMN push_checked_at BIGINT;
-- Deletions upstream told of: published messages cannot be recalled, but the operator can
-- see what was deleted and when (no values: only the dataset and the changed interval).
CREATE TABLE push_deletions (
    id          BIGSERIAL PRIMARY KEY,
    account_id  BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    dataset     TEXT NOT NULL,
    start_ms    BIGINT,
    end_ms      BIGINT,
    received_at BIGINT NOT NULL
);
