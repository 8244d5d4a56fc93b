//! Appending a batch of messages in a handful of statements, whatever its
//! size and however many conversations it spans: the conversations are
//! locked, one statement finds which messages are already stored, one moves
//! every conversation's `last_offset` past its share of the batch, and one
//! inserts them all. Each store supplies the statements
//! ([`Appender`]); the bookkeeping is here, once.
//!
//! Statement by statement, the round trips cost more than the storing itself
//! under load (on SQLite, each one wakes the database's own thread).

use std::future::Future;

use switchboard_proto::model::{Conversation, ConversationStatus, Message, Timestamp};

use crate::{Appended, Fence, NewConversation, NewMessage, Result, StoreError};

/// The statements a batch append needs, inside the store's write transaction.
pub(crate) trait Appender: Send {
    /// Checks `fence` (see [`crate::partitions`]) and holds these
    /// conversations' rows until the transaction ends, where the database does
    /// not already serialise writers; in one statement where it can. Taken
    /// before looking for stored messages, so a concurrent writer of the same
    /// message has either committed (and is seen) or waits.
    fn lock(&mut self, conversation_ids: &[&str], fence: &Fence) -> impl Future<Output = Result<()>> + Send;
    /// The batch's messages that are already stored.
    fn stored_already(&mut self, batch: &[NewMessage]) -> impl Future<Output = Result<Vec<Message>>> + Send;
    /// Moves each conversation's `last_offset` on by its count, in one
    /// statement, reopening the closed ones a bump says to (stamping
    /// `status_changed_at` with the bump's time); answers, for each that
    /// exists, the conversation (without its last message), its new
    /// `last_offset` and its `status_changed_at`.
    fn bump_offsets(&mut self, bumps: &[Bump<'_>]) -> impl Future<Output = Result<Vec<Bumped>>> + Send;
    /// Creates a conversation unless it exists; true when it did.
    fn create_conversation(&mut self, new: &NewConversation) -> impl Future<Output = Result<bool>> + Send;
    /// Inserts `rows` (index into `batch`, offset) in one statement.
    fn insert_all(
        &mut self,
        batch: &[NewMessage],
        rows: &[(usize, u64)],
    ) -> impl Future<Output = Result<()>> + Send;
    /// The conversation as it is now, with its last message.
    fn conversation(&mut self, id: &str) -> impl Future<Output = Result<Option<Conversation>>> + Send;
}

/// One conversation's share of a batch.
pub(crate) struct Bump<'a> {
    pub conversation_id: &'a str,
    pub count: usize,
    /// When its newest message of the batch was made.
    pub at: Timestamp,
    /// A customer wrote: a closed conversation reopens.
    pub reopen: bool,
}

/// A conversation after its bump.
pub(crate) struct Bumped {
    pub conversation: Conversation,
    pub last_offset: u64,
    pub status_changed_at: Timestamp,
}

/// What became of one message of the batch.
#[expect(
    clippy::large_enum_variant,
    reason = "the large variant is nearly every message's: boxing it would allocate per message"
)]
enum Fate {
    /// Stored before this batch: its message as stored.
    Stored(Message),
    /// The same as the batch's earlier message at this index.
    SameAs(usize),
    /// Stored now, at this offset, in this conversation (as it was read).
    Inserted {
        offset: u64,
        conversation: Conversation,
        conversation_created: bool,
        reopened: bool,
    },
    Missing,
}

