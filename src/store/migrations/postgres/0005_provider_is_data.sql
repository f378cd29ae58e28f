-- A provider is a name from the source registry, checked by wearbridge, not by a SQL
-- CHECK: adding a source must not need a schema change.
ALTER TABLE accounts DROP CONSTRAINT IF EXISTS accounts_provider_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_provider_length CHECK (length(provider) BETWEEN 1 AND 32);
