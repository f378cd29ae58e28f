-- A provider is a name from the source registry, checked by wearbridge, not by a SQL
-- CHECK: adding a source must not need a schema change. SQLite cannot drop a constraint,
-- so the table is rebuilt (the documented procedure: run with foreign keys off, which the
-- migrator does, and checked with foreign_key_check before commit).
CREATE TABLE accounts_new (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    name             TEXT NOT NULL UNIQUE,
    provider         TEXT NOT NULL CHECK (length(provider) BETWEEN 1 AND 32),
    status           TEXT NOT NULL CHECK (status IN ('active', 'needs_reconsent', 'removed')),
    provider_user_id BLOB,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    lease_owner      TEXT,
    lease_until      INTEGER
);
INSERT INTO accounts_new (id, name, provider, status, provider_user_id, created_at, updated_at, lease_owner, lease_until)
    SELECT id, name, provider, status, provider_user_id, created_at, updated_at, lease_owner, lease_until FROM accounts;
-- Keep the id sequence: an id is never handed out twice.
DELETE FROM sqlite_sequence WHERE name = 'accounts_new';
INSERT INTO sqlite_sequence (name, seq) SELECT 'accounts_new', seq FROM sqlite_sequence WHERE name = 'accounts';
DROP TABLE accounts;
ALTER TABLE accounts_new RENAME TO accounts;
