-- Sync notifications (seed 002): each tenant's outbox of changes.
CREATE TABLE sync_tenants (
    tenant      TEXT PRIMARY KEY,
    -- The seq of the newest change; the next one gets last_seq + 1.
    last_seq    INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE sync_changes (
    id              TEXT PRIMARY KEY,
    tenant          TEXT NOT NULL REFERENCES sync_tenants (tenant),
    seq             INTEGER NOT NULL,
    entity          TEXT NOT NULL,
    op              TEXT NOT NULL,
    -- A JSON document.
    data            TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    confirmed_at    INTEGER,
    UNIQUE (tenant, seq)
);
CREATE INDEX sync_changes_pending ON sync_changes (tenant, seq) WHERE confirmed_at IS NULL;
