//! The Bevy side's driver: owns the [`Room`], the room's sockets (on any [`Transport`]) and (on
//! a native host) the embedded server, and turns [`RoomEvent`]s into Bevy messages, entities
//! and state.
//!
//! Three exclusive systems drive it (see [`crate::plugin`]): `receive` in `PreUpdate`,
//! `reconnect` after it (on a timer), and `transmit` in `PostUpdate`.

use crate::{
    config::{PeerMessageSettings, Signaling},
    core::codec,
    core::conditioner::LinkConditioner,
    core::error::{PeerErrorKind, SendError},
    core::peer::{PeerId, Role},
    core::rng::Rng,
    core::room::{DisconnectReason, LocalIdentity, Room, RoomEvent},
    core::wire::Delivery,
    events::{
        ConnectionState, Peer, PeerConnected, PeerDisconnected, PeerError, PeerReconnected,
        PeerReconnecting, PeerStats,
    },
    io::signaling::{SignalingPhase, WebSocketSignallerBuilder},
    io::sockets::{Incoming, LinkChange, LinkId, SocketSet},
    io::{Socket, SocketTarget, Transport, matchbox::Matchbox},
    registry::MessageRegistry,
};
use bevy::{platform::collections::HashMap, platform::time::Instant, prelude::*};
use bytes::Bytes;
use matchbox_socket::SignallerBuilder;
use serde::Serialize;
use std::{sync::Arc, time::Duration};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Offline,
    Hosting,
    /// `rejoin`: joining again after the host timed out; no join timeout applies.
    Joining {
        since: Duration,
        rejoin: bool,
    },
    Joined,
}

#[derive(Debug, Clone)]
enum Command {
    Host(String),
    Join(String),
    Leave,
    Blackout(Duration),
}

/// Sockets (and a server) kept open briefly after `leave()` so the goodbyes get out.
#[derive(Debug)]
struct Lingering {
    sockets: Vec<Box<dyn Socket>>,
    #[cfg(all(feature = "server", not(target_arch = "wasm32")))]
    _server: Option<crate::io::server::EmbeddedServer>,
    until: Duration,
}

/// The reconnect system's memory.
#[derive(Debug)]
struct Reconnect {
    /// How long the last successful signaling connection took: re-open attempts give up after
    /// four times that (at least 1 s, at most `signaling_connect_timeout`), so an attempt whose
    /// packets vanished while the network was away is retried as soon as it returns.
    connect_time: Option<Duration>,
    attempts: u32,
    /// This outage (from a socket failing until one is up again) has been reported as a
    /// `PeerError`; further failures of the same outage only go to the log.
    outage_reported: bool,
    next_attempt: Duration,
    next_tick: Duration,
    random: Rng,
}

/// The plugin's network state. Internal: games use [`PeerMessage`](crate::PeerMessage).
#[derive(Resource, Debug)]
pub struct PeerNetwork {
    /// Where sockets come from: matchbox, or an in-memory network.
    transport: Arc<dyn Transport>,
    /// Now, as of the running system: see [`PeerNetwork::tick`].
    clock: Duration,
    epoch: Instant,
    phase: Phase,
    room_name: Option<String>,
    room: Option<Room<LinkId>>,
    sockets: SocketSet,
    /// Where the current room's sockets are opened, kept to re-open them.
    target: Option<SocketTarget>,
    reconnect: Reconnect,
    /// A host's room was open (signaling up) at some point.
    room_was_open: bool,
    conditioner: Option<LinkConditioner<(LinkId, Bytes)>>,
    #[cfg(all(feature = "server", not(target_arch = "wasm32")))]
    server: Option<crate::io::server::EmbeddedServer>,
    lingering: Vec<Lingering>,
    commands: Vec<Command>,
    entities: HashMap<PeerId, Entity>,
    scratch: Vec<u8>,
    events: Vec<RoomEvent>,
}

