//! [`PeerMessagePlugin`]: its builder, its system sets and the systems it adds.

use crate::{
    config::{PeerMessageSettings, Signaling},
    core::auth::{Identity, RoomSecret},
    core::backoff::Backoff,
    core::budget::Budgets,
    core::conditioner::LinkConditionerConfig,
    core::session::SessionConfig,
    events::{
        ConnectionState, JoinRequest, PeerConnected, PeerDisconnected, PeerError, PeerReconnected,
        PeerReconnecting,
    },
    io::ice::IceServers,
    io::{Transport, memory::MemoryNetwork},
    network::{self, PeerNetwork},
    registry::MessageRegistry,
};
use bevy::{prelude::*, state::app::StatesPlugin};
use std::{sync::Arc, time::Duration};

/// Where the plugin's systems run, for games that want to order around them.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerMessageSet {
    /// Runs in [`PreUpdate`]: takes what the protocol received (it runs beside the socket, not
    /// in frames; see the README's "Frames that stall"), writes [`PeerConnected`],
    /// [`Received<T>`](crate::Received) and the other messages, updates
    /// [`ConnectionState`] and [`PeerStats`](crate::PeerStats). Systems in [`Update`]
    /// see this frame's messages.
    Receive,
    /// Runs in [`PostUpdate`]: applies `host`/`join`/`leave`, then sends everything queued this
    /// frame (packed into as few WebRTC messages as fit). A message sent in [`Update`] leaves in
    /// the same frame.
    Send,
}

/// The plugin: add it once, register message types with
/// [`add_peer_message`](crate::PeerMessageAppExt::add_peer_message), and use the
/// [`PeerMessage`](crate::PeerMessage) system parameter.
///
/// It adds:
/// - resources [`PeerMessageSettings`] (what it was built with) and [`MessageRegistry`];
/// - the [`ConnectionState`] state (and Bevy's `StatesPlugin` if missing);
/// - messages [`PeerConnected`], [`PeerDisconnected`], [`PeerReconnecting`],
///   [`PeerReconnected`], [`PeerError`] and, on a host reviewing joiners, [`JoinRequest`];
/// - in [`PeerMessageSet::Receive`] ([`PreUpdate`]): an exclusive system that receives, and
///   after it the reconnect system, which runs only when something changed (a socket's
///   signaling, a link, a peer) or a re-open has waited out its backoff: re-opening the socket
///   when a host is away or signaling fails (liveness itself runs beside the socket, whatever
///   the frames do);
/// - in [`PeerMessageSet::Send`] ([`PostUpdate`]): an exclusive system that applies
///   `host`/`join`/`leave` and sends.
///
/// ```no_run
/// use bevy::prelude::*;
/// use bevy_peer_message::prelude::*;
/// use std::time::Duration;
///
/// App::new()
///     .add_plugins(MinimalPlugins)
///     .add_plugins(
///         PeerMessagePlugin::default()
///             .signaling(Signaling::server("ws://10.0.0.1:3536"))
///             .ice_servers(IceServers::none())
///             .join_timeout(Duration::from_secs(5)),
///     )
///     .run();
/// ```
#[derive(Debug, Clone, Default)]
pub struct PeerMessagePlugin {
    settings: PeerMessageSettings,
    /// `None`: matchbox WebRTC sockets.
    transport: Option<Arc<dyn Transport>>,
}

impl PeerMessagePlugin {
    /// How peers find each other (default on native: the embedded server; on wasm:
    /// `ws://127.0.0.1:3536`).
    pub fn signaling(mut self, signaling: Signaling) -> Self {
        self.settings.signaling = signaling;
        self
    }

    /// STUN/TURN servers (default: public STUN).
    pub fn ice_servers(mut self, ice: IceServers) -> Self {
        self.settings.ice_servers = ice;
        self
    }

    /// Be this identity (a key pair the game keeps, so that its [`PeerId`](crate::PeerId) stays the same
    /// across runs) instead of a fresh random one. See [`Identity`].
    pub fn identity(mut self, identity: Identity) -> Self {
        self.settings.identity = identity;
        self
    }

    /// Makes the room private: every peer must know `secret`, and proves it on every link
    /// without sending it. A peer without it (or with another) is refused on both sides with
    /// [`PeerErrorKind::RoomSecretMismatch`](crate::PeerErrorKind::RoomSecretMismatch).
    pub fn room_secret(mut self, secret: RoomSecret) -> Self {
        self.settings.room_secret = Some(secret);
        self
    }

