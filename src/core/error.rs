//! Typed errors. Bevy-free: the core produces them, the shell wraps them in
//! [`PeerError`](crate::PeerError) messages.

use crate::core::{
    budget::Budget,
    codec::CodecError,
    peer::PeerId,
    wire::{ByeReason, Delivery, WireError},
};
use std::{net::SocketAddr, time::Duration};
use thiserror::Error;

/// Why a send was refused. Returned by the `try_*` methods of
/// [`PeerMessage`](crate::PeerMessage); the fire-and-forget methods report it as a
/// [`PeerError`](crate::PeerError) instead.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SendError {
    /// The message is larger than the configured limit for its delivery.
    #[error("message of {size} bytes exceeds the {limit}-byte limit for {delivery} messages")]
    TooLarge {
        /// Encoded size of the message.
        size: usize,
        /// The limit that applies.
        limit: usize,
        /// The message type's delivery.
        delivery: Delivery,
    },
    /// The peer's resend buffer is full: it has not acknowledged enough of what was sent.
    #[error("peer {peer} has {unacked} unacknowledged bytes; limit {limit}")]
    Backpressure {
        /// The peer.
        peer: PeerId,
        /// Bytes waiting for acknowledgement.
        unacked: usize,
        /// The configured limit.
        limit: usize,
    },
    /// No such peer in the room (never connected, or already gone).
    #[error("no peer {0} in the room")]
    UnknownPeer(PeerId),
    /// This app is not a joiner with a host, or not in a room at all.
    #[error("not connected to a host")]
    NoHost,
    /// The type was never registered with `add_peer_message`.
    #[error("message type {0} is not registered (call app.add_peer_message::<T>(..))")]
    Unregistered(&'static str),
    /// serde/bincode could not encode the value.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// Whose fault an error is: what a game does about it differs (see
/// [`PeerErrorKind::fault`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The peer sent something it must not (a bug or a lie): it was dropped, everyone else
    /// carries on.
    Peer,
    /// The peers cannot play together (versions, message types, roles, a full room): no
    /// retry helps until one side changes.
    Incompatible,
    /// The network or the signaling server: the plugin keeps trying by itself.
    Network,
    /// This app used the API wrongly (a send that cannot go, `host` while in a room).
    Local,
}

/// A protocol rule a peer broke. Any of them drops the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub enum Violation {
    /// A `Hello` or `Bye` record among session records.
    #[error("handshake record inside a session")]
    HandshakeInSession,
    /// A second `Hello`, from another peer or incarnation, on a bound link.
    #[error("second hello on a link")]
    SecondHello,
    /// A whole reliable message while a fragmented one was half-way.
    #[error("whole message inside a fragmented one")]
    WholeInsideFragmented,
    /// A fragment of another type or length than the message in progress.
    #[error("fragment does not continue the message in progress")]
    FragmentMismatch,
    /// Fragments adding up to more than the length they announced.
    #[error("fragments overrun the message length")]
    FragmentOverrun,
    /// An ack for a sequence number we never sent.
    #[error("ack for a sequence number never sent")]
    AckBeyondSent,
    /// A resume point (first ack on a new link) before data it had already acknowledged.
    #[error("resume point before acknowledged data")]
    ResumeBeforeAcked,
    /// A message type sent with another delivery than both sides registered.
    #[error("message sent with another delivery than registered")]
    WrongDelivery,
    /// A room control message (the host's list of admitted peers) that does not decode.
    #[error("malformed room control message")]
    BadControl,
    /// A replication message (the `replicon` feature) on a channel this app does not have,
    /// unreliably on a channel that must be reliable, or to a joiner from another joiner.
    #[error(
        "replication message on a channel that does not exist, with a weaker delivery, or not from the host"
    )]
    BadReplicationMessage,
    /// A peer said it took the room from our host (us) at a later host epoch, but it was
    /// never cut off from us long enough to have had a reason to.
    #[error("claimed the room from a host it never lost")]
    FalseHostClaim,
    /// In a star room: a message whose route header does not decode, addresses its own
    /// sender, takes a way the sender may not (a host sending "for everyone"), or is too large
    /// to relay (its sender skipped the size check).
    #[error("message with a malformed or forbidden route (star topology)")]
    BadRoute,
}

/// Why the connection to the signaling server, or a socket, failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub enum SignalingError {
    /// The server could not be reached (or refused the connection) within
    /// `connect_timeout`.
    #[error("could not reach the signaling server")]
    Unreachable,
    /// The connection to the server dropped after it was up.
    #[error("connection to the signaling server lost")]
    Lost,
    /// The socket closed without an error.
    #[error("the socket closed")]
    Closed,
    /// The socket's background loop crashed (a panic inside matchbox or webrtc-rs; the log
    /// has its message).
    #[error("the socket's message loop crashed")]
    Crashed,
}

