-- The windows of a series a subject's data was published in: the revision last
-- published and a digest of the samples it held, so late samples republish the window
-- once (revision + 1) and an unchanged re-read publishes nothing.
CREATE TABLE series_windows (
    account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    series_key TEXT NOT NULL,
    revision   BIGINT NOT NULL,
    digest     TEXT NOT NULL,
    PRIMARY KEY (account_id, series_key)
);
