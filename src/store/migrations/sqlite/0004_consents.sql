-- What each person agreed to, and when: provider, granted scopes, time. `leave_hash` is
-- the SHA-256 of the secret in the person's "leave" link (the secret itself is shown
-- once, never stored). Deleted with the account's data on removal.
CREATE TABLE consents (
    account_id INTEGER PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    provider   TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    granted_at TEXT NOT NULL,
    leave_hash TEXT NOT NULL
);
