//! The transport: WebRTC through matchbox, signalling, and the embedded signalling server.

pub(crate) mod ice;
pub(crate) mod matchbox;
#[cfg(all(feature = "server", not(target_arch = "wasm32")))]
pub(crate) mod server;
pub(crate) mod signaling;