impl Default for PeerNetwork {
    fn default() -> Self {
        Self::new(Arc::new(Matchbox))
    }
}

impl PeerNetwork {
    pub(crate) fn new(transport: Arc<dyn Transport>) -> Self {
        Self {
            transport,
            clock: Duration::ZERO,
            epoch: Instant::now(),
            phase: Phase::Offline,
            room_name: None,
            room: None,
            sockets: SocketSet::default(),
            target: None,
            reconnect: Reconnect {
                connect_time: None,
                attempts: 0,
                outage_reported: false,
                next_attempt: Duration::ZERO,
                next_tick: Duration::ZERO,
                random: Rng::new(crate::core::peer::random_u128() as u64),
            },
            room_was_open: false,
            conditioner: None,
            #[cfg(all(feature = "server", not(target_arch = "wasm32")))]
            server: None,
            lingering: Vec::new(),
            commands: Vec::new(),
            entities: HashMap::default(),
            scratch: Vec::with_capacity(256),
            events: Vec::new(),
        }
    }

    /// A multi-line snapshot of sockets and links, for diagnosing connection problems (the
    /// format is not stable).
    pub fn describe(&mut self) -> String {
        let mut out = format!("phase {:?} at {:?}\n", self.phase, self.now());
        for line in self.sockets.describe() {
            out += &format!("  {line}\n");
        }
        if let Some(room) = &self.room {
            for line in room.describe_links() {
                out += &format!("  link {line}\n");
            }
        }
        out
    }

    fn now(&self) -> Duration {
        self.clock
    }

    /// Reads the clock for this system run: the wall clock, to the microsecond (round-trip
    /// times are measured with it); or, when the app drives Bevy's time by hand
    /// (`TimeUpdateStrategy::ManualDuration`/`ManualInstant`, as tests do), Bevy's real time.
    fn tick(&mut self, world: &World) {
        let manual = world
            .get_resource::<bevy::time::TimeUpdateStrategy>()
            .is_some_and(|s| !matches!(s, bevy::time::TimeUpdateStrategy::Automatic));
        self.clock = match world.get_resource::<Time<Real>>() {
            Some(time) if manual => time.elapsed(),
            _ => self.epoch.elapsed(),
        };
    }

    pub(crate) fn queue_host(&mut self, room: String) {
        self.commands.push(Command::Host(room));
    }
    pub(crate) fn queue_join(&mut self, room: String) {
        self.commands.push(Command::Join(room));
    }
    pub(crate) fn queue_leave(&mut self) {
        self.commands.push(Command::Leave);
    }
    pub(crate) fn queue_blackout(&mut self, duration: Duration) {
        self.commands.push(Command::Blackout(duration));
    }

    pub(crate) fn room(&self) -> Option<&Room<LinkId>> {
        self.room.as_ref()
    }

    pub(crate) fn room_name(&self) -> Option<&str> {
        self.room_name.as_deref()
    }

    pub(crate) fn role(&self) -> Option<Role> {
        self.room.as_ref().map(|r| r.local().role)
    }

    pub(crate) fn encode<M: Serialize>(&mut self, message: &M) -> Result<(), SendError> {
        self.scratch.clear();
        codec::encode_into(message, &mut self.scratch)?;
        Ok(())
    }

    pub(crate) fn send_encoded(
        &mut self,
        peer: PeerId,
        kind: u32,
        delivery: Delivery,
    ) -> Result<(), SendError> {
        let Self { room, scratch, .. } = self;
        room.as_mut()
            .ok_or(SendError::UnknownPeer(peer))?
            .send(peer, kind, scratch, delivery)
    }

    pub(crate) fn broadcast_encoded(
        &mut self,
        kind: u32,
        delivery: Delivery,
        failed: &mut impl FnMut(PeerId, SendError),
    ) {
        let Self { room, scratch, .. } = self;
        if let Some(room) = room.as_mut() {
            room.broadcast(kind, scratch, delivery, failed);
        }
    }

