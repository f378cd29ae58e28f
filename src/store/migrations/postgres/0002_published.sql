-- Ids of messages a node confirmed. Re-reading upstream data (the look-back) must not
-- publish a message again once it left the outbox; rows older than the longest
-- look-back are pruned.
CREATE TABLE published (
    message_id   TEXT PRIMARY KEY,
    published_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX published_by_time ON published (published_at);
