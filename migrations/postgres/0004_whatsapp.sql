-- WhatsApp: what a non-text message carries, and the outbound send outbox.
ALTER TABLE messages ADD COLUMN content TEXT;

-- One row per message sent through the Graph API. `wamid` is the id Meta
-- returned: once set the message is never sent again, and status webhooks
-- find our message by it.
CREATE TABLE wa_outbox (
    message_id  UUID PRIMARY KEY,
    to_phone    TEXT NOT NULL,
    -- pending | sending | sent | failed
    state       TEXT NOT NULL,
    wamid       TEXT UNIQUE,
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    -- milliseconds since the Unix epoch, as in the SQLite schema
    updated_at  BIGINT NOT NULL
);