    /// The host we joined, while it is away.
    fn host_away_since(&self) -> Option<Duration> {
        let room = self.room.as_ref()?;
        if room.local().role != Role::Joiner {
            return None;
        }
        room.host().and_then(|h| room.away_since(h))
    }

    fn state(&mut self) -> ConnectionState {
        match self.phase {
            Phase::Offline => ConnectionState::Offline,
            Phase::Joining { .. } => ConnectionState::Connecting,
            Phase::Joined if self.host_away_since().is_some() => ConnectionState::Reconnecting,
            Phase::Joined => ConnectionState::Connected,
            Phase::Hosting => {
                let up = self
                    .sockets
                    .current()
                    .is_some_and(|s| s.signaling() == SignalingPhase::Up);
                self.room_was_open |= up;
                match (up, self.room_was_open) {
                    (true, _) => ConnectionState::Connected,
                    (false, false) => ConnectionState::Connecting,
                    (false, true) => ConnectionState::Reconnecting,
                }
            }
        }
    }

    fn open(
        &mut self,
        world: &mut World,
        role: Role,
        room_name: String,
    ) -> Result<(), PeerErrorKind> {
        if self.phase != Phase::Offline {
            return Err(PeerErrorKind::AlreadyInRoom);
        }
        if room_name.is_empty()
            || !room_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(PeerErrorKind::Signaling(format!(
                "invalid room name {room_name:?}: use letters, digits, '-', '_' and '.'"
            )));
        }
        let settings = world.resource::<PeerMessageSettings>().clone();
        let registry = world.resource::<MessageRegistry>();
        let protocol_hash = registry.protocol_hash();
        let kinds = registry.wire_kinds();
        let websocket: Arc<dyn SignallerBuilder> = Arc::new(WebSocketSignallerBuilder);
        let (url, signaller) = match &settings.signaling {
            #[cfg(all(feature = "server", not(target_arch = "wasm32")))]
            Signaling::Embedded { bind, join_url } => match role {
                Role::Host => {
                    let server = crate::io::server::EmbeddedServer::start(*bind)
                        .map_err(PeerErrorKind::Server)?;
                    let addr = server.addr();
                    world.insert_resource(crate::config::SignalingServerInfo { addr });
                    self.server = Some(server);
                    (
                        format!("ws://127.0.0.1:{}/{room_name}", addr.port()),
                        websocket,
                    )
                }
                Role::Joiner => (format!("{join_url}/{room_name}"), websocket),
            },
            Signaling::Server { url } => (format!("{url}/{room_name}"), websocket),
            Signaling::Custom { builder, url } => (format!("{url}/{room_name}"), builder.clone()),
        };
        info!("{role} {room_name:?} via {url} as {}", settings.peer_id);
        let local = LocalIdentity {
            id: settings.peer_id,
            role,
            incarnation: crate::core::peer::random_u128() as u64,
            protocol_hash,
        };
        let mut session = settings.session.clone();
        // Only something above the transport loses packets within a link (see
        // `SessionConfig::retransmit`).
        session.retransmit = settings.conditioner.is_some();
        session.ping_interval = settings.resume.heartbeat_interval(session.ping_interval);
        let mut room = Room::with_policy(local, session, settings.max_peers, settings.resume);
        room.set_kinds(kinds);
        self.room = Some(room);
        let now = self.now();
        let target = SocketTarget {
            room_url: url,
            signaller,
            ice: settings.ice_servers.clone(),
            connect_timeout: settings.signaling_connect_timeout,
            local: settings.peer_id,
        };
        self.sockets.open(&*self.transport, &target, now);
        self.target = Some(target);
        self.reconnect.attempts = 0;
        self.reconnect.next_attempt = now;
        self.reconnect.connect_time = None;
        self.room_was_open = false;
        self.conditioner = settings
            .conditioner
            .map(|c| LinkConditioner::new(c, crate::core::peer::random_u128() as u64));
        self.room_name = Some(room_name);
        self.phase = match role {
            Role::Host => Phase::Hosting,
            Role::Joiner => Phase::Joining {
                since: now,
                rejoin: false,
            },
        };
        Ok(())
    }

    /// Leaves the room: goodbyes are queued, the sockets linger a little so they get out.
    fn close(&mut self, linger: Duration) {
        let now = self.now();
        if let Some(room) = self.room.as_mut() {
            room.leave();
            self.events.extend(room.drain_events());
            let sockets = &mut self.sockets;
            room.poll_transmit(now, &mut |link, channel, packet| {
                sockets.send(link, channel, packet);
            });
        }
        self.lingering.push(Lingering {
            sockets: self.sockets.take_all(),
            #[cfg(all(feature = "server", not(target_arch = "wasm32")))]
            _server: self.server.take(),
            until: now + linger,
        });
        self.room = None;
        self.room_name = None;
        self.target = None;
        self.conditioner = None;
        self.phase = Phase::Offline;
    }
}

