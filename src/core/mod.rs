//! The protocol, sans-IO: no Bevy, no sockets, no clock of its own. Inputs are packets and the
//! current time; outputs are packets to send, events and the next deadline. Deterministic, so it
//! is unit-tested with a simulated clock and fuzzed.

pub(crate) mod auth;
pub(crate) mod backoff;
pub(crate) mod budget;
pub mod codec;
pub(crate) mod conditioner;
pub(crate) mod error;
pub(crate) mod peer;
pub(crate) mod rng;
pub(crate) mod room;
pub(crate) mod session;
pub mod wire;
