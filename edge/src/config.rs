//! What an edge node is told at start; the binary fills it from flags,
//! environment and the TOML file.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Names this node on the bus (its reply subjects).
    pub node_id: String,
    pub jwt_secret: String,
    /// Browser origins allowed by CORS; empty allows none.
    pub cors_origins: Vec<String>,
    pub limits: Limits,
}

/// Contract §9: everything a client can make the edge hold is bounded.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest Socket.IO/HTTP payload, in bytes.
    pub max_payload: usize,
    /// Longest message text, in characters.
    pub max_text_len: usize,
    /// Conversations one socket may be joined to at once.
    pub max_joins: usize,
    /// `send_message` per second per connection (also the burst).
    pub publish_rate: u32,
    /// Typing events per second per connection (also the burst).
    pub typing_rate: u32,
    /// A `typing_start` with no stop ends by itself after this long.
    pub typing_ttl: Duration,
    /// Packets queued for one socket before it counts as not reading and is
    /// disconnected.
    pub outbound_buffer: usize,
    /// Messages in a join's page and in one recovery answer.
    pub history_page: u32,
    pub max_recovery: u32,
    /// How long an edge waits for a worker to answer a command.
    pub command_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_payload: 1 << 20,
            max_text_len: 4096,
            max_joins: 100,
            publish_rate: 20,
            typing_rate: 10,
            typing_ttl: Duration::from_secs(5),
            outbound_buffer: 256,
            history_page: 50,
            max_recovery: 1000,
            command_timeout: Duration::from_secs(10),
        }
    }
}
