-- The failing streak of an endpoint whose announcement is made or due,
-- named by its first failure (failing_since). While failing_since is a
-- streak of WEBHOOK_FAILING_AFTER failures that differs from it, the
-- streak is announced as webhook.attempt_failing; the announcer sets it
-- once the event is appended. A success that ends a streak which reached
-- WEBHOOK_FAILING_AFTER sets it to that streak, and webhook.recovered is
-- announced while it is set; the announcer clears it once appended. So a
-- lost announcement is made again by the endpoint's next outcome, under
-- the same event id (docs/webhooks.md "Operational events").
ALTER TABLE webhook.endpoints ADD COLUMN failing_announced timestamptz;
