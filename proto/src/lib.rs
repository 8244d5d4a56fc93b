//! The vocabulary of Switchboard.
//!
//! - [`pb`]: the protobuf envelopes on the bus and the native protocol's binary
//!   frames, generated from every `.proto` file of this crate (`switchboard`,
//!   `sync`, `whatsapp`, `native`: one package, `switchboard.v1`).
//! - [`model`]: the domain types with the JSON shapes clients see, and
//!   conversions to and from the envelopes.
//! - [`telemetry`]: how a metric series is described, so each crate can list
//!   its own and a scrape can describe them all.

pub mod model;
pub mod telemetry;

/// Generated from every `.proto` file of this crate at build time.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/switchboard.v1.rs"));
}

pub use prost::Message as ProstMessage;
