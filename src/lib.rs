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
//! The tree shows them (README's "Layout" draws it):
//! - `core/`: the protocol, sans-IO: no Bevy, no sockets, time passed in. The packet format,
//!   the bounded codec, the room (handshake, roles, admission) and per-peer sessions (reliable
//!   stream, fragmentation, acks, round-trip time).
//! - `io/`: the transport: the matchbox WebRTC socket, signalling, the embedded signalling
//!   server (native only).
//! - the files at the top: the Bevy side: [`PeerMessagePlugin`], the [`PeerMessage`] API, the
//!   message registry, lifecycle messages and [`ConnectionState`], configuration.
//!
//! Everything a peer sends is untrusted: malformed packets, undecodable payloads, unknown
//! message ids and oversized messages produce a [`PeerError`] naming the peer, that peer is
//! dropped, and everyone else carries on.
#![warn(missing_docs, unreachable_pub)]
// Without the plugin, only the core builds (for the fuzz targets): what the plugin alone uses is
// dead there.
#![cfg_attr(not(feature = "plugin"), allow(dead_code))]

#[cfg(feature = "plugin")]
mod api;
#[cfg(feature = "plugin")]
mod config;
mod core;
#[cfg(feature = "plugin")]
mod diagnostics;
#[cfg(feature = "plugin")]
mod events;
#[cfg(feature = "plugin")]
mod io;
#[cfg(feature = "plugin")]
mod network;
#[cfg(feature = "plugin")]
mod plugin;
#[cfg(feature = "plugin")]
mod registry;
#[cfg(feature = "replicon")]
mod replicon;

#[cfg(feature = "plugin")]
pub use crate::api::PeerMessage;
#[cfg(feature = "plugin")]
pub use crate::config::{
    DEFAULT_SIGNALING_PORT, PeerMessageSettings, Signaling, SignalingServerInfo,
};
pub use crate::core::wire::Delivery;
pub use crate::core::{
    auth::{Identity, RoomSecret},
    backoff::Backoff,
    budget::{Budget, Budgets},
    codec::CodecError,
    conditioner::LinkConditionerConfig,
    error::{Fault, PeerErrorKind, SendError, ServerError, SignalingError, Violation},
    peer::{PeerId, Role},
    room::{DisconnectReason, ResumePolicy, Topology},
    session::{SessionConfig, Stats, Transfer, TransferDirection},
    wire::{ByeReason, WireError},
};
#[cfg(feature = "plugin")]
pub use crate::diagnostics::PeerMessageDiagnosticsPlugin;
#[cfg(feature = "plugin")]
pub use crate::events::{
    ConnectionState, HostMigrated, JoinRequest, Peer, PeerConnected, PeerDisconnected, PeerError,
    PeerReconnected, PeerReconnecting, PeerStats, TransferProgress,
};
#[cfg(feature = "plugin")]
pub use crate::io::NetworkPath;
#[cfg(feature = "plugin")]
pub use crate::io::ice::{IceServer, IceServers, TurnCredentials};
#[cfg(feature = "plugin")]
pub use crate::io::memory::MemoryNetwork;
#[cfg(all(feature = "server", not(target_arch = "wasm32")))]
pub use crate::io::server::{EmbeddedServer, ServerLimits, ServerMetrics};
#[cfg(feature = "plugin")]
pub use crate::io::signaling::LocalSignalingHub;
#[cfg(feature = "plugin")]
pub use crate::plugin::{PeerMessagePlugin, PeerMessageSet};
#[cfg(feature = "plugin")]
pub use crate::registry::{PeerMessageAppExt, PeerMessageType, Received, Relayed};
#[cfg(feature = "replicon")]
pub use crate::replicon::RepliconPeerMessagePlugin;

/// Everything a game needs: `use bevy_peer_message::prelude::*;`.
#[cfg(feature = "plugin")]
pub mod prelude {
    pub use crate::{
        Backoff, Budgets, ConnectionState, Delivery, DisconnectReason, Fault, HostMigrated,
        IceServer, IceServers, Identity, JoinRequest, LinkConditionerConfig, LocalSignalingHub,
        MemoryNetwork, NetworkPath, Peer, PeerConnected, PeerDisconnected, PeerError,
        PeerErrorKind, PeerId, PeerMessage, PeerMessageAppExt, PeerMessageDiagnosticsPlugin,
        PeerMessagePlugin, PeerMessageSet, PeerMessageSettings, PeerReconnected, PeerReconnecting,
        PeerStats, Received, Relayed, Role, RoomSecret, SendError, SessionConfig, Signaling,
        SignalingServerInfo, Topology, TransferDirection, TransferProgress, TurnCredentials,
    };
}

/// Not part of the API: the sans-IO core's pieces that this crate's benches, fuzz targets and
/// hostile-peer tests drive directly. No stability promise; may change in any release.
#[doc(hidden)]
pub mod internals {
    pub use crate::core::auth::{LinkBinding, make_auth};
    pub use crate::core::room::{
        Access, LinkEnds, LocalIdentity, RelayCounts, RelayFilter, RelayFilterFn, RelayView, Room,
        RoomEvent, testing,
    };
    pub use crate::core::{codec, wire};
    #[cfg(feature = "plugin")]
    pub use crate::registry::MessageRegistry;

    /// The plugin's view of its sockets, links and peers, for test failure messages.
    #[cfg(feature = "plugin")]
    pub fn describe(world: &mut bevy::prelude::World) -> String {
        world
            .resource_mut::<crate::network::PeerNetwork>()
            .describe()
    }
}

/// The README's code samples, compiled as doctests.
#[doc = include_str!("../README.md")]
#[cfg(all(doctest, feature = "plugin"))]
pub struct ReadmeDoctests;