    /// Host: every new joiner waits for the game's decision. The game reads
    /// [`JoinRequest`](crate::JoinRequest)s (the joiner's id and what it sent with
    /// [`PeerMessage::join_with`](crate::PeerMessage::join_with)) and answers with
    /// [`PeerMessage::admit`](crate::PeerMessage::admit) or
    /// [`PeerMessage::refuse`](crate::PeerMessage::refuse), in that frame or a later one, within
    /// `timeout` (then the joiner is refused and the host sees
    /// [`PeerErrorKind::AdmissionTimeout`](crate::PeerErrorKind::AdmissionTimeout)). A
    /// refused joiner gets [`PeerErrorKind::NotAdmitted`](crate::PeerErrorKind::NotAdmitted)
    /// and talks to nobody in the room: joiners bind only peers the host admitted. A peer
    /// resuming its session after a reconnect is not asked about again.
    ///
    /// ```
    /// use bevy::prelude::*;
    /// use bevy_peer_message::prelude::*;
    /// use std::time::Duration;
    ///
    /// fn review(mut requests: MessageReader<JoinRequest>, mut net: PeerMessage) {
    ///     for request in requests.read() {
    ///         if request.payload == b"let me in" {
    ///             net.admit(request.peer);
    ///         } else {
    ///             net.refuse(request.peer);
    ///         }
    ///     }
    /// }
    ///
    /// App::new()
    ///     .add_plugins(MinimalPlugins)
    ///     .add_plugins(PeerMessagePlugin::default().review_joiners(Duration::from_secs(10)))
    ///     .add_systems(Update, review);
    /// ```
    pub fn review_joiners(mut self, timeout: Duration) -> Self {
        self.settings.review_joiners = true;
        self.settings.resume.admission_timeout = timeout;
        self
    }

    /// What each peer may send per second before it is dropped (see [`Budgets`]).
    pub fn budgets(mut self, budgets: Budgets) -> Self {
        self.settings.budgets = budgets;
        self
    }

    /// How long `join` waits for the host (default 10 s).
    pub fn join_timeout(mut self, timeout: Duration) -> Self {
        self.settings.join_timeout = timeout;
        self
    }

    /// Most joiners a host admits (default 16 in a mesh, 64 in a star). A mesh costs every
    /// peer a WebRTC connection per other peer; past a dozen or so, a
    /// [`Topology::Star`](crate::Topology) costs joiners far less (BENCHMARKS.md,
    /// "Topologies").
    pub fn max_peers(mut self, max: usize) -> Self {
        self.settings.max_peers = Some(max);
        self
    }

    /// How the room's peers link (default [`Topology::Mesh`](crate::Topology)). Every peer of
    /// a room must use the same one: it is part of the protocol hash.
    ///
    /// ```
    /// use bevy_peer_message::prelude::*;
    ///
    /// // Joiners link only to the host, which relays what they send each other.
    /// let plugin = PeerMessagePlugin::default().topology(Topology::Star).max_peers(100);
    /// ```
    pub fn topology(mut self, topology: crate::Topology) -> Self {
        self.settings.topology = topology;
        self
    }

