//! The transport, behind a small seam: a [`Transport`] opens [`Socket`]s; a socket is one
//! signalling session and the peer-to-peer links made through it. The product uses matchbox's
//! WebRTC socket ([`matchbox`]); tests and games that test their own netcode use the in-memory
//! network ([`memory`]). [`sockets`] keeps the sockets of one room, the current one and older
//! ones still carrying links. [`engine`] is the room's protocol beside its sockets, which the
//! transport runs on its own loop ([`Transport::drive`]), so liveness never waits for a frame.

pub(crate) mod engine;
pub(crate) mod ice;
pub(crate) mod matchbox;
pub(crate) mod memory;
#[cfg(all(feature = "server", not(target_arch = "wasm32")))]
pub(crate) mod server;
pub(crate) mod signaling;
pub(crate) mod sockets;

use crate::{
    core::error::SignalingError, core::peer::PeerId, core::wire::Channel, io::ice::IceServers,
};
use bytes::Bytes;
use matchbox_socket::SignallerBuilder;
use std::{
    sync::{Arc, Mutex, Weak},
    task::Waker,
    time::Duration,
};

pub(crate) use signaling::{Negotiation, SignalingPhase};

/// The other end of a link, as our socket knows it: an id the signalling server gave the
/// remote socket (matchbox's per-socket id), not the peer's stable [`PeerId`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct RemoteId(pub u128);

impl std::fmt::Debug for RemoteId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:08x}", (self.0 >> 96) as u32)
    }
}

/// How a link's packets travel between the two peers, as WebRTC's selected ICE candidate pair
/// says (see [`PeerStats::path`](crate::PeerStats::path)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetworkPath {
    /// Straight between the two peers' own addresses (same network, or public addresses).
    Direct,
    /// Through one or both peers' NATs, on addresses learned from a STUN server or from the
    /// peer's own packets (hole punching): still peer to peer, no relay. An address learned
    /// from packets (peer-reflexive) counts here, as it usually means a NAT; on a single
    /// machine, where the packets' source is another of its addresses than the one signaled
    /// (loopback), a direct link can show as this too.
    ServerReflexive,
    /// Through a TURN server, which relays every packet (one or both ends use it).
    Relayed,
}

/// What a socket is opened with.
#[derive(Clone, Debug)]
pub(crate) struct SocketTarget {
    /// The room's signalling URL (`{base}/{room}`).
    pub room_url: String,
    /// Relays the WebRTC handshakes.
    pub signaller: Arc<dyn SignallerBuilder>,
    /// STUN/TURN servers.
    pub ice: IceServers,
    /// Give up on the signalling connection after this long.
    pub connect_timeout: Duration,
    /// Who opens it (the in-memory network uses it to cut one app off).
    pub local: PeerId,
    /// Whether it offers connections to the sockets that join the room after it (matchbox's
    /// `NewPeer`). A star room's joiners do not: only the host links to them, and they to
    /// nobody else.
    pub offers: bool,
}

/// One open socket: a signalling session and the links made through it. Every method returns
/// at once; nothing here may panic on a closed or failed socket. `poll_links` and `receive`
/// register `waker` to be woken when there are more link changes or reliable-channel packets.
/// Unreliable packets do not wake it: they carry no protocol work (acks, pings and the
/// reliable stream travel on the reliable channel), so the frame that delivers them takes
/// them, and the loop drains them whenever it runs anyway (then sheds what the game is too
/// slow for). A room under unreliable load then costs no wakeup per packet.
pub(crate) trait Socket: Send + Sync + std::fmt::Debug {
    /// The signalling connection's phase.
    fn signaling(&self) -> SignalingPhase;
    /// How long the signalling connection took to come up, once it is up.
    fn connect_time(&self) -> Option<Duration>;
    /// Links that came up (`true`) or went down (`false`) since the last call.
    fn poll_links(&mut self, waker: &Waker, f: &mut dyn FnMut(RemoteId, bool));
    /// Every packet received since the last call (see above for what wakes `waker`).
    fn receive(&mut self, waker: &Waker, f: &mut dyn FnMut(RemoteId, Bytes));
    /// Queues a packet to `remote`; `false` if the socket cannot send any more.
    fn send(&mut self, remote: RemoteId, channel: Channel, packet: Bytes) -> bool;
    /// Whether the socket has ended, and how: `Some(Err(..))` after a signalling failure or a
    /// crash of its loop.
    fn ended(&mut self) -> Option<Result<(), SignalingError>>;
    /// Closes it: its links go down on both ends.
    fn close(&mut self);
    /// Our id on it, for diagnostics.
    fn local_id(&mut self) -> Option<RemoteId>;
    /// What WebRTC negotiated through it (nothing, for transports without WebRTC).
    fn negotiation(&self) -> Negotiation {
        Negotiation::default()
    }
    /// How the link to `remote` travels, once WebRTC knows (never, without WebRTC).
    fn path(&self, _remote: RemoteId) -> Option<NetworkPath> {
        None
    }
}

/// Something that runs beside the sockets: the room's protocol ([`engine::Engine`]).
pub(crate) trait Pump: Send {
    /// Handles everything the sockets have and everything due at `now`; the sockets wake
    /// `waker` when they have more. Returns the next instant it must run again, if any.
    fn pump(&mut self, now: Duration, waker: &Waker) -> Option<Duration>;
}

/// Opens sockets, keeps time and runs the protocol beside the sockets.
pub(crate) trait Transport: Send + Sync + std::fmt::Debug {
    /// Opens a socket; it connects in the background.
    fn open(&self, target: &SocketTarget) -> Box<dyn Socket>;
    /// Now, on this transport's clock (the wall clock; the in-memory network keeps its own).
    fn now(&self) -> Duration;
    /// Runs `pump` on the transport's own loop (a thread natively, the browser's event loop on
    /// wasm, `MemoryNetwork::advance` in memory): whenever a socket has news and whenever its
    /// deadline comes, until the pump is dropped.
    fn drive(&self, pump: Weak<Mutex<dyn Pump>>);
}

/// Locks a mutex shared with a loop; a panic elsewhere while it was held does not make its
/// state unreadable (every update to it is complete at each step).
pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