/// Why the embedded signaling server could not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub enum ServerError {
    /// Its address could not be bound (in use, or not ours).
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address it was asked to bind.
        addr: SocketAddr,
    },
    /// Its runtime or thread could not be started.
    #[error("cannot start the server: {kind}")]
    Start {
        /// What the operating system said.
        kind: std::io::ErrorKind,
    },
}

/// Everything that can go wrong, as reported in [`PeerError`](crate::PeerError).
/// [`fault`](Self::fault) says whose fault it is.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PeerErrorKind {
    /// The peer sent bytes that are not a valid packet.
    #[error("malformed packet: {0}")]
    Malformed(#[from] WireError),
    /// The peer broke the protocol (out-of-place record, impossible sequence number, ...).
    #[error("protocol violation: {0}")]
    Violation(Violation),
    /// A new link was up for this long without the peer's handshake; it was dropped (a
    /// joiner then re-opens its socket for fresh connections). Reported only for links that
    /// matter: a joiner's before it has its host, and links to peers the host admitted; a
    /// stranger that says nothing costs one quiet link.
    #[error("no hello on a new link within {after:?}")]
    HandshakeTimeout {
        /// `handshake_timeout`.
        after: std::time::Duration,
    },
    /// The peer sent a message id that no registered type has.
    #[error("unknown message type id {0:#010x}")]
    UnknownMessage(u32),
    /// The peer sent bytes that do not decode as the registered type.
    #[error("could not decode {type_name}: {error}")]
    Decode {
        /// The Rust type it should have been.
        type_name: &'static str,
        /// What bincode said.
        error: CodecError,
    },
    /// A reliable message (or its fragments) larger than `max_message_size`.
    #[error("incoming message of {size} bytes exceeds the {limit}-byte limit")]
    MessageTooLarge {
        /// Declared size.
        size: u64,
        /// Configured limit.
        limit: usize,
    },
    /// The peer sent more reliable data past our last ack than its window allows: it ignores
    /// flow control (an honest peer stops at `max_in_flight` while our game is not taking
    /// its messages).
    #[error("the peer sent {bytes} bytes past our last ack; at most {limit} are allowed")]
    Overrun {
        /// Bytes received since our last ack.
        bytes: usize,
        /// The limit: four in-flight windows.
        limit: usize,
    },
    /// The peer runs another protocol version.
    #[error("protocol version mismatch: ours {ours}, theirs {theirs}")]
    VersionMismatch {
        /// Our version.
        ours: u16,
        /// Their version.
        theirs: u16,
    },
    /// The peer registered other message types or deliveries.
    #[error(
        "message protocol mismatch: ours {ours:#018x}, theirs {theirs:#018x} \
         (both sides must register the same message types, names and deliveries)"
    )]
    ProtocolMismatch {
        /// Our protocol hash.
        ours: u64,
        /// Their protocol hash.
        theirs: u64,
    },
    /// A second host in the room.
    #[error("another host is already in the room")]
    DuplicateHost,
    /// The host refused us because the room is full (or, on the host, refused a joiner).
    #[error("the room is full")]
    RoomFull,
    /// The peer's proof of identity failed: its signature does not hold for this link (a
    /// replayed or relayed handshake), or its id does not belong to its key.
    #[error("the peer's identity proof failed")]
    BadProof,
    /// A peer with the same identity (key) is already in the room under a live session (the
    /// same app running twice with one persisted key, or a copied key). The newcomer is
    /// refused; once the first is away, a new incarnation replaces it.
    #[error("a peer with the same identity is already in the room")]
    DuplicatePeer,
    /// The room secret does not match: one side has another secret, or none (reported on
    /// both sides).
    #[error("the room secret does not match")]
    RoomSecretMismatch,
    /// The host's game did not admit us (see `PeerMessagePlugin::review_joiners`).
    #[error("the host did not admit us")]
    NotAdmitted,
    /// The game did not answer a [`JoinRequest`](crate::JoinRequest) within the
    /// admission timeout: the joiner was refused.
    #[error("no admission decision within {after:?}; the joiner was refused")]
    AdmissionTimeout {
        /// The configured timeout.
        after: Duration,
    },
    /// The peer went over one of its [`Budgets`](crate::Budgets) and was dropped.
    #[error("the peer went over its budget of {limit} {budget}")]
    OverBudget {
        /// Which budget.
        budget: Budget,
        /// Its limit (per second, or per minute for links).
        limit: u64,
    },
    /// The peer refused or dropped us, and said why.
    #[error("the peer closed the link: {0}")]
    RefusedByPeer(ByeReason),
    /// A peer we (the host) kicked tried to come back within its resume window: refused.
    #[error("a kicked peer tried to come back; refused")]
    KickedPeerReturned,
    /// The peer presented our own peer id.
    #[error("a peer presented our own peer id")]
    SelfConnection,
    /// `join` found no host within `join_timeout`.
    #[error("no host answered in room {room:?} within {after:?}")]
    JoinTimeout {
        /// The room.
        room: String,
        /// The configured timeout.
        after: Duration,
    },
    /// `join` found the host (the signaling server introduced it and WebRTC negotiated with
    /// it) but no connection formed within `join_timeout`: every network path between the two
    /// is blocked. Typically both sit behind NATs that hole punching cannot cross (symmetric
    /// NATs, strict firewalls); the cure is a TURN server in the ICE servers
    /// (`IceServers`, a `turn:` URL), which relays when nothing else gets through.
    #[error(
        "no network path to the host of room {room:?} within {after:?}: {}",
        if *relay_offered {
            "not even through the TURN relay (check that it is reachable and its credentials are valid)"
        } else {
            "the networks in between block every direct path; configure a TURN server (an ICE server with a turn: URL) to relay"
        }
    )]
    NoNetworkPath {
        /// The room.
        room: String,
        /// The configured timeout.
        after: Duration,
        /// Whether a relay (TURN) candidate was offered by either side: a TURN server was
        /// configured and answered.
        relay_offered: bool,
    },
    /// The signaling server could not be reached, or the connection to it failed. Reported
    /// once per outage; the plugin keeps re-opening (each attempt is logged).
    #[error("signaling: {0}")]
    Signaling(#[from] SignalingError),
    /// The embedded signaling server could not start.
    #[error("embedded signaling server: {0}")]
    Server(#[from] ServerError),
    /// `host`/`join` with a room name the signaling URL cannot carry.
    #[error("invalid room name {room:?}: use letters, digits, '-', '_' and '.'")]
    InvalidRoomName {
        /// The name given.
        room: String,
    },
    /// A send was refused.
    #[error(transparent)]
    Send(#[from] SendError),
    /// `host`/`join` called while already in a room.
    #[error("already in a room; call leave() first")]
    AlreadyInRoom,
}

impl PeerErrorKind {
    /// Whose fault the error is.
    ///
    /// ```
    /// use bevy::{log::prelude::*, prelude::*};
    /// use bevy_peer_message::prelude::*;
    ///
    /// fn report(mut errors: MessageReader<PeerError>) {
    ///     for e in errors.read() {
    ///         match e.error.fault() {
    ///             Fault::Peer => warn!("dropped a misbehaving peer: {}", e.error),
    ///             Fault::Network => info!("network trouble, retrying: {}", e.error),
    ///             Fault::Incompatible | Fault::Local => error!("{}", e.error),
    ///         }
    ///     }
    /// }
    /// # bevy::ecs::system::assert_is_system(report);
    /// ```
    pub fn fault(&self) -> Fault {
        match self {
            Self::Malformed(_)
            | Self::Violation(_)
            | Self::UnknownMessage(_)
            | Self::Decode { .. }
            | Self::MessageTooLarge { .. }
            | Self::Overrun { .. }
            | Self::BadProof
            | Self::OverBudget { .. }
            | Self::KickedPeerReturned
            | Self::SelfConnection => Fault::Peer,
            Self::VersionMismatch { .. }
            | Self::ProtocolMismatch { .. }
            | Self::DuplicateHost
            | Self::DuplicatePeer
            | Self::RoomFull
            | Self::RoomSecretMismatch
            | Self::NotAdmitted
            | Self::RefusedByPeer(_) => Fault::Incompatible,
            Self::HandshakeTimeout { .. }
            | Self::JoinTimeout { .. }
            | Self::NoNetworkPath { .. }
            | Self::Signaling(_)
            | Self::Server(_) => Fault::Network,
            Self::Send(_)
            | Self::AlreadyInRoom
            | Self::InvalidRoomName { .. }
            | Self::AdmissionTimeout { .. } => Fault::Local,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_names_whose_fault_it_is() {
        let cases = [
            (
                PeerErrorKind::Violation(Violation::SecondHello),
                Fault::Peer,
            ),
            (PeerErrorKind::Overrun { bytes: 1, limit: 0 }, Fault::Peer),
            (
                PeerErrorKind::RefusedByPeer(ByeReason::Refused),
                Fault::Incompatible,
            ),
            (PeerErrorKind::RoomFull, Fault::Incompatible),
            (PeerErrorKind::BadProof, Fault::Peer),
            (
                PeerErrorKind::OverBudget {
                    budget: Budget::MessagesPerSecond,
                    limit: 1,
                },
                Fault::Peer,
            ),
            (PeerErrorKind::RoomSecretMismatch, Fault::Incompatible),
            (
                PeerErrorKind::Signaling(SignalingError::Lost),
                Fault::Network,
            ),
            (
                PeerErrorKind::Server(ServerError::Start {
                    kind: std::io::ErrorKind::Other,
                }),
                Fault::Network,
            ),
            (PeerErrorKind::AlreadyInRoom, Fault::Local),
            (
                PeerErrorKind::InvalidRoomName { room: "a b".into() },
                Fault::Local,
            ),
        ];
        for (error, fault) in cases {
            assert_eq!(error.fault(), fault, "{error}");
        }
        assert_eq!(
            PeerErrorKind::RefusedByPeer(ByeReason::ProtocolViolation).to_string(),
            "the peer closed the link: it says we broke the protocol"
        );
    }
}
