-- Replicas refresh their endpoint registry by asking for what changed since
-- their last read. change_seq cannot say that on its own: a sequence value
-- is taken when a row is written but becomes visible when its transaction
-- commits, so change_seq 105 can be seen before 100 commits, and a reader
-- that moved past 105 never sees 100. change_xid is the transaction that
-- made the row's latest change: a reader that remembers the oldest
-- transaction still running at its read (pg_snapshot_xmin) and next asks
-- for change_xid >= that misses nothing (docs/architecture.md §14).
ALTER TABLE webhook.endpoints ADD COLUMN change_xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX endpoints_change_xid_idx ON webhook.endpoints (change_xid);

-- Every statement that changes a row takes a new change_seq; this keeps
-- change_xid with it, whichever statement it is.
CREATE FUNCTION webhook.endpoint_change_xid() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.change_seq IS DISTINCT FROM OLD.change_seq THEN
        NEW.change_xid := pg_current_xact_id();
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER endpoints_change_xid BEFORE UPDATE ON webhook.endpoints
    FOR EACH ROW EXECUTE FUNCTION webhook.endpoint_change_xid();
