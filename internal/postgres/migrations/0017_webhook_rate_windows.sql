-- An endpoint's rate_limit holds across replicas: each replica takes the
-- deliveries it may send to an endpoint from a shared budget per time slot
-- (docs/architecture.md §15). A slot of width_us microseconds allows
-- `budget` deliveries; used counts what replicas took, last_grant what the
-- latest take got. Unlogged: a budget lives for a fraction of a second,
-- and after a crash the worst is one slot counted from zero again.
CREATE UNLOGGED TABLE webhook.rate_windows (
    endpoint_id text    NOT NULL,
    width_us    integer NOT NULL,
    slot        bigint  NOT NULL,
    used        integer NOT NULL,
    last_grant  integer NOT NULL,
    PRIMARY KEY (endpoint_id, width_us, slot)
);
