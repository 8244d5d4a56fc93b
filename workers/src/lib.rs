//! Workers consume the bus and do the writing; each scales by adding processes.
//!
//! - [`persist`]: the command stream into the store: messages get their
//!   offsets here, conversations are created, statuses move forward, bot
//!   replies are queued; then the results go back out as events.

pub mod persist;
