//! What the plugin tells the game: lifecycle [`Message`]s, the [`ConnectionState`] and the
//! components of peer entities.

use crate::{
    core::error::PeerErrorKind,
    core::peer::PeerId,
    core::peer::Role,
    core::room::DisconnectReason,
    core::session::{Stats, TransferDirection},
    io::NetworkPath,
};
use bevy::prelude::*;
use std::time::Duration;

/// A remote peer completed the handshake and is in the room.
///
/// Written in [`PreUpdate`], readable in the same frame's [`Update`].
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct PeerConnected {
    /// The peer.
    pub peer: PeerId,
    /// Its role.
    pub role: Role,
    /// The entity that carries its [`Peer`] and [`PeerStats`] components.
    pub entity: Entity,
}

/// A remote peer left the room for good: its entity is despawned and its buffers are freed.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct PeerDisconnected {
    /// The peer.
    pub peer: PeerId,
    /// Why.
    pub reason: DisconnectReason,
}

/// A peer went silent for `liveness_timeout` (or its link dropped): it is away. Its entity
/// stays, reliable messages to it keep queueing, and the plugin works to bring it back; then
/// [`PeerReconnected`] follows, or [`PeerDisconnected`] with
/// [`DisconnectReason::Timeout`] after `resume_timeout`.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct PeerReconnecting {
    /// The peer.
    pub peer: PeerId,
}

/// A peer whose link dropped is back, and its reliable stream resumed where it stopped.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct PeerReconnected {
    /// The peer.
    pub peer: PeerId,
    /// How long it was away (zero when the new link arrived before the old one was missed).
    pub downtime: Duration,
}

/// The room has a new host, and [`PeerMessage::host_id`](crate::PeerMessage::host_id),
/// [`send_to_host`](crate::PeerMessage::send_to_host) and [`Peer::role`] follow it from this
/// frame on. `old` handed the room over
/// ([`PeerMessage::hand_over`](crate::PeerMessage::hand_over), or `leave()` on a host), or was
/// away for longer than the host grace
/// ([`PeerMessagePlugin::host_grace`](crate::PeerMessagePlugin::host_grace)) and the others
/// agreed on `new`. Either may be us: when `new` is us we host from now on (admitting and
/// kicking), and our [`ConnectionState`] follows the socket's signaling as a host's does.
/// `old` stays in the room as a joiner while its session lasts.
///
/// Messages keep flowing through it: a reliable message sent before it (a snapshot the old
/// host handed its successor, say) is delivered before it, or in the same frame.
///
/// Written in [`PreUpdate`] (or, for the old host handing over, in [`PostUpdate`]).
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostMigrated {
    /// The host until now.
    pub old: PeerId,
    /// The host from now on.
    pub new: PeerId,
}

/// Host reviewing joiners (see
/// [`PeerMessagePlugin::review_joiners`](crate::PeerMessagePlugin::review_joiners)): a new
/// joiner proved who it is and asks to join. Answer with
/// [`PeerMessage::admit`](crate::PeerMessage::admit) or
/// [`PeerMessage::refuse`](crate::PeerMessage::refuse), in this frame or a later one.
///
/// Written in [`PreUpdate`], readable in the same frame's [`Update`].
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    /// The joiner (its id is proven: it holds the key it derives from).
    pub peer: PeerId,
    /// What it sent with [`PeerMessage::join_with`](crate::PeerMessage::join_with): a player
    /// name, a ticket (at most 1 KiB; not verified by anyone but the game).
    pub payload: Vec<u8>,
}

/// Something went wrong: a peer broke the protocol (and was dropped), a handshake was refused,
/// signaling failed, a send was refused. The room and every other peer carry on.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct PeerError {
    /// The peer concerned, when there is one.
    pub peer: Option<PeerId>,
    /// What happened.
    pub error: PeerErrorKind,
}

impl std::fmt::Display for PeerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.peer {
            Some(peer) => write!(f, "peer {peer}: {}", self.error),
            None => write!(f, "{}", self.error),
        }
    }
}

/// This app's place in a room, as Bevy [`States`]: use `OnEnter(ConnectionState::Connected)`,
/// `in_state(ConnectionState::Connected)` and friends.
#[derive(States, Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ConnectionState {
    /// Not in a room.
    #[default]
    Offline,
    /// `host()`: opening the room. `join()`: looking for the host.
    Connecting,
    /// Host: the room is open. Joiner: connected to the host.
    Connected,
    /// The link to the host (or, on a host, to the signaling server) is down and being
    /// re-established.
    Reconnecting,
}

/// A remote peer in the room: one entity per peer, spawned at [`PeerConnected`] and despawned
/// at [`PeerDisconnected`].
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Its stable id.
    pub id: PeerId,
    /// Its role.
    pub role: Role,
}

/// Live figures for one peer, refreshed every frame in
/// [`PeerMessageSet::Receive`](crate::PeerMessageSet): the session's [`Stats`]
/// (round-trip time, jitter, bytes and packets each way, records resent; read them straight
/// through, as in `stats.rtt`) plus the bytes waiting for the peer's acknowledgement.
///
/// In a star room ([`Topology::Star`](crate::Topology)) a joiner has a session with its host
/// only: its fellow joiners' `PeerStats` stay empty (what reaches them travels in the host's
/// session, whose figures are the host's), and a large message relayed from one of them
/// reports its [`TransferProgress`] as the host's.
#[derive(Component, Debug, Clone, Default, PartialEq)]
pub struct PeerStats {
    /// The session's counters and estimates.
    pub stats: Stats,
    /// Bytes of reliable messages not yet acknowledged by the peer.
    pub unacked_bytes: usize,
    /// How the link to the peer travels: direct, through NATs (server-reflexive), or through
    /// a TURN relay. From WebRTC's selected candidate pair, natively and in the browser (polled
    /// about once a second, so `None` for the first second of a link); always `None` on the
    /// in-memory network, and while the peer is away.
    pub path: Option<NetworkPath>,
}

/// Progress of a large reliable message, one that travels as many packets (a level, a replay,
/// a file): sent in each frame its progress changed, on both sides, the last time with
/// `done == total`. Messages that fit one packet are not reported.
///
/// ```
/// # use bevy::prelude::*;
/// # use bevy_peer_message::prelude::*;
/// fn download_bar(mut progress: MessageReader<TransferProgress>) {
///     for p in progress.read() {
///         if p.direction == TransferDirection::Receiving && p.message == "level" {
///             info!("level: {:.0} %", 100.0 * p.fraction());
///         }
///     }
/// }
/// # bevy::ecs::system::assert_is_system(download_bar);
/// ```
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct TransferProgress {
    /// The peer it goes to or comes from.
    pub peer: PeerId,
    /// Sending (progress: what the peer acknowledged) or receiving (what arrived).
    pub direction: TransferDirection,
    /// The message type's registered name (its Rust type name unless registered with
    /// `add_peer_message_named`).
    pub message: String,
    /// Tells this peer's transfers apart (the same number on both sides).
    pub id: u64,
    /// Bytes done.
    pub done: usize,
    /// The message's size in bytes, encoded (a little more than its payload).
    pub total: usize,
}

impl TransferProgress {
    /// `done / total`, from 0 to 1.
    pub fn fraction(&self) -> f32 {
        if self.total == 0 {
            1.0
        } else {
            self.done as f32 / self.total as f32
        }
    }
}

impl std::ops::Deref for PeerStats {
    type Target = Stats;
    fn deref(&self) -> &Stats {
        &self.stats
    }
}
