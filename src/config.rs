//! Configuration: signaling, ICE servers, timeouts and limits. Set through the
//! [`PeerMessagePlugin`](crate::PeerMessagePlugin) builder; readable at run time as the
//! [`PeerMessageSettings`] resource.

use crate::{
    core::auth::{Identity, RoomSecret},
    core::backoff::Backoff,
    core::budget::Budgets,
    core::conditioner::LinkConditionerConfig,
    core::room::ResumePolicy,
    core::session::SessionConfig,
    io::ice::IceServers,
};
use bevy::prelude::*;
use matchbox_socket::SignallerBuilder;
use std::{fmt, net::SocketAddr, sync::Arc, time::Duration};

/// Port of the embedded signaling server and of `matchbox_server`.
pub const DEFAULT_SIGNALING_PORT: u16 = 3536;

/// How peers find each other: which signaling server the WebRTC handshakes go through.
///
/// The room URL given to matchbox is `{url}/{room}`.
#[derive(Clone)]
pub enum Signaling {
    /// A native host runs a `matchbox_signaling` full-mesh server in-process, bound to `bind`,
    /// and uses it itself; joiners connect to `join_url`. The default on native builds: nothing
    /// external to start. Only with the `server` feature, and not on wasm.
    #[cfg(all(feature = "server", not(target_arch = "wasm32")))]
    Embedded {
        /// Where the host's server listens (default `0.0.0.0:3536`; port 0 picks a free one,
        /// see [`SignalingServerInfo`]).
        bind: std::net::SocketAddr,
        /// Base URL joiners connect to (default `ws://127.0.0.1:3536`).
        join_url: String,
    },
    /// Everyone uses a stand-alone matchbox-compatible server (`matchbox_server`), e.g.
    /// `ws://10.0.0.1:3536`.
    Server {
        /// Base URL, without the room.
        url: String,
    },
    /// A custom [`SignallerBuilder`]: relay the WebRTC handshake any way you like (your own
    /// server, a lobby service, an in-process hub as in
    /// [`LocalSignalingHub`](crate::io::signaling::LocalSignalingHub)).
    Custom {
        /// The builder matchbox calls to create a signaller.
        builder: Arc<dyn SignallerBuilder>,
        /// Base URL handed to the builder, followed by `/{room}`.
        url: String,
    },
}

impl Signaling {
    /// A stand-alone matchbox-compatible server at `url` (e.g. `ws://10.0.0.1:3536`).
    pub fn server(url: impl Into<String>) -> Self {
        Signaling::Server {
            url: trim(url.into()),
        }
    }

    /// The embedded server bound to `bind`; joiners use `join_url`.
    #[cfg(all(feature = "server", not(target_arch = "wasm32")))]
    pub fn embedded(bind: std::net::SocketAddr, join_url: impl Into<String>) -> Self {
        Signaling::Embedded {
            bind,
            join_url: trim(join_url.into()),
        }
    }

    /// A custom signaller; `url` is passed to it (followed by `/{room}`).
    pub fn custom(builder: Arc<dyn SignallerBuilder>, url: impl Into<String>) -> Self {
        Signaling::Custom {
            builder,
            url: trim(url.into()),
        }
    }
}

fn trim(mut url: String) -> String {
    while url.ends_with('/') {
        url.pop();
    }
    url
}

impl Default for Signaling {
    fn default() -> Self {
        #[cfg(all(feature = "server", not(target_arch = "wasm32")))]
        {
            Signaling::Embedded {
                bind: std::net::SocketAddr::from(([0, 0, 0, 0], DEFAULT_SIGNALING_PORT)),
                join_url: format!("ws://127.0.0.1:{DEFAULT_SIGNALING_PORT}"),
            }
        }
        #[cfg(not(all(feature = "server", not(target_arch = "wasm32"))))]
        {
            Signaling::Server {
                url: format!("ws://127.0.0.1:{DEFAULT_SIGNALING_PORT}"),
            }
        }
    }
}

impl fmt::Debug for Signaling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            #[cfg(all(feature = "server", not(target_arch = "wasm32")))]
            Signaling::Embedded { bind, join_url } => f
                .debug_struct("Embedded")
                .field("bind", bind)
                .field("join_url", join_url)
                .finish(),
            Signaling::Server { url } => f.debug_struct("Server").field("url", url).finish(),
            Signaling::Custom { builder, url } => f
                .debug_struct("Custom")
                .field("builder", builder)
                .field("url", url)
                .finish(),
        }
    }
}

