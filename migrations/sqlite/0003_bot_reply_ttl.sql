-- Queued bot replies expire: one never collected is dropped after its time-to-live.
ALTER TABLE bot_replies ADD COLUMN expires_at INTEGER NOT NULL DEFAULT 253402214400000; -- 9999-12-31, as milliseconds
