-- Conversations, their messages and the bot-reply queue (embedded SQLite).
CREATE TABLE conversations (
    id              TEXT PRIMARY KEY,
    channel         TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'open',
    customer_id     TEXT NOT NULL,
    customer_name   TEXT NOT NULL,
    customer_phone  TEXT,
    assignee        TEXT,
    -- The offset of the newest message; the next one gets last_offset + 1.
    last_offset     INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX conversations_by_activity ON conversations (updated_at DESC);
CREATE INDEX conversations_by_phone ON conversations (customer_phone);
CREATE INDEX conversations_by_customer ON conversations (customer_id);

CREATE TABLE messages (
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    seq             INTEGER NOT NULL,
    id              TEXT NOT NULL UNIQUE,
    sender_id       TEXT NOT NULL,
    sender_role     TEXT NOT NULL,
    sender_name     TEXT NOT NULL,
    text            TEXT NOT NULL,
    client_msg_id   TEXT,
    source          TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'sent',
    status_at       INTEGER,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);
-- A retried send with the same client_msg_id finds the stored message.
CREATE UNIQUE INDEX messages_by_client_msg_id
    ON messages (conversation_id, sender_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;

CREATE TABLE bot_replies (
    id          TEXT PRIMARY KEY,
    phone       TEXT NOT NULL,
    text        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX bot_replies_by_phone ON bot_replies (phone, created_at);
