-- Which owner may write for each partition of commands: the one that claimed
-- it last. Every batch a worker stores checks its epoch in the same
-- transaction, so a worker that lost its partition (frozen past its lease,
-- say) stores nothing once its successor has claimed it.
CREATE TABLE partition_epochs (
    kind TEXT NOT NULL,
    partition_id INTEGER NOT NULL,
    epoch BIGINT NOT NULL,
    owner TEXT NOT NULL,
    PRIMARY KEY (kind, partition_id)
);
