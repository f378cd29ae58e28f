-- Work shared by several workers: an account is synced by whoever holds its lease, the
-- outbox is drained in leased batches. Times are Unix milliseconds. A lease that was not
-- released (a killed worker) is taken over once it expires.
ALTER TABLE accounts ADD COLUMN lease_owner TEXT;
ALTER TABLE accounts ADD COLUMN lease_until BIGINT;
ALTER TABLE outbox ADD COLUMN lease_owner TEXT;
ALTER TABLE outbox ADD COLUMN lease_until BIGINT;
-- When each account's dataset is due next (absent: due now).
CREATE TABLE schedule (
    account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    dataset    TEXT NOT NULL,
    next_due   BIGINT NOT NULL,
    PRIMARY KEY (account_id, dataset)
);
