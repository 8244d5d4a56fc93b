//! Appending a batch of messages in a handful of statements, whatever its
//! size and however many conversations it spans: the conversations are
//! locked, one statement finds which messages are already stored, one moves
//! every conversation's `last_offset` past its share of the batch, and one
//! inserts them all. Each store supplies the statements
//! ([`Appender`]); the bookkeeping is here, once.
//!
//! Statement by statement, the round trips cost more than the storing itself
//! under load (on SQLite, each one wakes the database's own thread), so a
//! store may first try the whole batch in one round trip ([`AtOnce`]) and
//! take the careful way only when that fails.

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

/// What the careful way found of one message of the batch.
enum Fate {
    /// Stored before this batch: its message as stored.
    Stored(Message),
    /// The same as the batch's earlier message at this index.
    SameAs(usize),
    /// New: its outcome is the group's to say ([`Group::settle`]).
    New,
}

/// Each new message's outcome, by its place in the batch.
type NewOutcomes = Vec<Option<Result<Appended>>>;

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
    let mut fates = Vec::with_capacity(batch.len());
    let mut fresh: Vec<Group> = Vec::new();
    for (i, new) in batch.iter().enumerate() {
        if let Some(message) = stored
            .iter()
            .find(|m| same_message(new, &m.conversation_id, &m.sender.id, m.id, &m.client_msg_id))
        {
            fates.push(Fate::Stored(message.clone()));
        } else if let Some(j) = earlier_copy(batch, i) {
            fates.push(Fate::SameAs(j));
        } else {
            fates.push(Fate::New);
            Group::add(&mut fresh, batch, i);
        }
    }
    let mut news: NewOutcomes = batch.iter().map(|_| None).collect();
    let bumps: Vec<Bump> = fresh.iter().map(|group| group.bump(batch)).collect();
    let mut bumped = db.bump_offsets(&bumps).await?;
    for group in &fresh {
        let mut found = take_bumped(&mut bumped, group.conversation_id);
        let mut created = false;
        if let (None, Some(create)) = (&found, group.creator(batch)) {
            // Rare (a WhatsApp contact's first message): a statement of its own.
            created = db.create_conversation(&create).await?;
            found = db.bump_offsets(&[group.bump(batch)]).await?.pop();
        }
        group.settle(batch, found, created, &mut news);
    }
    // Each message placed, at its offset.
    let rows: Vec<(usize, u64)> = news
        .iter()
        .enumerate()
        .filter_map(|(i, outcome)| Some((i, outcome.as_ref()?.as_ref().ok()?.message.offset)))
        .collect();
    if !rows.is_empty() {
        db.insert_all(batch, &rows).await?;
    }
    let mut outcomes: Vec<Result<Appended>> = Vec::with_capacity(batch.len());
    for ((new, fate), placed) in batch.iter().zip(fates).zip(news) {
        let missing = || StoreError::ConversationNotFound(new.conversation_id.clone());
        let outcome = match fate {
            Fate::Stored(message) => duplicate(db, message).await?.ok_or_else(missing),
            Fate::SameAs(j) => match &outcomes[j] {
                Ok(earlier) => duplicate(db, earlier.message.clone()).await?.ok_or_else(missing),
                Err(_) => Err(missing()),
            },
            Fate::New => placed.expect("a new message's group settled it"),
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// What a store answers of a batch it stored in one round trip: it created
/// the missing conversations of the groups that name a customer, inserted
/// each message at its conversation's `last_offset` plus its place in its
/// group, and bumped the offsets, only if the fence held. A message stored
/// before breaks a unique index and fails the round trip, which is undone.
pub(crate) struct AtOnce {
    pub fence_held: bool,
    /// The conversations the round trip created.
    pub created: Vec<String>,
    pub bumped: Vec<Bumped>,
}

/// The batch's conversations, in order of first appearance, each with its
/// messages in batch order; `None` when the batch holds one message twice
/// (only the careful way tells which copy is which).
pub(crate) fn distinct_groups(batch: &[NewMessage]) -> Option<Vec<Group<'_>>> {
    let mut groups = Vec::new();
    for i in 0..batch.len() {
        if earlier_copy(batch, i).is_some() {
            return None;
        }
        Group::add(&mut groups, batch, i);
    }
    Some(groups)
}

/// Each message's outcome after a round trip that answered `stored`, the fence held.
pub(crate) fn outcomes_at_once(
    batch: &[NewMessage],
    groups: &[Group<'_>],
    mut stored: AtOnce,
) -> Vec<Result<Appended>> {
    let mut news: NewOutcomes = batch.iter().map(|_| None).collect();
    for group in groups {
        let found = take_bumped(&mut stored.bumped, group.conversation_id);
        let created = stored.created.iter().any(|id| id == group.conversation_id);
        group.settle(batch, found, created, &mut news);
    }
    news.into_iter().map(|outcome| outcome.expect("every message is in a group")).collect()
}

/// One conversation's new messages in a batch, by their places in it.
pub(crate) struct Group<'a> {
    pub conversation_id: &'a str,
    pub indices: Vec<usize>,
}

impl<'a> Group<'a> {
    /// Puts `batch[i]` in its conversation's group.
    fn add(groups: &mut Vec<Group<'a>>, batch: &'a [NewMessage], i: usize) {
        let conversation_id = batch[i].conversation_id.as_str();
        match groups.iter_mut().find(|g| g.conversation_id == conversation_id) {
            Some(group) => group.indices.push(i),
            None => groups.push(Group { conversation_id, indices: vec![i] }),
        }
    }

    pub fn bump(&self, batch: &[NewMessage]) -> Bump<'a> {
        Bump {
            conversation_id: self.conversation_id,
            count: self.indices.len(),
            at: batch[*self.indices.last().expect("a group has a message")].created_at,
            reopen: self.indices.iter().any(|&i| batch[i].reopens()),
        }
    }

    /// The conversation to create when it is missing, from its first message that names a customer.
    pub fn creator(&self, batch: &[NewMessage]) -> Option<NewConversation> {
        self.indices.iter().find_map(|&i| batch[i].conversation_to_create())
    }

    /// Each message's outcome once its conversation was bumped to `found`
    /// (`None`: it does not exist).
    fn settle(&self, batch: &[NewMessage], found: Option<Bumped>, created: bool, news: &mut NewOutcomes) {
        let Some(Bumped { conversation, last_offset, status_changed_at }) = found else {
            for &i in &self.indices {
                news[i] = Some(Err(StoreError::ConversationNotFound(batch[i].conversation_id.clone())));
            }
            return;
        };
        // Only this bump stamps its own time while the status is open: a
        // status changed at that very millisecond by other means announces
        // itself once more, which is harmless.
        let bump = self.bump(batch);
        let reopened =
            bump.reopen && status_changed_at == bump.at && conversation.status == ConversationStatus::Open;
        let first_offset = last_offset + 1 - self.indices.len() as u64;
        for (n, &i) in self.indices.iter().enumerate() {
            let offset = first_offset + n as u64;
            // The first message is the one that created the conversation.
            let conversation_created = created && n == 0;
            // Told once, with the conversation's last message of the batch.
            let reopened = reopened && n + 1 == self.indices.len();
            let appended =
                Appended::inserted(&batch[i], offset, conversation.clone(), conversation_created, reopened);
            news[i] = Some(Ok(appended));
        }
    }
}

fn take_bumped(bumped: &mut Vec<Bumped>, conversation_id: &str) -> Option<Bumped> {
    let at = bumped.iter().position(|b| b.conversation.id == conversation_id)?;
    Some(bumped.swap_remove(at))
}

/// The place of an earlier message of the batch that is the same as `batch[i]`.
fn earlier_copy(batch: &[NewMessage], i: usize) -> Option<usize> {
    let new = &batch[i];
    batch[..i]
        .iter()
        .position(|e| same_message(new, &e.conversation_id, &e.sender.id, e.id, &e.client_msg_id))
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
