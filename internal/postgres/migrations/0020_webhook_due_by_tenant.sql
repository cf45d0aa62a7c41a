-- The scheduler claims due deliveries tenant by tenant (docs/webhooks.md
-- "Fairness between tenants"): when several tenants have deliveries due,
-- each gets a share of every claim, so one tenant's large fan-out does not
-- hold back another tenant's retries until it has drained. It finds the
-- tenants with a skip scan of this index and each tenant's oldest due
-- deliveries with a range scan of it, which also serves the claim when one
-- tenant alone has deliveries due; so it replaces the index on due_at
-- alone, and a due row keeps two indexes.
CREATE INDEX due_tenant_at_idx ON webhook.due (tenant, due_at);
DROP INDEX webhook.due_at_idx;
