//! Peers behind NATs, over real WebRTC: an internet in a box ([`internet`]) with home networks
//! behind nftables NAT routers, coturn and a signaling server on a public network, every peer a
//! process in its own namespace ([`box_peer`]), and the tests ([`nat`]). A test binary of its
//! own: Cargo runs test binaries one after another, so the box's processes never share the
//! two cores with the other real-WebRTC tests (`tests/webrtc`). Native only.
#![cfg(not(target_arch = "wasm32"))]

#[path = "../common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "../webrtc/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "../webrtc/netns.rs"]
mod netns;

mod box_peer;
mod internet;
mod nat;
