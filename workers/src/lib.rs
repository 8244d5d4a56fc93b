//! Workers consume the bus and do the writing; each scales by adding processes.
//!
//! - [`runner`]: the one consume loop every worker runs: batches, answers,
//!   ack or nak, retries, and giving up on a command whose caller has waited
//!   too long; for partitioned commands, over the partitions this process owns.
//! - [`ownership`]: which partitions this process owns: leases, an even
//!   share among the live workers, hand-over, and the store's epochs.
//! - [`registry`]: the kinds of worker, one table for `switchboard worker
//!   <kind>` and `switchboard dev`.
//! - [`persist`]: the chat command stream into the store: messages get their
//!   offsets here, conversations are created, statuses move forward, bot
//!   replies are queued and handed out; then the results go back out as
//!   events. Its after-append hook ([`persist::AfterAppend`]) does more for
//!   each stored message before its command is acknowledged.
//! - [`handling`]: who handles a conversation and in what state: the
//!   assignment and status commands, and round-robin assignment.
//! - [`inbox`]: agents' inbox updates from new messages, at most one per
//!   conversation a second, the newest state winning.
//! - [`sync`]: the tenants' outboxes of sync changes, and their notifications.
//! - [`telemetry`]: the series workers export.
//! - [`whatsapp`]: the WhatsApp Cloud API, webhooks in and sends out; its
//!   [`whatsapp::outbound::Forward`] hook queues a WhatsApp send before a
//!   message's command is acknowledged.

pub mod handling;
pub mod inbox;
pub mod ownership;
pub mod persist;
pub mod registry;
pub mod runner;
pub mod sync;
pub mod telemetry;
pub mod whatsapp;
