//! # bevy_peer_message
//!
//! Fast peer-to-peer game messaging over WebRTC for [Bevy](https://bevy.org): host or join a
//! room, register serde message types, and send them reliably (exactly once, in order, any
//! size up to a limit) or unreliably (at most once, optionally only the newest). Built on
//! [`matchbox_socket`]: native (webrtc-rs) and browser (wasm) alike. A native host embeds a
//! signaling server, so nothing external is needed to start.
//!
//! ```no_run
//! use bevy::prelude::*;
//! use bevy_peer_message::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Clone, Debug)]
//! struct Chat(String);
//!
//! #[derive(Serialize, Deserialize, Clone, Copy, Debug)]
//! struct Position(Vec2);
//!
//! fn main() {
//!     App::new()
//!         .add_plugins(MinimalPlugins)
//!         .add_plugins(PeerMessagePlugin::default()) // native host: embedded signaling server
//!         .add_peer_message::<Chat>(Delivery::Reliable)
//!         .add_peer_message::<Position>(Delivery::UnreliableSequenced)
//!         .add_systems(Startup, |mut net: PeerMessage| net.host("lobby"))
//!         .add_systems(Update, (greet, show_chat))
//!         .run();
//! }
//!
//! fn greet(mut joined: MessageReader<PeerConnected>, mut net: PeerMessage) {
//!     for event in joined.read() {
//!         net.send(event.peer, Chat("welcome".into()));
//!     }
//! }
//!
//! fn show_chat(mut chat: MessageReader<Received<Chat>>) {
//!     for Received { from, message } in chat.read() {
//!         info!("{from}: {}", message.0);
//!     }
//! }
//! ```
//!
//! ## Layers
//! - A sans-IO core with no Bevy in it: [`wire`] (the packet format), [`session`] (per-peer
//!   reliable stream, fragmentation, acks, round-trip time), [`room`] (handshake, roles, peer
//!   table), [`codec`] (serde + bincode with bounded decoding).
//! - A thin Bevy shell: [`plugin`], [`messages`], [`events`], [`config`].
//! - The transport: [`transport`] (matchbox socket), [`signaling`] (custom signallers),
//!   `server` (the embedded signaling server, native only).
//!
//! Everything a peer sends is untrusted: malformed packets, undecodable payloads, unknown
//! message ids and oversized messages produce a [`PeerError`](events::PeerError) naming the
//! peer, that peer is dropped, and everyone else carries on.
#![warn(missing_docs)]

pub mod backoff;
pub mod codec;
pub mod conditioner;
pub mod config;
pub mod error;
pub mod events;
pub mod messages;
pub mod network;
pub mod peer;
pub mod plugin;
pub mod room;
#[cfg(all(feature = "server", not(target_arch = "wasm32")))]
pub mod server;
pub mod session;
pub mod signaling;
pub mod transport;
pub mod wire;

/// Everything a game needs: `use bevy_peer_message::prelude::*;`.
pub mod prelude {
    pub use crate::backoff::Backoff;
    pub use crate::conditioner::LinkConditioner;
    pub use crate::config::{IceServers, PeerMessageSettings, Signaling, SignalingServerInfo};
    pub use crate::error::{PeerErrorKind, SendError};
    pub use crate::events::{
        ConnectionState, Peer, PeerConnected, PeerDisconnected, PeerError, PeerReconnected,
        PeerReconnecting, PeerStats,
    };
    pub use crate::messages::{Delivery, PeerMessage, PeerMessageAppExt, Received};
    pub use crate::peer::{PeerId, Role};
    pub use crate::plugin::{PeerMessagePlugin, PeerMessageSet};
    pub use crate::room::DisconnectReason;
    pub use crate::signaling::LocalSignalingHub;
}

/// The README's code samples, compiled as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
