-- What browsers may use (docs/browser.md): the origins a tenant's pages are
-- served from, which the APIs answer with CORS headers for requests that
-- carry a user token, and the tenant's own sentence templates
-- (internal/render), which the inbox, the timeline components, Slack
-- messages and digest emails all render events with.

-- One row per (tenant, origin). An origin is "scheme://host[:port]" as a
-- browser sends it in the Origin header, stored exactly so.
CREATE TABLE eventline.browser_origins (
    tenant     text NOT NULL,
    origin     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, origin)
);
-- A preflight without a token asks whether any tenant lists an origin.
CREATE INDEX browser_origins_origin_idx ON eventline.browser_origins (origin);

-- Templates per event type ("card.moved"), replacing the built-in
-- sentence for that type.
CREATE TABLE eventline.sentence_templates (
    tenant     text NOT NULL,
    event_type text NOT NULL,
    template   text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, event_type)
);

-- The admin APIs write them as the tenant; the services read them as
-- owner (a CORS preflight arrives before any tenant is known).
SELECT eventline.enable_tenant_rls('eventline.browser_origins');
SELECT eventline.enable_tenant_rls('eventline.sentence_templates');
