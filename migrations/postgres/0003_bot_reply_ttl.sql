-- Queued bot replies expire: one never collected is dropped after its time-to-live.
ALTER TABLE bot_replies ADD COLUMN expires_at TIMESTAMPTZ NOT NULL DEFAULT '9999-12-31 00:00:00+00';
