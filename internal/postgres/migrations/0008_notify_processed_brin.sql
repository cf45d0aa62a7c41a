-- notify.processed keeps the de-duplication key of every event the notifier
-- applied; the notifier now prunes keys older than its retention
-- (NOTIFIER_DEDUP_RETENTION). Rows arrive in processed_at order, so a BRIN
-- index finds the old ones for a few pages of index and no cost per insert
-- worth measuring.
CREATE INDEX processed_at_brin ON notify.processed USING brin (processed_at);
