//! The statements of a batch append (see [`crate::append`]) on PostgreSQL,
//! where several workers write at once: conversation rows are locked in id
//! order, so two batches sharing conversations wait for each other rather
//! than deadlock; and the whole append in one statement ([`at_once`]).

use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{PgConnection, Postgres, Row};
use switchboard_proto::model::{Conversation, Message};

use super::{
    conversation_from_row, conversation_in, from_time, insert_conversation, located_message_from_row, to_time,
};
use crate::append::{Appender, AtOnce, Bump, Bumped, Group};
use crate::{Fence, NewConversation, NewMessage, Result};

// A macro rather than a const so that `concat!` keeps both inserts static strings.
macro_rules! insert_messages {
    () => {
        "INSERT INTO messages (conversation_id, seq, id, sender_id, sender_role, sender_name, text, \
         client_msg_id, source, created_at, content, private) "
    };
}

impl Appender for PgConnection {
    /// One statement: the conversations locked (in id order, so two batches
    /// wait for each other rather than deadlock) and the fence's epochs read
    /// under a share lock (see [`crate::partitions`]); the count of locked
    /// rows joins them so that both always run.
    async fn lock(&mut self, conversation_ids: &[&str], fence: &Fence) -> Result<()> {
        let rows: Vec<(Option<i64>, Option<i64>)> = sqlx::query_as(
            "WITH locked AS (SELECT id FROM conversations WHERE id = ANY($1) ORDER BY id FOR UPDATE) \
             SELECT e.partition_id, e.epoch FROM (SELECT count(*) FROM locked) l LEFT JOIN \
             (SELECT partition_id::bigint, epoch FROM partition_epochs \
              WHERE kind = $2 AND partition_id = ANY($3::int[]) FOR SHARE) e ON true",
        )
        .bind(conversation_ids)
        .bind(fence.kind)
        .bind(crate::partitions::partition_ids(fence).iter().map(|&p| p as i32).collect::<Vec<_>>())
        .fetch_all(&mut *self)
        .await?;
        let current: Vec<(i64, i64)> = rows.into_iter().filter_map(|(p, e)| Some((p?, e?))).collect();
        crate::partitions::verify(fence, &current)
    }

    /// One statement whose text never changes (so it stays prepared). The
    /// lateral join makes each key an index lookup whatever the planner guesses
    /// of the array's length (a join would scan the table).
    async fn stored_already(&mut self, batch: &[NewMessage]) -> Result<Vec<Message>> {
        let keyed: Vec<&NewMessage> = batch.iter().filter(|n| n.client_msg_id.is_some()).collect();
        let rows = sqlx::query(concat!(
            "SELECT conversation_id, ",
            message_columns!(),
            " FROM messages WHERE id = ANY($1) UNION SELECT m.conversation_id, ",
            "m.id, m.seq, m.sender_id, m.sender_role, m.sender_name, m.text, m.client_msg_id, m.source, \
             m.created_at, m.content, m.private \
             FROM UNNEST($2::text[], $3::text[], $4::text[]) AS k (conversation_id, sender_id, client_msg_id) \
             CROSS JOIN LATERAL (SELECT * FROM messages WHERE conversation_id = k.conversation_id \
             AND sender_id = k.sender_id AND client_msg_id = k.client_msg_id) m"
        ))
        .bind(batch.iter().map(|n| n.id).collect::<Vec<_>>())
        .bind(keyed.iter().map(|n| n.conversation_id.as_str()).collect::<Vec<_>>())
        .bind(keyed.iter().map(|n| n.sender.id.as_str()).collect::<Vec<_>>())
        .bind(keyed.iter().map(|n| n.client_msg_id.as_deref()).collect::<Vec<_>>())
        .fetch_all(&mut *self)
        .await?;
        rows.iter().map(located_message_from_row).collect()
    }

