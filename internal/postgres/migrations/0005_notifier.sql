-- Notifier: per-tenant rules, watches, the aggregated inbox (one row per
-- user and group), the de-duplication keys of processed events, user
-- preferences and email digests. Every table has a tenant column and
-- every query filters by it.
CREATE SCHEMA IF NOT EXISTS notify;

-- A tenant's rules; no row means the documented default set.
CREATE TABLE notify.rules (
    tenant     text PRIMARY KEY,
    rules      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE notify.watches (
    tenant      text NOT NULL,
    object_type text NOT NULL,
    object_id   text NOT NULL,
    user_id     text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, object_type, object_id, user_id)
);
-- A user's watches, newest first.
CREATE INDEX watches_user_idx ON notify.watches (tenant, user_id, created_at DESC, object_type, object_id);

-- The inbox. A new event in a group bumps unread_count, replaces
-- last_event and clears read_at.
CREATE TABLE notify.notifications (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant       text NOT NULL,
    user_id      text NOT NULL,
    group_type   text NOT NULL,
    group_id     text NOT NULL,
    unread_count integer NOT NULL,
    last_event   jsonb NOT NULL,
    read_at      timestamptz,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    UNIQUE (tenant, user_id, group_type, group_id)
);
CREATE INDEX notifications_inbox_idx ON notify.notifications (tenant, user_id, updated_at DESC, id DESC);
CREATE INDEX notifications_unread_idx ON notify.notifications (tenant, user_id, updated_at DESC, id DESC) WHERE read_at IS NULL;

-- One row per applied event, written in the transaction that applied it:
-- a redelivered event finds its key and changes nothing.
CREATE TABLE notify.processed (
    tenant       text NOT NULL,
    event_id     text NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, event_id)
);

CREATE TABLE notify.preferences (
    tenant     text NOT NULL,
    user_id    text NOT NULL,
    email      text NOT NULL DEFAULT '',
    digest     text NOT NULL DEFAULT 'every_few_hours' CHECK (digest IN ('never', 'every_few_hours', 'daily', 'weekly')),
    timezone   text NOT NULL DEFAULT 'UTC',
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, user_id)
);

-- Email digests: a window per user anchored at the first notification
-- after the previous one. At most one pending window per user; a window is
-- claimed by one replica at a time (FOR UPDATE SKIP LOCKED, claim_token)
-- and sent once.
CREATE TABLE notify.digests (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant          text NOT NULL,
    user_id         text NOT NULL,
    starts_at       timestamptz NOT NULL,
    ends_at         timestamptz NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'skipped')),
    next_attempt_at timestamptz NOT NULL,
    claim_token     uuid,
    attempts        integer NOT NULL DEFAULT 0,
    notifications   integer,
    last_error      text,
    sent_at         timestamptz,
    UNIQUE (tenant, user_id, starts_at)
);
CREATE UNIQUE INDEX digests_pending_idx ON notify.digests (tenant, user_id) WHERE status = 'pending';
CREATE INDEX digests_due_idx ON notify.digests (next_attempt_at) WHERE status = 'pending';
