//! Integration tests: real host and joiner Bevy apps over real WebRTC (matchbox_socket +
//! webrtc-rs), each test binary inside a private network namespace (see `harness`). Native
//! only: the browser's counterpart is `tests/browser.rs`.
#![cfg(not(target_arch = "wasm32"))]

#[path = "../common/mod.rs"]
mod common;
mod harness;
mod netns;

mod bad_input;
mod cuts;
mod delivery;
mod handshake;
mod large;
mod migration;
mod reconnect;
#[cfg(feature = "replicon")]
mod replicon;
mod room;
mod scale_out;
#[path = "../common/signaling_farm.rs"]
mod signaling_farm;
mod signaling_server;
mod star;
mod vanishing;