/// Reports a socket failure: the first of an outage as a [`PeerError`], the others (one per
/// re-open attempt) in the log only.
fn socket_failed(world: &mut World, net: &mut PeerNetwork, reason: String) {
    if net.reconnect.outage_reported {
        info!(
            "re-open attempt {} failed: {reason}",
            net.reconnect.attempts
        );
    } else {
        net.reconnect.outage_reported = true;
        error(world, None, PeerErrorKind::Signaling(reason));
    }
}

fn error(world: &mut World, peer: Option<PeerId>, error: PeerErrorKind) {
    let e = PeerError { peer, error };
    warn!("{e}");
    world.write_message(e);
}

fn linger(world: &World) -> Duration {
    world.resource::<PeerMessageSettings>().linger
}

/// Turns pending room events into Bevy messages and entities. Loops: dropping a peer for a
/// payload that does not decode produces more events.
fn apply_events(world: &mut World, net: &mut PeerNetwork) {
    loop {
        if let Some(room) = net.room.as_mut() {
            net.events.extend(room.drain_events());
        }
        if net.events.is_empty() {
            return;
        }
        let mut events = std::mem::take(&mut net.events);
        for event in events.drain(..) {
            apply_event(world, net, event);
        }
        // Give the allocation back for the next frame.
        if net.events.is_empty() {
            net.events = events;
        }
    }
}

