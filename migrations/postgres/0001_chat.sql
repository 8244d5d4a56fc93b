-- Conversations, their messages and the bot-reply queue (shared PostgreSQL).
CREATE TABLE conversations (
    -- "C" sorts ids byte by byte, as SQLite does, so the inbox breaks ties the same way.
    id              TEXT COLLATE "C" PRIMARY KEY,
    channel         TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'open',
    customer_id     TEXT NOT NULL,
    customer_name   TEXT NOT NULL,
    customer_phone  TEXT,
    assignee        TEXT,
    -- The offset of the newest message; the next one gets last_offset + 1. Writers lock
    -- this row before reading it, which is what serialises appends across processes.
    last_offset     BIGINT NOT NULL DEFAULT 0 CHECK (last_offset >= 0),
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX conversations_by_activity ON conversations (updated_at DESC, id);
CREATE INDEX conversations_by_phone ON conversations (customer_phone);
CREATE INDEX conversations_by_customer ON conversations (customer_id);

CREATE TABLE messages (
    conversation_id TEXT COLLATE "C" NOT NULL REFERENCES conversations (id),
    seq             BIGINT NOT NULL CHECK (seq > 0),
    id              UUID NOT NULL UNIQUE,
    sender_id       TEXT NOT NULL,
    sender_role     TEXT NOT NULL,
    sender_name     TEXT NOT NULL,
    text            TEXT NOT NULL,
    client_msg_id   TEXT,
    source          TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'sent',
    status_at       TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL,
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
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX bot_replies_by_phone ON bot_replies (phone, created_at);
