-- The failing streak of an endpoint that was announced as
-- webhook.attempt_failing, named by its first failure (the failing_since it
-- had). A streak is announced while failing_since differs from it, and its
-- end as webhook.recovered while it is set after a success; each is cleared
-- or set only once its event is appended, so a lost announcement is made
-- again by the next outcome, under the same event id
-- (docs/webhooks.md "Operational events").
ALTER TABLE webhook.endpoints ADD COLUMN failing_announced timestamptz;
