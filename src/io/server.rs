//! The signaling server: a `matchbox_signaling` full-mesh server that a native host runs
//! in-process (embedded), or that runs on its own as the `peer-message-signaling` binary. It
//! only relays WebRTC handshakes; game traffic never goes through it.
//!
//! Besides the websocket (`/ROOM`), it answers `GET /healthz` (200 while it serves),
//! `GET /readyz` (200 while it takes new peers, 503 once draining: a load balancer's cue) and
//! `GET /metrics` (Prometheus text: rooms, peers, joins and refusals). New connections are
//! refused past its [`ServerLimits`] (rooms, peers per room, connections per IP address).

use crate::core::error::ServerError;
use axum::{Router, http::StatusCode, response::IntoResponse, routing::get};
use bevy::prelude::*;
use matchbox_signaling::SignalingServer;
use matchbox_socket::PeerId as SocketId;
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// What a signaling server takes before it refuses new connections. A refused websocket
/// upgrade gets an HTTP error: 503 (too many rooms, or draining), 403 (the room is full), 429
/// (too many connections from one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Rooms with at least one peer (default 10,000).
    pub max_rooms: usize,
    /// Peers in one room (default 256: every room size the plugin allows, with room for
    /// sockets re-opening).
    pub max_peers_per_room: usize,
    /// Open connections from one IP address (default 64; players behind one NAT share one).
    pub max_connections_per_ip: usize,
    /// The largest websocket message a peer may send, in bytes (default 64 KiB; an offer or
    /// an answer with every ICE candidate takes a few KiB). A peer that sends more is
    /// disconnected while the message is still arriving, before it is buffered whole.
    pub max_message_size: usize,
    /// Behind a reverse proxy (nginx): a connection's address is the one in its `X-Real-IP`
    /// header, which the proxy sets, not the proxy's own (default `false`: never trust a
    /// client's headers when clients reach the server directly).
    pub behind_proxy: bool,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_rooms: 10_000,
            max_peers_per_room: 256,
            max_connections_per_ip: 64,
            max_message_size: 64 << 10,
            behind_proxy: false,
        }
    }
}

/// What a signaling server holds and has done, as `GET /metrics` reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerMetrics {
    /// Rooms with at least one peer.
    pub rooms: usize,
    /// Peers connected.
    pub peers: usize,
    /// Peers that joined a room since the start.
    pub joins: u64,
    /// Connections refused because there were too many rooms.
    pub refused_rooms: u64,
    /// Connections refused because their room was full.
    pub refused_room_full: u64,
    /// Connections refused because their address had too many.
    pub refused_per_ip: u64,
    /// Connections refused while draining.
    pub refused_draining: u64,
}

impl ServerMetrics {
    /// The Prometheus text exposition of these figures.
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, lines: &[(&str, u64)]| {
            out += &format!("# HELP {name} {help}\n# TYPE {name} {kind}\n");
            for (labels, value) in lines {
                out += &format!("{name}{labels} {value}\n");
            }
        };
        metric(
            "peer_message_signaling_rooms",
            "gauge",
            "Rooms with at least one peer.",
            &[("", self.rooms as u64)],
        );
        metric(
            "peer_message_signaling_peers",
            "gauge",
            "Peers connected.",
            &[("", self.peers as u64)],
        );
        metric(
            "peer_message_signaling_joins_total",
            "counter",
            "Peers that joined a room.",
            &[("", self.joins)],
        );
        metric(
            "peer_message_signaling_refused_total",
            "counter",
            "Connections refused, by reason.",
            &[
                ("{reason=\"rooms\"}", self.refused_rooms),
                ("{reason=\"room_full\"}", self.refused_room_full),
                ("{reason=\"per_ip\"}", self.refused_per_ip),
                ("{reason=\"draining\"}", self.refused_draining),
            ],
        );
        out
    }
}

/// Who is connected where, and the figures: shared by the server's callbacks and its owner.
#[derive(Debug, Default)]
struct Tally {
    limits: ServerLimits,
    draining: bool,
    /// Peers per room.
    rooms: HashMap<String, usize>,
    /// Connections per address.
    per_ip: HashMap<IpAddr, usize>,
    /// Connections allowed and not yet given an id: their room and address.
    upgrading: HashMap<SocketAddr, (String, IpAddr, Instant)>,
    /// Connected peers: their address and room.
    peers: HashMap<SocketId, (IpAddr, String)>,
    metrics: ServerMetrics,
}

impl Tally {
    /// Whether a connection from `origin` to `room` may go on; the refusal's status if not.
    fn admit(
        &mut self,
        origin: SocketAddr,
        ip: IpAddr,
        room: String,
    ) -> Result<(), (StatusCode, &'static str)> {
        let now = Instant::now();
        // Upgrades that never finished (the client went away) are forgotten after a while.
        self.upgrading
            .retain(|_, (_, _, at)| now.duration_since(*at) < Duration::from_secs(30));
        let limits = self.limits;
        let m = &mut self.metrics;
        if self.draining {
            m.refused_draining += 1;
            return Err((StatusCode::SERVICE_UNAVAILABLE, "draining"));
        }
        // Upgrades under way count too: a client that opens many and finishes none holds no
        // more than its share of this table.
        let upgrading = self.upgrading.values().filter(|(_, i, _)| *i == ip).count();
        let open = self.per_ip.get(&ip).copied().unwrap_or(0) + upgrading;
        if open >= limits.max_connections_per_ip {
            m.refused_per_ip += 1;
            return Err((StatusCode::TOO_MANY_REQUESTS, "too many connections"));
        }
        match self.rooms.get(&room) {
            None if self.rooms.len() >= limits.max_rooms => {
                m.refused_rooms += 1;
                return Err((StatusCode::SERVICE_UNAVAILABLE, "too many rooms"));
            }
            Some(n) if *n >= limits.max_peers_per_room => {
                m.refused_room_full += 1;
                return Err((StatusCode::FORBIDDEN, "room full"));
            }
            _ => {}
        }
        self.upgrading.insert(origin, (room, ip, now));
        Ok(())
    }

