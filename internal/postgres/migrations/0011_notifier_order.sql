-- The notifier applies the stream in order, and orders SSE ids and digest
-- windows by a per-user sequence instead of timestamps (docs/architecture.md,
-- "Notifier: stream order per object").

-- The notifier's checkpoint: the last stream sequence applied (or
-- dead-lettered). A batch commits only if the checkpoint is still the one
-- the batch started after, so batches commit in stream order whichever
-- replica runs them, and a replica that lost its turn cannot commit.
-- stream_created tells a stream created anew (its sequences start again at
-- 1) from the one the checkpoint counts in.
CREATE TABLE notify.progress (
    consumer       text PRIMARY KEY,
    stream_created timestamptz NOT NULL,
    last_seq       bigint NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
-- Not tenant data: only the owner (the consumer) reads or writes it.
ALTER TABLE notify.progress ENABLE ROW LEVEL SECURITY;

-- One row per user with an inbox. seq counts the changes to the inbox: a
-- notification bumped or read takes the next values, under this row's
-- lock, in the transaction that makes the change, so one user's changes
-- commit in seq order and a reader never sees a later change without the
-- earlier ones. unread_total is the number of unread notifications.
CREATE TABLE notify.inboxes (
    tenant       text NOT NULL,
    user_id      text NOT NULL,
    seq          bigint NOT NULL,
    unread_total integer NOT NULL,
    PRIMARY KEY (tenant, user_id)
);
SELECT eventline.enable_tenant_rls('notify.inboxes', 'SELECT, UPDATE');

-- change_seq: the inbox seq of the notification's latest change (the SSE id
-- of that change). Existing notifications are numbered in their old order.
ALTER TABLE notify.notifications ADD COLUMN change_seq bigint;
WITH numbered AS (
    SELECT id, row_number() OVER (PARTITION BY tenant, user_id ORDER BY updated_at, id) AS s
    FROM notify.notifications
)
UPDATE notify.notifications n SET change_seq = numbered.s FROM numbered WHERE n.id = numbered.id;
ALTER TABLE notify.notifications ALTER COLUMN change_seq SET NOT NULL;
CREATE UNIQUE INDEX notifications_change_idx ON notify.notifications (tenant, user_id, change_seq);

INSERT INTO notify.inboxes (tenant, user_id, seq, unread_total)
SELECT tenant, user_id, max(change_seq), count(*) FILTER (WHERE read_at IS NULL)
FROM notify.notifications GROUP BY tenant, user_id;

-- A digest window covers the inbox changes after after_seq up to upto_seq
-- (recorded when it is sent or skipped); the next window starts where it
-- ended. A window still pending starts after the last change before it
-- opened.
ALTER TABLE notify.digests ADD COLUMN after_seq bigint NOT NULL DEFAULT 0, ADD COLUMN upto_seq bigint;
UPDATE notify.digests d SET after_seq = coalesce((
    SELECT max(n.change_seq) FROM notify.notifications n
    WHERE n.tenant = d.tenant AND n.user_id = d.user_id AND n.updated_at < d.starts_at), 0)
WHERE d.status = 'pending';
-- Two windows may start at the same instant (one opens as the previous one
-- is sent); one pending window per user (digests_pending_idx) is the rule
-- that matters.
ALTER TABLE notify.digests DROP CONSTRAINT digests_tenant_user_id_starts_at_key;