    /// Largest reliable message, sent or accepted (default 1 MiB). Larger sends are refused
    /// with [`SendError::TooLarge`](crate::core::error::SendError).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.settings.session.max_message_size = bytes;
        self.settings.session.max_unacked_bytes =
            self.settings.session.max_unacked_bytes.max(bytes * 2);
        self
    }

    /// How long an away peer is waited for before it is
    /// [`DisconnectReason::Timeout`](crate::core::room::DisconnectReason) (default 30 s). Zero turns
    /// reconnecting off: a lost link disconnects at once.
    pub fn resume_timeout(mut self, timeout: Duration) -> Self {
        self.settings.resume.resume_timeout = timeout;
        self
    }

    /// How long a silent peer is still considered present (default 1 s). Heartbeats keep idle
    /// links talking at least four times per timeout (every 250 ms by default, more often for a
    /// shorter timeout).
    pub fn liveness_timeout(mut self, timeout: Duration) -> Self {
        self.settings.resume.liveness_timeout = timeout;
        self
    }

    /// How long a new link may stay up without the peer's `Hello` before it is dropped with
    /// [`PeerErrorKind::HandshakeTimeout`](crate::core::error::PeerErrorKind) (default 5 s; a joiner
    /// then re-opens its socket). Until then each side repeats its `Hello` every 200 ms while
    /// it has heard nothing back.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.settings.resume.handshake_timeout = timeout;
        self
    }

    /// Host migration: joiners whose host has been away for `grace` (default 3 s) agree on a
    /// successor among themselves, and a host that calls `leave()` hands the room to a joiner
    /// first; the game sees [`HostMigrated`](crate::HostMigrated). `None`: the room ends with
    /// its host (joiners see it time out after the resume timeout, and join again). Keep the
    /// grace well under the resume timeout, and longer than the outages a host should survive
    /// as host.
    ///
    /// ```
    /// # use bevy_peer_message::prelude::*;
    /// # use std::time::Duration;
    /// // A host silent for five seconds loses the room to its joiners.
    /// let plugin = PeerMessagePlugin::default().host_grace(Some(Duration::from_secs(5)));
    /// # let _ = plugin;
    /// ```
    pub fn host_grace(mut self, grace: Option<Duration>) -> Self {
        self.settings.resume.host_grace = grace;
        self
    }

    /// Delays between attempts to re-open the socket (default 100 ms doubling up to 1 s, with
    /// up to 20 % taken off each delay at random).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.settings.backoff = backoff;
        self
    }

    /// How long one attempt to reach the signaling server may take (default 3 s; re-opens
    /// after a success adapt to four times the measured connect time, at least 1 s).
    pub fn signaling_connect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.signaling_connect_timeout = timeout;
        self
    }

    /// Rehearse a bad network: delay, jitter and loss on incoming packets (see
    /// [`LinkConditionerConfig`](crate::LinkConditionerConfig)). Blackouts: [`PeerMessage::simulate_blackout`](crate::PeerMessage::simulate_blackout).
    pub fn conditioner(mut self, conditioner: LinkConditionerConfig) -> Self {
        self.settings.conditioner = Some(conditioner);
        self
    }

    /// All session limits and timings at once.
    pub fn session(mut self, session: SessionConfig) -> Self {
        self.settings.session = session;
        self
    }

    /// Whether a joiner whose host stayed away past the resume timeout joins the room again as
    /// a new session (default `true`; see [`PeerMessageSettings::rejoin`]).
    pub fn rejoin(mut self, rejoin: bool) -> Self {
        self.settings.rejoin = rejoin;
        self
    }

    /// Runs on an in-memory network instead of WebRTC: the whole plugin (handshake, sessions,
    /// liveness, reconnect) between apps in one process, with no socket and no signalling
    /// server. For tests of a game's netcode: the protocol runs on the network's own clock,
    /// moved by [`MemoryNetwork::advance`], so tests are deterministic. See [`MemoryNetwork`].
    pub fn in_memory(mut self, network: &MemoryNetwork) -> Self {
        self.transport = Some(Arc::new(network.clone()));
        self.settings.signaling = Signaling::server("memory:");
        self
    }

    /// The settings as they stand.
    pub fn settings(&self) -> &PeerMessageSettings {
        &self.settings
    }
}

impl Plugin for PeerMessagePlugin {
    fn build(&self, app: &mut App) {
        if !app.is_plugin_added::<StatesPlugin>() {
            app.add_plugins(StatesPlugin);
        }
        app.insert_resource(self.settings.clone())
            .init_resource::<MessageRegistry>()
            .insert_resource(match &self.transport {
                Some(transport) => PeerNetwork::new(transport.clone()),
                None => PeerNetwork::default(),
            })
            .init_state::<ConnectionState>()
            .add_message::<PeerConnected>()
            .add_message::<PeerDisconnected>()
            .add_message::<PeerReconnected>()
            .add_message::<PeerReconnecting>()
            .add_message::<PeerError>()
            .add_message::<JoinRequest>()
            .add_message::<crate::events::HostMigrated>()
            .add_message::<crate::events::TransferProgress>()
            .configure_sets(PreUpdate, PeerMessageSet::Receive)
            .configure_sets(PostUpdate, PeerMessageSet::Send)
            .add_systems(
                PreUpdate,
                (
                    network::receive,
                    network::reconnect.run_if(network::reconnect_due),
                )
                    .chain()
                    .in_set(PeerMessageSet::Receive),
            )
            .add_systems(PostUpdate, network::transmit.in_set(PeerMessageSet::Send));
    }
}
