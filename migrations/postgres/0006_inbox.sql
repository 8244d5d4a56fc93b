-- The inbox: who handles a conversation, staff-only notes, read cursors, agents.
ALTER TABLE conversations ADD COLUMN assignee_name TEXT;
-- When the status last changed: a batch that reopens a closed conversation
-- sets it to its own time, which is how it knows it did.
ALTER TABLE conversations ADD COLUMN status_changed_at TIMESTAMPTZ NOT NULL DEFAULT 'epoch';
CREATE INDEX conversations_by_assignee ON conversations (assignee, status);

ALTER TABLE messages ADD COLUMN private BOOLEAN NOT NULL DEFAULT false;

-- The newest offset each user marked read in each conversation.
CREATE TABLE read_cursors (
    conversation_id TEXT COLLATE "C" NOT NULL REFERENCES conversations (id),
    user_id         TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);

-- Every agent that connected, for the agents list and round-robin assignment.
CREATE TABLE agents (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    last_seen_at     TIMESTAMPTZ NOT NULL,
    last_assigned_at TIMESTAMPTZ NOT NULL DEFAULT 'epoch'
);