fn apply_event(world: &mut World, net: &mut PeerNetwork, event: RoomEvent) {
    match event {
        RoomEvent::Message {
            from,
            kind,
            payload,
        } => {
            // A peer dropped earlier in this batch says nothing more.
            let Some(room) = net.room.as_mut() else {
                return;
            };
            if room.session(from).is_none() {
                return;
            }
            let max = room.config().max_message_size;
            let entry = world
                .resource::<MessageRegistry>()
                .entry(kind)
                .map(|e| (e.deliver, e.type_name));
            let result = match entry {
                Some((deliver, type_name)) => deliver(world, from, &payload, max)
                    .map_err(|error| PeerErrorKind::Decode { type_name, error }),
                None => Err(PeerErrorKind::UnknownMessage(kind)),
            };
            if let Err(e) = result {
                room.drop_peer(from, e);
            }
        }
        RoomEvent::Connected { peer, role } => {
            let entity = world
                .spawn((
                    Peer { id: peer, role },
                    PeerStats::default(),
                    Name::new(format!("peer {peer}")),
                ))
                .id();
            net.entities.insert(peer, entity);
            info!("peer {peer} connected ({role})");
            world.write_message(PeerConnected { peer, role, entity });
            if role == Role::Host && matches!(net.phase, Phase::Joining { .. }) {
                net.phase = Phase::Joined;
            }
        }
        RoomEvent::Reconnecting { peer } => {
            info!("peer {peer} is away; waiting for it to come back");
            world.write_message(PeerReconnecting { peer });
        }
        RoomEvent::Reconnected { peer, downtime } => {
            info!("peer {peer} is back after {downtime:?}");
            world.write_message(PeerReconnected { peer, downtime });
        }
        RoomEvent::Disconnected { peer, reason } => {
            if let Some(entity) = net.entities.remove(&peer) {
                world.despawn(entity);
            }
            info!("peer {peer} disconnected: {reason:?}");
            world.write_message(PeerDisconnected { peer, reason });
            let lost_host =
                net.phase == Phase::Joined && net.room.as_ref().is_some_and(|r| r.host().is_none());
            if lost_host {
                // The room is the host's: without it, we leave too; after a host that timed
                // out, we join again as a new session (unless the game opted out).
                let room = net.room_name.clone();
                net.close(linger(world));
                if reason == DisconnectReason::Timeout
                    && world.resource::<PeerMessageSettings>().rejoin
                    && let Some(room) = room
                {
                    info!("the host of {room:?} timed out; joining again as a new session");
                    match net.open(world, Role::Joiner, room) {
                        Ok(()) => {
                            if let Phase::Joining { rejoin, .. } = &mut net.phase {
                                *rejoin = true;
                            }
                        }
                        Err(e) => error(world, None, e),
                    }
                }
            }
        }
        RoomEvent::Error { peer, error: e } => {
            // Only the host sends RoomFull: a join it refuses is over.
            let refused =
                e == PeerErrorKind::RoomFull && matches!(net.phase, Phase::Joining { .. });
            error(world, peer, e);
            if refused {
                net.close(linger(world));
            }
        }
    }
}

/// `PreUpdate`: links, packets (through the conditioner, if any), events, state, stats.
pub(crate) fn receive(world: &mut World) {
    world.resource_scope(|world, mut net: Mut<PeerNetwork>| {
        let net = &mut *net;
        net.tick(world);
        let now = net.now();
        if let Some(room) = net.room.as_mut() {
            let conditioner = &mut net.conditioner;
            net.sockets.poll(|incoming| match incoming {
                Incoming::Link(LinkChange::Up(link)) => room.link_up(link),
                Incoming::Link(LinkChange::Down(link)) => room.link_down(link, now),
                Incoming::Packet(link, packet) => match conditioner {
                    // The handshake is exempt, so that reconnects can complete.
                    Some(c) if room.link_bound(link) => c.admit(now, (link, packet)),
                    _ => room.on_packet(link, packet, now),
                },
            });
            if let Some(c) = conditioner {
                c.release(now, |(link, packet)| room.on_packet(link, packet, now));
            }
        }
        apply_events(world, net);
        update_state(world, net);
        update_stats(world, net);
    });
}

fn update_state(world: &mut World, net: &mut PeerNetwork) {
    let state = net.state();
    if *world.resource::<State<ConnectionState>>().get() != state {
        world
            .resource_mut::<NextState<ConnectionState>>()
            .set(state);
    }
}

/// Run condition of [`reconnect`]: its timer has run out.
pub(crate) fn reconnect_due(net: Res<PeerNetwork>) -> bool {
    net.phase != Phase::Offline && net.now() >= net.reconnect.next_tick
}