    /// The connection from `origin` is peer `id` now: it counts.
    fn joined(&mut self, origin: SocketAddr, id: SocketId) {
        let Some((room, ip, _)) = self.upgrading.remove(&origin) else {
            return;
        };
        *self.rooms.entry(room.clone()).or_insert(0) += 1;
        *self.per_ip.entry(ip).or_insert(0) += 1;
        self.peers.insert(id, (ip, room));
        self.metrics.joins += 1;
        self.update();
    }

    /// Peer `id` is gone.
    fn left(&mut self, id: SocketId) {
        let Some((ip, room)) = self.peers.remove(&id) else {
            return;
        };
        if let Some(n) = self.rooms.get_mut(&room) {
            *n -= 1;
            if *n == 0 {
                self.rooms.remove(&room);
            }
        }
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
        self.update();
    }

    fn update(&mut self) {
        self.metrics.rooms = self.rooms.len();
        self.metrics.peers = self.peers.len();
    }
}

fn locked(tally: &Mutex<Tally>) -> std::sync::MutexGuard<'_, Tally> {
    crate::io::lock(tally)
}

/// A running signaling server (the embedded one, or the `peer-message-signaling` binary's);
/// stops when dropped.
#[derive(Debug)]
pub struct EmbeddedServer {
    addr: SocketAddr,
    tally: Arc<Mutex<Tally>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EmbeddedServer {
    /// Binds `bind` now (so errors surface at once) and serves in the background, with the
    /// default [`ServerLimits`].
    pub fn start(bind: SocketAddr) -> Result<Self, ServerError> {
        Self::start_with(bind, ServerLimits::default())
    }

    /// [`start`](Self::start) with `limits`.
    // (The admission callback's type is matchbox_signaling's: a refusal is a whole response.)
    #[allow(clippy::result_large_err)]
    pub fn start_with(bind: SocketAddr, limits: ServerLimits) -> Result<Self, ServerError> {
        let tally = Arc::new(Mutex::new(Tally {
            limits,
            ..Tally::default()
        }));
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel();
        let (on_request, on_id, on_gone) = (tally.clone(), tally.clone(), tally.clone());
        let routes = tally.clone();
        let mut server = SignalingServer::full_mesh_builder(bind)
            .on_connection_request(move |meta| {
                let room = meta.path.unwrap_or_default();
                let forwarded = limits
                    .behind_proxy
                    .then(|| meta.headers.get("x-real-ip")?.to_str().ok()?.parse().ok())
                    .flatten();
                let ip = forwarded.unwrap_or(meta.origin.ip());
                locked(&on_request)
                    .admit(meta.origin, ip, room)
                    .map(|()| true)
                    .map_err(|refusal| refusal.into_response())
            })
            .on_id_assignment(move |(origin, id)| locked(&on_id).joined(origin, id))
            .on_peer_disconnected(move |id| locked(&on_gone).left(id))
            .mutate_router(move |router| with_status_routes(router, routes))
            .with_shutdown(shutdown_rx)
            .max_message_size(limits.max_message_size)
            .build();
        let addr = server.bind().map_err(|e| {
            error!("signaling server: cannot listen on {bind}: {e}");
            ServerError::Bind { addr: bind }
        })?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                error!("signaling server: cannot start a runtime: {e}");
                ServerError::Start { kind: e.kind() }
            })?;
        let thread = std::thread::Builder::new()
            .name("peer-message-signaling".into())
            .spawn(move || {
                if let Err(e) = runtime.block_on(server.serve()) {
                    error!("signaling server stopped: {e}");
                }
            })
            .map_err(|e| {
                error!("signaling server: cannot start its thread: {e}");
                ServerError::Start { kind: e.kind() }
            })?;
        info!("signaling server listening on {addr}");
        Ok(Self {
            addr,
            tally,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its figures now.
    pub fn metrics(&self) -> ServerMetrics {
        locked(&self.tally).metrics
    }

    /// Stops taking new peers (`/readyz` says 503, new websockets are refused); those
    /// connected stay until [`stop`](Self::stop).
    pub fn drain(&self) {
        locked(&self.tally).draining = true;
    }

    /// Drains, closes every peer's websocket and waits up to `timeout` for the server to end.
    /// `false`: it had not ended by then.
    pub fn stop(mut self, timeout: Duration) -> bool {
        self.drain();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let start = Instant::now();
        while let Some(thread) = self.thread.as_ref() {
            if thread.is_finished() {
                let _ = self.thread.take().map(JoinHandle::join);
                return true;
            }
            if start.elapsed() >= timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }
}

/// `/healthz`, `/readyz` and `/metrics` beside the websocket routes.
fn with_status_routes(router: Router, tally: Arc<Mutex<Tally>>) -> Router {
    let (ready, metrics) = (tally.clone(), tally);
    router
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let draining = locked(&ready).draining;
                async move {
                    if draining {
                        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
                    } else {
                        (StatusCode::OK, "ready\n")
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let text = locked(&metrics).metrics.to_prometheus();
                async move { text }
            }),
        )
}

impl Drop for EmbeddedServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // Don't block the frame on the server's graceful shutdown.
        drop(self.thread.take());
    }
}
