-- People, not accounts: a person has one account per provider and one subject across
-- them. `subject_id` is the random basis of the person's pseudonym; NULL for people
-- migrated from single accounts, whose published subjects must not change (they keep
-- the per-account derivation). `provider_user_key` is a keyed hash of the provider's
-- user id (the id itself is encrypted), so one upstream account is enrolled once.
CREATE TABLE people (
    name       TEXT PRIMARY KEY,
    subject_id TEXT,
    created_at TEXT NOT NULL
);
ALTER TABLE accounts ADD COLUMN person TEXT;
ALTER TABLE accounts ADD COLUMN provider_user_key TEXT;
UPDATE accounts SET person = name;
INSERT INTO people (name, subject_id, created_at) SELECT name, NULL, created_at FROM accounts;
CREATE UNIQUE INDEX accounts_person_provider ON accounts (person, provider) WHERE status <> 'removed';
CREATE UNIQUE INDEX accounts_upstream ON accounts (provider, provider_user_key)
    WHERE provider_user_key IS NOT NULL AND status <> 'removed';
