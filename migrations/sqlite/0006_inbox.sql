-- The inbox: who handles a conversation, staff-only notes, read cursors, agents.
ALTER TABLE conversations ADD COLUMN assignee_name TEXT;
-- When the status last changed (ms): a batch that reopens a closed
-- conversation sets it to its own time, which is how it knows it did.
ALTER TABLE conversations ADD COLUMN status_changed_at INTEGER NOT NULL DEFAULT 0;
CREATE INDEX conversations_by_assignee ON conversations (assignee, status);

ALTER TABLE messages ADD COLUMN private INTEGER NOT NULL DEFAULT 0;

-- The newest offset each user marked read in each conversation.
CREATE TABLE read_cursors (
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    user_id         TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);

-- Every agent that connected, for the agents list and round-robin assignment.
CREATE TABLE agents (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    last_seen_at     INTEGER NOT NULL,
    last_assigned_at INTEGER NOT NULL DEFAULT 0
);