/// The reconnect system, on a timer (`reconnect_interval`, in `PreUpdate` after
/// [`receive`]): liveness and resume timeouts, sockets whose loop or signaling died, and
/// re-opening the socket with backoff when the room needs it.
///
/// Who re-opens when:
/// - a joiner whose host is away (silent for `liveness_timeout`, or its link dropped) opens a
///   new socket: a fresh signaling session and fresh WebRTC connections, to the host and to
///   every other peer; the sessions resume on them;
/// - any peer whose socket's signaling connection failed or was lost re-opens, keeping the old
///   socket while it still carries links in use (existing links keep working; the new socket
///   lets new joiners in and lets later drops recover);
/// - a host whose joiner is away does nothing but wait: the joiner comes back through
///   signaling; so does a joiner whose fellow joiner is away.
///
/// The first failed attempt of an outage is reported as a [`PeerError`], the others are logged;
/// each attempt waits per the backoff.
pub(crate) fn reconnect(world: &mut World) {
    world.resource_scope(|world, mut net: Mut<PeerNetwork>| {
        let net = &mut *net;
        net.tick(world);
        let settings = world.resource::<PeerMessageSettings>().clone();
        let now = net.now();
        net.reconnect.next_tick = now + settings.reconnect_interval;

        let mut stalled = 0;
        if let Some(room) = net.room.as_mut() {
            room.check_timeouts(now);
            stalled = room.take_stalled_handshakes();
            if stalled > 0 {
                warn!(
                    "{stalled} new link(s) carried no handshake for {:?}; dropped them",
                    settings.resume.handshake_timeout
                );
            }
        }
        apply_events(world, net);

        // Sockets whose loop ended: their links are gone; a current one has failed.
        let mut failures = Vec::new();
        if let Some(room) = net.room.as_mut() {
            net.sockets.reap_ended(|socket, result, was_current| {
                for link in socket.links() {
                    room.link_down(link, now);
                }
                if was_current && !socket.failure_reported {
                    failures.push(result.err().unwrap_or_else(|| "socket closed".into()));
                }
            });
        }
        for reason in failures {
            socket_failed(world, net, reason);
        }
        // A current socket whose signaling failed or dropped.
        let host_away = net.host_away_since();
        // A joiner whose new link never got a Hello re-opens for fresh connections; a host
        // leaves it to the joiner (who hears nothing from us and does the same).
        let stalled_joiner = stalled > 0
            && net
                .room
                .as_ref()
                .is_some_and(|r| r.local().role == Role::Joiner);
        let mut need = net.sockets.is_empty() || stalled_joiner;
        let mut lost = None;
        if let Some(current) = net.sockets.current() {
            if current.signaling() == SignalingPhase::Down {
                if !current.failure_reported {
                    current.failure_reported = true;
                    lost = Some(if current.ever_up {
                        "connection to the signaling server lost"
                    } else {
                        "could not reach the signaling server"
                    });
                }
                need = true;
            }
            if host_away.is_some_and(|since| current.opened_at <= since) {
                need = true;
            }
            if current.signaling() == SignalingPhase::Up {
                net.reconnect.connect_time = current.connect_time().or(net.reconnect.connect_time);
                if !need && host_away.is_none() {
                    net.reconnect.attempts = 0;
                    net.reconnect.outage_reported = false;
                }
            }
        }
        if let Some(reason) = lost {
            socket_failed(world, net, reason.into());
        }
        apply_events(world, net);
        if net.phase != Phase::Offline && need && now >= net.reconnect.next_attempt {
            reopen(net, &settings, now);
        }
        if let Some(room) = net.room.as_ref() {
            net.sockets.retire_unused(|link| room.link_in_use(link));
        }
        update_state(world, net);
    });
}

fn reopen(net: &mut PeerNetwork, settings: &PeerMessageSettings, now: Duration) {
    let Some(mut target) = net.target.clone() else {
        return;
    };
    let attempt = net.reconnect.attempts;
    net.reconnect.attempts += 1;
    let random = net.reconnect.random.next_f32();
    net.reconnect.next_attempt = now + settings.backoff.delay(net.reconnect.attempts, random);
    // A current socket with links still in use keeps serving them while the new one comes up.
    let keep = match (net.sockets.current(), net.room.as_ref()) {
        (Some(current), Some(room)) => current.links().any(|l| room.link_in_use(l)),
        _ => false,
    };
    if !keep {
        net.sockets.drop_current();
    }
    info!(
        "re-opening the socket (attempt {}, next no sooner than {:?})",
        attempt + 1,
        net.reconnect.next_attempt.saturating_sub(now)
    );
    let timeout = match net.reconnect.connect_time {
        Some(t) => (t * 4)
            .max(Duration::from_secs(1))
            .min(settings.signaling_connect_timeout),
        None => settings.signaling_connect_timeout,
    };
    target.connect_timeout = timeout;
    net.sockets.open(&*net.transport, &target, now);
}

