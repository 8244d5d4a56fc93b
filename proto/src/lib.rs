//! The vocabulary of Switchboard.
//!
//! - [`pb`]: the protobuf envelopes on the bus, generated from `switchboard.proto`.
//! - [`model`]: the domain types with the JSON shapes of the contract (what
//!   clients see), and conversions to and from the envelopes.

pub mod model;

/// Generated from `switchboard.proto` at build time.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/switchboard.v1.rs"));
}

pub use prost::Message as ProstMessage;
