-- Sync notifications (seed 002): each tenant's outbox of changes.
CREATE TABLE sync_tenants (
    tenant      TEXT COLLATE "C" PRIMARY KEY,
    -- The seq of the newest change; the next one gets last_seq + 1. Writers lock
    -- this row before reading it, which serialises appends across processes.
    last_seq    BIGINT NOT NULL DEFAULT 0 CHECK (last_seq >= 0)
);

CREATE TABLE sync_changes (
    id              UUID PRIMARY KEY,
    tenant          TEXT COLLATE "C" NOT NULL REFERENCES sync_tenants (tenant),
    seq             BIGINT NOT NULL CHECK (seq > 0),
    entity          TEXT NOT NULL,
    op              TEXT NOT NULL,
    data            JSONB NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    confirmed_at    TIMESTAMPTZ,
    UNIQUE (tenant, seq)
);
CREATE INDEX sync_changes_pending ON sync_changes (tenant, seq) WHERE confirmed_at IS NULL;