fn update_stats(world: &mut World, net: &PeerNetwork) {
    let Some(room) = net.room.as_ref() else {
        return;
    };
    for (peer, entity) in net.entities.iter() {
        let (Some(session), Some(mut stats)) =
            (room.session(*peer), world.get_mut::<PeerStats>(*entity))
        else {
            continue;
        };
        let fresh = PeerStats {
            stats: session.stats().clone(),
            unacked_bytes: session.unacked_bytes(),
        };
        // Only trigger change detection when something changed.
        stats.set_if_neq(fresh);
    }
}

/// `PostUpdate`: host/join/leave requests, then everything queued this frame goes out.
pub(crate) fn transmit(world: &mut World) {
    world.resource_scope(|world, mut net: Mut<PeerNetwork>| {
        let net = &mut *net;
        net.tick(world);
        for command in std::mem::take(&mut net.commands) {
            let result = match command {
                Command::Host(room) => net.open(world, Role::Host, room),
                Command::Join(room) => net.open(world, Role::Joiner, room),
                Command::Leave => {
                    net.close(linger(world));
                    #[cfg(all(feature = "server", not(target_arch = "wasm32")))]
                    world.remove_resource::<crate::config::SignalingServerInfo>();
                    Ok(())
                }
                Command::Blackout(duration) => {
                    let now = net.now();
                    if let Some(room) = net.room.as_mut() {
                        room.set_retransmit(true);
                    }
                    if let Some(c) = net.conditioner.as_mut() {
                        c.blackout(now + duration);
                    } else if net.room.is_some() {
                        let mut c = LinkConditioner::new(Default::default(), now.as_nanos() as u64);
                        c.blackout(now + duration);
                        net.conditioner = Some(c);
                    }
                    Ok(())
                }
            };
            if let Err(e) = result {
                error(world, None, e);
            }
        }
        apply_events(world, net);
        // host/join/leave show in the state from the next frame's `StateTransition` on.
        update_state(world, net);

        let now = net.now();
        if let Phase::Joining {
            since,
            rejoin: false,
        } = net.phase
        {
            let timeout = world.resource::<PeerMessageSettings>().join_timeout;
            if now.saturating_sub(since) >= timeout {
                let room = net.room_name.clone().unwrap_or_default();
                error(
                    world,
                    None,
                    PeerErrorKind::JoinTimeout {
                        room,
                        after: timeout,
                    },
                );
                net.close(Duration::ZERO);
                apply_events(world, net);
            }
        }
        if let Some(room) = net.room.as_mut() {
            let sockets = &mut net.sockets;
            room.poll_transmit(now, &mut |link, channel, packet| {
                sockets.send(link, channel, packet);
            });
        }
        net.lingering.retain_mut(|l| {
            l.sockets.retain_mut(|s| s.ended().is_none());
            if now < l.until && !l.sockets.is_empty() {
                return true;
            }
            for s in &mut l.sockets {
                s.close();
            }
            false
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_are_validated() {
        let mut app = App::new();
        app.insert_resource(PeerMessageSettings::default())
            .init_resource::<MessageRegistry>();
        let mut net = PeerNetwork::default();
        for bad in ["", "a b", "x/y", "ü"] {
            assert!(matches!(
                net.open(app.world_mut(), Role::Joiner, bad.into()),
                Err(PeerErrorKind::Signaling(_))
            ));
        }
    }
}