pub(crate) async fn append_batch(
    db: &mut impl Appender,
    batch: &[NewMessage],
    fence: &Fence,
) -> Result<Vec<Result<Appended>>> {
    let mut conversation_ids: Vec<&str> = batch.iter().map(|n| n.conversation_id.as_str()).collect();
    conversation_ids.sort_unstable();
    conversation_ids.dedup();
    db.lock(&conversation_ids, fence).await?;
    let stored = db.stored_already(batch).await?;
    let mut fates: Vec<Option<Fate>> = batch.iter().map(|_| None).collect();
    // The new messages of each conversation, in batch order; conversations in
    // order of first appearance.
    let mut fresh: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, new) in batch.iter().enumerate() {
        if let Some(message) = stored
            .iter()
            .find(|m| same_message(new, &m.conversation_id, &m.sender.id, m.id, &m.client_msg_id))
        {
            fates[i] = Some(Fate::Stored(message.clone()));
        } else if let Some(j) = batch[..i]
            .iter()
            .position(|e| same_message(new, &e.conversation_id, &e.sender.id, e.id, &e.client_msg_id))
        {
            fates[i] = Some(Fate::SameAs(j));
        } else if let Some((_, indices)) = fresh.iter_mut().find(|(c, _)| *c == new.conversation_id) {
            indices.push(i);
        } else {
            fresh.push((&new.conversation_id, vec![i]));
        }
    }
    let bump = |conversation_id, indices: &Vec<usize>| Bump {
        conversation_id,
        count: indices.len(),
        at: batch[*indices.last().expect("a group has a message")].created_at,
        reopen: indices.iter().any(|&i| batch[i].reopens()),
    };
    let bumps: Vec<Bump> = fresh.iter().map(|(c, indices)| bump(*c, indices)).collect();
    let mut bumped = db.bump_offsets(&bumps).await?;
    let mut rows = Vec::new();
    for (conversation_id, indices) in &fresh {
        let mut found = bumped
            .iter()
            .position(|b| b.conversation.id == *conversation_id)
            .map(|at| bumped.swap_remove(at));
        let mut created = false;
        let creator = indices.iter().find_map(|&i| batch[i].conversation_to_create());
        if let (None, Some(create)) = (&found, creator) {
            // Rare (a WhatsApp contact's first message): a statement of its own.
            created = db.create_conversation(&create).await?;
            found = db.bump_offsets(&[bump(conversation_id, indices)]).await?.pop();
        }
        let Some(Bumped { conversation, last_offset, status_changed_at }) = found else {
            indices.iter().for_each(|&i| fates[i] = Some(Fate::Missing));
            continue;
        };
        // Only this bump stamps its own time while the status is open: a
        // status changed at that very millisecond by other means announces
        // itself once more, which is harmless.
        let group = bump(conversation_id, indices);
        let reopened =
            group.reopen && status_changed_at == group.at && conversation.status == ConversationStatus::Open;
        let first_offset = last_offset + 1 - indices.len() as u64;
        for (n, &i) in indices.iter().enumerate() {
            let offset = first_offset + n as u64;
            rows.push((i, offset));
            // The first message is the one that created the conversation.
            let conversation_created = created && n == 0;
            // Told once, with the conversation's last message of the batch.
            let reopened = reopened && n + 1 == indices.len();
            fates[i] = Some(Fate::Inserted {
                offset,
                conversation: conversation.clone(),
                conversation_created,
                reopened,
            });
        }
    }
    if !rows.is_empty() {
        db.insert_all(batch, &rows).await?;
    }
    let mut outcomes: Vec<Result<Appended>> = Vec::with_capacity(batch.len());
    for (new, fate) in batch.iter().zip(fates) {
        let missing = || StoreError::ConversationNotFound(new.conversation_id.clone());
        let outcome = match fate.expect("every message has a fate") {
            Fate::Inserted { offset, conversation, conversation_created, reopened } => {
                Ok(Appended::inserted(new, offset, conversation, conversation_created, reopened))
            }
            Fate::Stored(message) => duplicate(db, message).await?.ok_or_else(missing),
            Fate::SameAs(j) => match &outcomes[j] {
                Ok(earlier) => duplicate(db, earlier.message.clone()).await?.ok_or_else(missing),
                Err(_) => Err(missing()),
            },
            Fate::Missing => Err(missing()),
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// A message sent again (a redelivery or a retry): the stored one, with its
/// conversation as it is now.
async fn duplicate(db: &mut impl Appender, message: Message) -> Result<Option<Appended>> {
    let conversation = db.conversation(&message.conversation_id).await?;
    Ok(conversation.map(|conversation| Appended {
        message,
        created: false,
        conversation,
        conversation_created: false,
        reopened: false,
    }))
}

/// The same message as `new`: the same id, or the same sender's same
/// `client_msg_id` in the same conversation.
fn same_message(
    new: &NewMessage,
    conversation_id: &str,
    sender_id: &str,
    id: uuid::Uuid,
    client_msg_id: &Option<String>,
) -> bool {
    id == new.id
        || (conversation_id == new.conversation_id
            && sender_id == new.sender.id
            && new.client_msg_id.is_some()
            && *client_msg_id == new.client_msg_id)
}
