-- A replica renews the claims of the deliveries it holds while it holds
-- them, so a claim can be short and a replica that dies gives its
-- deliveries back within seconds (docs/architecture.md §16). A due row a
-- replica claimed names it in claimed_by (its due_at is then the claim's
-- end); an outcome that schedules a retry clears it, so a renewal racing
-- with that outcome cannot move the retry.
ALTER TABLE webhook.due ADD COLUMN claimed_by text;
