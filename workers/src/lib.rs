//! Workers consume the bus and do the writing; each scales by adding processes.
//!
//! - [`persist`]: the command stream into the store: messages get their
//!   offsets here, conversations are created, statuses move forward, bot
//!   replies are queued; then the results go back out as events.
//! - [`sync`]: the tenants' outboxes of sync changes, and their notifications.
//! - [`whatsapp`]: the WhatsApp Cloud API, webhooks in and sends out.
//! - [`runner`]: how each of them consumes: batches, answers, retries.
//! - [`registry`]: the kinds of worker, as the command line runs them.

pub mod persist;
pub mod registry;
pub mod runner;
pub mod sync;
pub mod whatsapp;