/// Where the embedded signaling server of this app listens, while it runs. Present only on a
/// host using [`Signaling::Embedded`](crate::Signaling). Useful with port 0.
#[derive(Resource, Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalingServerInfo {
    /// The bound address.
    pub addr: SocketAddr,
}

/// Everything the plugin was configured with. Inserted by the plugin; change it before
/// `host()`/`join()` to affect the next room.
#[derive(Resource, Debug, Clone)]
pub struct PeerMessageSettings {
    /// Our key pair; our [`PeerId`](crate::PeerId) derives from it (random unless the game supplies one:
    /// see [`Identity`]).
    pub identity: Identity,
    /// The room secret, if the room is private: every peer must know it (see
    /// [`RoomSecret`]).
    pub room_secret: Option<RoomSecret>,
    /// Host: new joiners wait for the game's decision (see
    /// [`PeerMessagePlugin::review_joiners`](crate::PeerMessagePlugin::review_joiners)).
    pub review_joiners: bool,
    /// What each peer may send us per second (see [`Budgets`]).
    pub budgets: Budgets,
    /// How peers find each other.
    pub signaling: Signaling,
    /// STUN/TURN servers.
    pub ice_servers: IceServers,
    /// A `join()` that finds no host within this fails with
    /// [`PeerErrorKind::JoinTimeout`](crate::core::error::PeerErrorKind).
    pub join_timeout: Duration,
    /// Most joiners a host admits; `None` (default): as many as its topology carries well,
    /// 16 in a mesh and 64 in a star (see [`PeerMessageSettings::room_limit`]).
    pub max_peers: Option<usize>,
    /// How the room's peers link: a full mesh (default) or a star around the host (see
    /// [`Topology`](crate::Topology)). Every peer of a room must use the same.
    pub topology: crate::Topology,
    /// Limits and timings of each peer session (packet size, message size, resend buffer).
    pub session: SessionConfig,
    /// How long a socket stays open after `leave()` so the goodbyes get out.
    pub linger: Duration,
    /// When a peer counts as away (`liveness_timeout`, default 1 s) and how long an away peer
    /// is waited for (`resume_timeout`, default 30 s).
    pub resume: ResumePolicy,
    /// Delays between attempts to re-open the socket.
    pub backoff: Backoff,
    /// A signaling connection attempt that has not succeeded by then has failed (default 3 s).
    /// Re-open attempts use less once a connection succeeded: four times what it took, at
    /// least 1 s.
    pub signaling_connect_timeout: Duration,
    /// The reconnect policy runs when something changed (a socket's signaling, a link, a
    /// peer) or a re-open is due; this is the longest it goes without a look otherwise, a
    /// safety net (default 1 s).
    pub reconnect_interval: Duration,
    /// Opt-in rehearsal of a bad network (see [`LinkConditionerConfig`](crate::LinkConditionerConfig)).
    pub conditioner: Option<LinkConditionerConfig>,
    /// A joiner whose host stayed away past `resume_timeout` joins the room again, as a new
    /// session, until a host is there or the game calls `leave()` (default `true`). The game
    /// sees `PeerDisconnected { reason: Timeout }` for the old session, the state
    /// `Connecting`, then a fresh `PeerConnected`. No `join_timeout` applies to it. With
    /// `false`, the joiner goes `Offline` instead.
    pub rejoin: bool,
}

impl PeerMessageSettings {
    /// Most joiners a host admits: `max_peers`, or the topology's default. (A mesh of 16
    /// already costs each joiner three times a star's CPU per frame; BENCHMARKS.md,
    /// "Topologies".)
    pub fn room_limit(&self) -> usize {
        self.max_peers.unwrap_or(match self.topology {
            crate::Topology::Mesh => 16,
            crate::Topology::Star => 64,
        })
    }
}

impl Default for PeerMessageSettings {
    fn default() -> Self {
        Self {
            identity: Identity::generate(),
            room_secret: None,
            review_joiners: false,
            budgets: Budgets::default(),
            signaling: Signaling::default(),
            rejoin: true,
            ice_servers: IceServers::default(),
            join_timeout: Duration::from_secs(10),
            max_peers: None,
            topology: crate::Topology::Mesh,
            session: SessionConfig::default(),
            linger: Duration::from_millis(500),
            resume: ResumePolicy::default(),
            backoff: Backoff::default(),
            signaling_connect_timeout: Duration::from_secs(3),
            reconnect_interval: Duration::from_secs(1),
            conditioner: None,
        }
    }
}