    /// One statement whose text never changes: the counts travel as arrays.
    /// The right-hand sides read the row as it was, so the status test sees
    /// the status before the reopen.
    async fn bump_offsets(&mut self, bumps: &[Bump<'_>]) -> Result<Vec<Bumped>> {
        if bumps.is_empty() {
            return Ok(Vec::new());
        }
        let mut at = Vec::with_capacity(bumps.len());
        for bump in bumps {
            at.push(to_time(bump.at)?);
        }
        let rows = sqlx::query(
            "UPDATE conversations c SET last_offset = c.last_offset + v.n, updated_at = v.at, \
             status_changed_at = CASE WHEN v.reopen AND c.status = 'closed' THEN v.at \
             ELSE c.status_changed_at END, \
             status = CASE WHEN v.reopen AND c.status = 'closed' THEN 'open' ELSE c.status END \
             FROM UNNEST($1::text[], $2::bigint[], $3::timestamptz[], $4::bool[]) AS v (id, n, at, reopen) \
             WHERE c.id = v.id \
             RETURNING c.id, c.channel, c.status, c.customer_id, c.customer_name, c.customer_phone, \
             c.customer_email, c.assignee, c.assignee_name, c.created_at, c.updated_at, c.last_offset, c.status_changed_at, \
             NULL::uuid AS m_id",
        )
        .bind(bumps.iter().map(|b| b.conversation_id).collect::<Vec<_>>())
        .bind(bumps.iter().map(|b| b.count as i64).collect::<Vec<_>>())
        .bind(at)
        .bind(bumps.iter().map(|b| b.reopen).collect::<Vec<_>>())
        .fetch_all(&mut *self)
        .await?;
        rows.iter().map(bumped_from_row).collect()
    }

    async fn create_conversation(&mut self, new: &NewConversation) -> Result<bool> {
        insert_conversation(self, new).await
    }

    /// One statement whose text never changes: the rows travel as arrays.
    async fn insert_all(&mut self, batch: &[NewMessage], rows: &[(usize, u64)]) -> Result<()> {
        let rows: Vec<(&NewMessage, i64)> =
            rows.iter().map(|&(i, offset)| (&batch[i], offset as i64)).collect();
        let query = sqlx::query(concat!(
            insert_messages!(),
            "SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::uuid[], $4::text[], $5::text[], $6::text[], \
             $7::text[], $8::text[], $9::text[], $10::timestamptz[], $11::text[], $12::bool[])"
        ));
        bind_messages(query, &rows)?.execute(&mut *self).await?;
        Ok(())
    }

    async fn conversation(&mut self, id: &str) -> Result<Option<Conversation>> {
        conversation_in(self, id).await
    }
}

/// Binds each column of `rows` as an array, in `insert_messages!`' order;
/// the number with each message takes the place of its offset.
fn bind_messages<'q>(
    query: Query<'q, Postgres, PgArguments>,
    rows: &[(&'q NewMessage, i64)],
) -> Result<Query<'q, Postgres, PgArguments>> {
    let mut created_at = Vec::with_capacity(rows.len());
    for (new, _) in rows {
        created_at.push(to_time(new.created_at)?);
    }
    Ok(query
        .bind(rows.iter().map(|(new, _)| new.conversation_id.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|&(_, second)| second).collect::<Vec<_>>())
        .bind(rows.iter().map(|(new, _)| new.id).collect::<Vec<_>>())
        .bind(rows.iter().map(|(new, _)| new.sender.id.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|(new, _)| new.sender.role.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|(new, _)| new.sender.name.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|(new, _)| new.text.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|(new, _)| new.client_msg_id.as_deref()).collect::<Vec<_>>())
        .bind(rows.iter().map(|(new, _)| new.source.as_str()).collect::<Vec<_>>())
        .bind(created_at)
        .bind(rows.iter().map(|(new, _)| new.content.as_ref().map(|c| c.to_string())).collect::<Vec<_>>())
        .bind(rows.iter().map(|(new, _)| new.private).collect::<Vec<_>>()))
}

fn bumped_from_row(row: &PgRow) -> Result<Bumped> {
    let last_offset: i64 = row.try_get("last_offset")?;
    Ok(Bumped {
        conversation: conversation_from_row(row)?,
        last_offset: last_offset as u64,
        status_changed_at: from_time(row.try_get("status_changed_at")?),
    })
}

/// The whole append as one statement of data-modifying CTEs, which is its
/// own transaction: one round trip instead of six (`BEGIN`, lock, copies,
/// bump, insert, `COMMIT`). The fence's epochs are read under a share lock
/// (see [`crate::partitions`]) and every write depends on them, so a fenced
/// batch writes nothing. The batch's existing conversations are locked in id
/// order and bumped; the missing ones a group may create are inserted with
/// their count as `last_offset` (the statement's snapshot cannot see rows it
/// inserts, so they are not bumped as well; nor one another transaction
/// inserts meanwhile, which the fence rules out: only a partition's owner
/// writes its conversations' messages); each message goes in at its
/// conversation's new `last_offset` less its distance from its group's end.
/// A message stored before breaks a unique index and fails the statement,
/// which undoes all of it. Its text never changes, so it stays prepared.
pub(super) async fn at_once(
    conn: &mut PgConnection,
    batch: &[NewMessage],
    groups: &[Group<'_>],
    fence: &Fence,
) -> Result<AtOnce> {
    let bumps: Vec<Bump> = groups.iter().map(|g| g.bump(batch)).collect();
    let mut bump_at = Vec::with_capacity(bumps.len());
    for bump in &bumps {
        bump_at.push(to_time(bump.at)?);
    }
    let creators: Vec<(NewConversation, &Bump)> =
        groups.iter().zip(&bumps).filter_map(|(g, bump)| Some((g.creator(batch)?, bump))).collect();
    let mut creator_times = Vec::with_capacity(creators.len());
    for (new, bump) in &creators {
        creator_times.push((to_time(new.at)?, to_time(bump.at)?));
    }
    // Each message with its distance from its group's last message.
    let backs: Vec<(&NewMessage, i64)> = groups
        .iter()
        .flat_map(|g| {
            g.indices.iter().enumerate().map(|(n, &i)| (&batch[i], (g.indices.len() - 1 - n) as i64))
        })
        .collect();
    let query = sqlx::query(AT_ONCE)
        .bind(fence.held.iter().map(|&(p, _)| p as i32).collect::<Vec<_>>())
        .bind(fence.held.iter().map(|&(_, e)| e as i64).collect::<Vec<_>>())
        .bind(fence.kind)
        .bind(bumps.iter().map(|b| b.conversation_id).collect::<Vec<_>>())
        .bind(bumps.iter().map(|b| b.count as i64).collect::<Vec<_>>())
        .bind(bump_at)
        .bind(bumps.iter().map(|b| b.reopen).collect::<Vec<_>>())
        .bind(creators.iter().map(|(new, _)| new.id.as_str()).collect::<Vec<_>>())
        .bind(creators.iter().map(|(new, _)| new.channel.as_str()).collect::<Vec<_>>())
        .bind(creators.iter().map(|(new, _)| new.customer.id.as_str()).collect::<Vec<_>>())
        .bind(creators.iter().map(|(new, _)| new.customer.name.as_str()).collect::<Vec<_>>())
        .bind(creators.iter().map(|(new, _)| new.customer.phone.as_deref()).collect::<Vec<_>>())
        .bind(creators.iter().map(|(new, _)| new.customer.email.as_deref()).collect::<Vec<_>>())
        .bind(creator_times.iter().map(|&(at, _)| at).collect::<Vec<_>>())
        .bind(creator_times.iter().map(|&(_, at)| at).collect::<Vec<_>>())
        .bind(creators.iter().map(|(_, bump)| bump.count as i64).collect::<Vec<_>>());
    let rows = bind_messages(query, &backs)?.fetch_all(&mut *conn).await?;
    let mut stored = AtOnce { fence_held: false, created: Vec::new(), bumped: Vec::new() };
    for row in &rows {
        stored.fence_held = row.try_get("fence_held")?;
        if row.try_get::<Option<String>, _>("id")?.is_none() {
            continue;
        }
        if row.try_get("created")? {
            stored.created.push(row.try_get("id")?);
        }
        stored.bumped.push(bumped_from_row(row)?);
    }
    Ok(stored)
}

const AT_ONCE: &str = concat!(
    "WITH fence AS (\
         SELECT count(*) = cardinality($1::int[]) AS held FROM (\
         SELECT FROM partition_epochs e JOIN UNNEST($1::int[], $2::bigint[]) AS f (partition_id, epoch) \
         ON e.partition_id = f.partition_id AND e.epoch = f.epoch WHERE e.kind = $3 FOR SHARE OF e) current), \
     locked AS (SELECT id FROM conversations WHERE id = ANY($4::text[]) AND (SELECT held FROM fence) \
         ORDER BY id FOR UPDATE), \
     bumped AS (UPDATE conversations c SET last_offset = c.last_offset + v.n, updated_at = v.at, \
         status_changed_at = CASE WHEN v.reopen AND c.status = 'closed' THEN v.at ELSE c.status_changed_at END, \
         status = CASE WHEN v.reopen AND c.status = 'closed' THEN 'open' ELSE c.status END \
         FROM UNNEST($4::text[], $5::bigint[], $6::timestamptz[], $7::bool[]) AS v (id, n, at, reopen) \
         WHERE c.id = v.id AND c.id IN (SELECT id FROM locked) \
         RETURNING c.*, false AS created), \
     created AS (INSERT INTO conversations (id, channel, status, customer_id, customer_name, customer_phone, \
         customer_email, created_at, updated_at, last_offset) \
         SELECT v.id, v.channel, 'open', v.customer_id, v.customer_name, v.customer_phone, v.customer_email, \
         v.created_at, v.updated_at, v.n \
         FROM UNNEST($8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], \
         $14::timestamptz[], $15::timestamptz[], $16::bigint[]) \
         AS v (id, channel, customer_id, customer_name, customer_phone, customer_email, created_at, updated_at, n) \
         WHERE (SELECT held FROM fence) AND v.id NOT IN (SELECT id FROM locked) \
         ON CONFLICT (id) DO NOTHING RETURNING *, true AS created), \
     placed AS (SELECT * FROM bumped UNION ALL SELECT * FROM created), \
     inserted AS (",
    insert_messages!(),
    "\
         SELECT v.conversation_id, p.last_offset - v.back, v.id, v.sender_id, v.sender_role, v.sender_name, \
         v.text, v.client_msg_id, v.source, v.created_at, v.content, v.private \
         FROM UNNEST($17::text[], $18::bigint[], $19::uuid[], $20::text[], $21::text[], $22::text[], \
         $23::text[], $24::text[], $25::text[], $26::timestamptz[], $27::text[], $28::bool[]) \
         AS v (conversation_id, back, id, sender_id, sender_role, sender_name, text, client_msg_id, source, \
         created_at, content, private) \
         JOIN placed p ON p.id = v.conversation_id) \
     SELECT f.held AS fence_held, p.id, p.channel, p.status, p.customer_id, p.customer_name, p.customer_phone, \
         p.customer_email, p.assignee, p.assignee_name, p.created_at, p.updated_at, p.last_offset, \
         p.status_changed_at, p.created, NULL::uuid AS m_id \
     FROM fence f LEFT JOIN placed p ON true"
);
