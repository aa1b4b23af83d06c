//! Typed errors. Bevy-free: the core produces them, the shell wraps them in
//! [`PeerError`](crate::PeerError) messages.

use crate::core::{
    codec::CodecError,
    peer::PeerId,
    wire::{Delivery, WireError},
};
use std::time::Duration;
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

/// Everything that can go wrong, as reported in [`PeerError`](crate::PeerError).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PeerErrorKind {
    /// The peer sent bytes that are not a valid packet.
    #[error("malformed packet: {0}")]
    Malformed(#[from] WireError),
    /// The peer broke the protocol (out-of-place record, impossible sequence number, ...).
    #[error("protocol violation: {0}")]
    Violation(&'static str),
    /// A new link was up for this long without the peer's `Hello`; it was dropped (a joiner
    /// then re-opens its socket for fresh connections).
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
    /// The peer refused or dropped us.
    #[error("the peer closed the link: {0}")]
    RefusedByPeer(&'static str),
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
    /// The signaling server could not be reached, or the connection to it failed.
    #[error("signaling: {0}")]
    Signaling(String),
    /// The embedded signaling server could not start.
    #[error("embedded signaling server: {0}")]
    Server(String),
    /// A send was refused.
    #[error(transparent)]
    Send(#[from] SendError),
    /// `host`/`join` called while already in a room.
    #[error("already in a room; call leave() first")]
    AlreadyInRoom,
}
