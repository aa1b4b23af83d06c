//! The Bevy side's driver: turns what the room's protocol ([`Engine`], running beside the
//! sockets on the transport's loop) reports into Bevy messages, entities and state, and hands
//! it what the game's frames send. The reconnect policy is in [`reconnect`].
//!
//! Three exclusive systems drive it (see [`crate::plugin`]): `receive` in `PreUpdate`,
//! `reconnect` after it (on a timer), and `transmit` in `PostUpdate`. Each locks the engine
//! once; in between, the transport's loop has it.

mod reconnect;

pub(crate) use reconnect::{reconnect, reconnect_due};

use crate::{
    config::{PeerMessageSettings, Signaling},
    core::codec,
    core::conditioner::LinkConditioner,
    core::error::{PeerErrorKind, SendError},
    core::peer::{PeerId, Role},
    core::room::{Access, DisconnectReason, LocalIdentity, Room, RoomEvent, Topology},
    core::session::{Stats, Transfer, TransferDirection},
    core::wire::Delivery,
    events::{
        ConnectionState, HostMigrated, JoinRequest, Peer, PeerConnected, PeerDisconnected,
        PeerError, PeerReconnected, PeerReconnecting, PeerStats, TransferProgress,
    },
    io::engine::{Engine, Lingering},
    io::signaling::{SignalingPhase, WebSocketSignallerBuilder},
    io::{SocketTarget, Transport, ice::IceServers, lock, matchbox::Matchbox},
    registry::MessageRegistry,
};
use bevy::{platform::collections::HashMap, prelude::*};
use matchbox_socket::SignallerBuilder;
use reconnect::Reconnect;
use serde::Serialize;
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

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
    Join(String, Vec<u8>),
    Decide(PeerId, bool),
    Kick(PeerId),
    HandOver(PeerId),
    Drop(PeerId, PeerErrorKind),
    Leave,
    Blackout(Duration),
    IceServers(IceServers),
}

/// The plugin's network state. Internal: games use [`PeerMessage`](crate::PeerMessage).
#[derive(Resource, Debug)]
pub struct PeerNetwork {
    /// Where sockets come from (matchbox, or an in-memory network); its clock and its loop.
    transport: Arc<dyn Transport>,
    /// The room's protocol, shared with the transport's loop.
    engine: Arc<Mutex<Engine>>,
    /// The transport's loop runs the engine (started at the first `host`/`join`).
    driven: bool,
    /// Now, as of the running system: see [`PeerNetwork::tick`].
    clock: Duration,
    phase: Phase,
    role: Option<Role>,
    room_name: Option<String>,
    /// Where the current room's sockets are opened, kept to re-open them.
    target: Option<SocketTarget>,
    reconnect: Reconnect,
    /// A host's room was open (signaling up) at some point.
    room_was_open: bool,
    #[cfg(all(feature = "server", not(target_arch = "wasm32")))]
    server: Option<crate::io::server::EmbeddedServer>,
    commands: Vec<Command>,
    entities: HashMap<PeerId, Entity>,
    scratch: Vec<u8>,
    events: Vec<RoomEvent>,
    /// Peers we dropped while turning the current batch of events into messages (a payload
    /// that did not decode): what they sent after it is not delivered.
    dropped: Vec<PeerId>,
    /// What the last `join_with` sent, for a rejoin.
    join_payload: Vec<u8>,
    /// The last progress reported per large message in transit.
    transfers: HashMap<(PeerId, TransferDirection, u64), Transfer>,
}

impl Default for PeerNetwork {
    fn default() -> Self {
        Self::new(Arc::new(Matchbox::default()))
    }
}

impl PeerNetwork {
    pub(crate) fn new(transport: Arc<dyn Transport>) -> Self {
        Self {
            transport,
            engine: Arc::default(),
            driven: false,
            clock: Duration::ZERO,
            phase: Phase::Offline,
            role: None,
            room_name: None,
            target: None,
            reconnect: Reconnect::default(),
            room_was_open: false,
            #[cfg(all(feature = "server", not(target_arch = "wasm32")))]
            server: None,
            commands: Vec::new(),
            entities: HashMap::default(),
            scratch: Vec::with_capacity(256),
            events: Vec::new(),
            dropped: Vec::new(),
            join_payload: Vec::new(),
            transfers: HashMap::default(),
        }
    }

    /// A multi-line snapshot of sockets and links, for diagnosing connection problems (the
    /// format is not stable).
    pub fn describe(&mut self) -> String {
        let engine = self.engine.clone();
        let mut engine = lock(&engine);
        let mut out = format!(
            "phase {:?} at {:?}, engine pumped {} times\n",
            self.phase,
            self.transport.now(),
            engine.pumps()
        );
        for line in engine.sockets.describe() {
            out += &format!("  {line}\n");
        }
        if let Some(room) = &engine.room {
            out += &format!(
                "  room: we are {} ({}), host epoch {}\n",
                room.local().id,
                room.local().role,
                room.host_epoch()
            );
            for (peer, role) in room.peers() {
                let away = room
                    .away_since(peer)
                    .map_or(String::new(), |t| format!(", away since {t:?}"));
                out += &format!("  peer {peer} ({role}){away}\n");
            }
            for line in room.describe_links() {
                out += &format!("  link {line}\n");
            }
        }
        out
    }

    fn now(&self) -> Duration {
        self.clock
    }

    /// Reads the transport's clock for this system run: the wall clock, to the microsecond
    /// (round-trip times are measured with it), or the in-memory network's own.
    fn tick(&mut self) {
        self.clock = self.transport.now();
    }

    pub(crate) fn queue_host(&mut self, room: String) {
        self.commands.push(Command::Host(room));
    }
    pub(crate) fn queue_join(&mut self, room: String, payload: Vec<u8>) {
        self.commands.push(Command::Join(room, payload));
    }
    pub(crate) fn queue_decision(&mut self, peer: PeerId, admit: bool) {
        self.commands.push(Command::Decide(peer, admit));
    }
    pub(crate) fn queue_kick(&mut self, peer: PeerId) {
        self.commands.push(Command::Kick(peer));
    }
    pub(crate) fn queue_hand_over(&mut self, peer: PeerId) {
        self.commands.push(Command::HandOver(peer));
    }
    /// Drops `peer` for `error` (something it sent that a layer above the protocol refused).
    #[cfg_attr(not(feature = "replicon"), allow(dead_code))]
    pub(crate) fn queue_drop(&mut self, peer: PeerId, error: PeerErrorKind) {
        self.commands.push(Command::Drop(peer, error));
    }
    pub(crate) fn queue_leave(&mut self) {
        self.commands.push(Command::Leave);
    }
    pub(crate) fn queue_blackout(&mut self, duration: Duration) {
        self.commands.push(Command::Blackout(duration));
    }
    pub(crate) fn queue_ice_servers(&mut self, ice: IceServers) {
        self.commands.push(Command::IceServers(ice));
    }

    pub(crate) fn room_name(&self) -> Option<&str> {
        self.room_name.as_deref()
    }

    pub(crate) fn role(&self) -> Option<Role> {
        self.role
    }

    /// The host, once a joiner is connected to it.
    pub(crate) fn host(&self) -> Option<PeerId> {
        lock(&self.engine).room.as_ref().and_then(|r| r.host())
    }

    /// The entity of a connected peer.
    #[cfg_attr(not(feature = "replicon"), allow(dead_code))]
    pub(crate) fn entity(&self, peer: PeerId) -> Option<Entity> {
        self.entities.get(&peer).copied()
    }

    /// The connected peers and their roles.
    pub(crate) fn peers(&self) -> Vec<(PeerId, Role)> {
        lock(&self.engine)
            .room
            .as_ref()
            .map(|r| r.peers().collect())
            .unwrap_or_default()
    }

    /// A peer's live figures.
    pub(crate) fn stats(&self, peer: PeerId) -> Option<Stats> {
        lock(&self.engine)
            .room
            .as_ref()
            .and_then(|r| r.session(peer))
            .map(|s| s.stats().clone())
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
        lock(&self.engine)
            .room
            .as_mut()
            .ok_or(SendError::UnknownPeer(peer))?
            .send(peer, kind, &self.scratch, delivery)
    }

    pub(crate) fn broadcast_encoded(
        &mut self,
        kind: u32,
        delivery: Delivery,
        failed: &mut impl FnMut(PeerId, SendError),
    ) {
        if let Some(room) = lock(&self.engine).room.as_mut() {
            room.broadcast(kind, &self.scratch, delivery, failed);
        }
    }

    fn state(&mut self, engine: &mut Engine) -> ConnectionState {
        match self.phase {
            Phase::Offline => ConnectionState::Offline,
            Phase::Joining { .. } => ConnectionState::Connecting,
            Phase::Joined if host_away_since(engine).is_some() => ConnectionState::Reconnecting,
            Phase::Joined => ConnectionState::Connected,
            Phase::Hosting => {
                let up = engine
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
        engine: &mut Engine,
        world: &mut World,
        role: Role,
        room_name: String,
        join_payload: Vec<u8>,
    ) -> Result<(), PeerErrorKind> {
        if self.phase != Phase::Offline {
            return Err(PeerErrorKind::AlreadyInRoom);
        }
        if room_name.is_empty()
            || !room_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(PeerErrorKind::InvalidRoomName { room: room_name });
        }
        let settings = world.resource::<PeerMessageSettings>().clone();
        let registry = world.resource::<MessageRegistry>();
        let protocol_hash = registry.protocol_hash() ^ settings.topology.protocol_salt();
        let kinds = registry.wire_kinds();
        let relay_filter = registry.relay_filter(settings.session.max_message_size);
        let websocket: Arc<dyn SignallerBuilder> = Arc::new(WebSocketSignallerBuilder);
        let (url, signaller) = match &settings.signaling {
            #[cfg(all(feature = "server", not(target_arch = "wasm32")))]
            Signaling::Embedded { bind, join_url } => match role {
                Role::Host => {
                    let server = crate::io::server::EmbeddedServer::start(*bind)?;
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
        let id = settings.identity.peer_id();
        info!("{role} {room_name:?} via {url} as {id}");
        let local = LocalIdentity::new(
            settings.identity.clone(),
            role,
            crate::core::peer::random_u128() as u64,
            protocol_hash,
        );
        let mut session = settings.session.clone();
        // Only something above the transport loses packets within a link (see
        // `SessionConfig::retransmit`).
        session.retransmit = settings.conditioner.is_some();
        session.ping_interval = settings.resume.heartbeat_interval(session.ping_interval);
        let mut room = Room::with_policy(local, session, settings.room_limit(), settings.resume);
        room.set_kinds(kinds);
        room.set_topology(settings.topology);
        if role == Role::Host {
            room.set_relay_filter(relay_filter);
        }
        room.set_access(Access {
            secret: settings.room_secret.clone(),
            join_payload: join_payload.into(),
            review: settings.review_joiners && role == Role::Host,
            budgets: settings.budgets,
        });
        engine.room = Some(room);
        let now = self.now();
        let target = SocketTarget {
            room_url: url,
            signaller,
            ice: settings.ice_servers.clone(),
            connect_timeout: settings.signaling_connect_timeout,
            local: id,
            offers: !(settings.topology == Topology::Star && role == Role::Joiner),
        };
        engine.sockets.open(&*self.transport, &target, now);
        engine.conditioner = settings
            .conditioner
            .map(|c| LinkConditioner::new(c, crate::core::peer::random_u128() as u64));
        if !self.driven {
            self.driven = true;
            let engine: Arc<Mutex<dyn crate::io::Pump>> = self.engine.clone();
            self.transport.drive(Arc::downgrade(&engine));
        }
        engine.wake();
        self.target = Some(target);
        self.reconnect.start(now);
        self.room_was_open = false;
        self.role = Some(role);
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
    fn close(&mut self, engine: &mut Engine, linger: Duration) {
        let now = self.now();
        if let Some(room) = engine.room.as_mut() {
            room.leave(now);
            self.events.extend(std::iter::from_fn(|| room.poll_event()));
        }
        engine.transmit(now);
        let sockets = engine.sockets.take_all();
        engine.linger(Lingering {
            sockets,
            #[cfg(all(feature = "server", not(target_arch = "wasm32")))]
            _server: self.server.take(),
            until: now + linger,
        });
        engine.room = None;
        engine.conditioner = None;
        self.role = None;
        self.room_name = None;
        self.target = None;
        self.phase = Phase::Offline;
    }
}

/// Since when our host, or a peer that hosted the room before it, has been away (see
/// [`Room::hosts_away_since`](crate::core::room::Room::hosts_away_since)): the reconnect
/// policy opens new links for them.
fn hosts_away_since(engine: &Engine) -> Option<Duration> {
    engine.room.as_ref()?.hosts_away_since()
}

/// The host we joined, while it is away.
fn host_away_since(engine: &Engine) -> Option<Duration> {
    let room = engine.room.as_ref()?;
    if room.local().role != Role::Joiner {
        return None;
    }
    room.host().and_then(|h| room.away_since(h))
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
fn apply_events(world: &mut World, net: &mut PeerNetwork, engine: &mut Engine) {
    loop {
        if let Some(room) = engine.room.as_mut() {
            net.events.extend(std::iter::from_fn(|| room.poll_event()));
        }
        if net.events.is_empty() {
            net.dropped.clear();
            return;
        }
        let mut events = std::mem::take(&mut net.events);
        for event in events.drain(..) {
            apply_event(world, net, engine, event);
        }
        // Give the allocation back for the next frame.
        if net.events.is_empty() {
            net.events = events;
        }
    }
}

fn apply_event(world: &mut World, net: &mut PeerNetwork, engine: &mut Engine, event: RoomEvent) {
    if !matches!(event, RoomEvent::Message { .. }) {
        // A peer came, went away, came back or failed: the reconnect policy looks.
        net.reconnect.notice();
    }
    match event {
        RoomEvent::Message {
            from,
            kind,
            payload,
        } => {
            // A peer we dropped earlier in this batch says nothing more. (One that left after
            // sending it, a host handing over a snapshot and leaving, say, is heard out.)
            let Some(room) = engine.room.as_mut() else {
                return;
            };
            if net.dropped.contains(&from) {
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
                net.dropped.push(from);
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
            // (Unless the game despawned it already.)
            if let Some(entity) = net.entities.remove(&peer)
                && let Ok(entity) = world.get_entity_mut(entity)
            {
                entity.despawn();
            }
            // A new incarnation under the same id numbers its stream from zero again.
            net.transfers.retain(|(p, _, _), _| *p != peer);
            info!("peer {peer} disconnected: {reason:?}");
            world.write_message(PeerDisconnected { peer, reason });
            let lost_host = net.phase == Phase::Joined
                && engine.room.as_ref().is_some_and(|r| r.host().is_none());
            if lost_host {
                // The room is the host's: without it, we leave too; after a host that timed
                // out, we join again as a new session (unless the game opted out).
                let room = net.room_name.clone();
                net.close(engine, linger(world));
                if reason == DisconnectReason::Timeout
                    && world.resource::<PeerMessageSettings>().rejoin
                    && let Some(room) = room
                {
                    info!("the host of {room:?} timed out; joining again as a new session");
                    let payload = net.join_payload.clone();
                    match net.open(engine, world, Role::Joiner, room, payload) {
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
        RoomEvent::HostMigrated { old, new } => {
            // (Not after a `leave()`: the room is gone and so is our role.)
            if let Some(room) = engine.room.as_ref() {
                let me = room.local().id;
                if new == me {
                    net.phase = Phase::Hosting;
                    net.role = Some(Role::Host);
                    net.room_was_open = true;
                } else if old == me {
                    net.phase = Phase::Joined;
                    net.role = Some(Role::Joiner);
                }
            }
            for (peer, role) in [(old, Role::Joiner), (new, Role::Host)] {
                if let Some(entity) = net.entities.get(&peer)
                    && let Some(mut p) = world.get_mut::<Peer>(*entity)
                {
                    p.role = role;
                }
            }
            info!("the room's host is now {new} (was {old})");
            world.write_message(HostMigrated { old, new });
        }
        RoomEvent::JoinRequest { peer, payload } => {
            info!(
                "peer {peer} asks to join ({} bytes of payload)",
                payload.len()
            );
            world.write_message(JoinRequest {
                peer,
                payload: payload.to_vec(),
            });
        }
        RoomEvent::Error { peer, error: e } => {
            error(world, peer, e);
            // The host refused us (room full, secret, its game said no, our identity): the
            // join is over.
            let refused = matches!(net.phase, Phase::Joining { .. })
                && engine
                    .room
                    .as_mut()
                    .is_some_and(|r| r.take_refused_by_host());
            if refused {
                net.close(engine, linger(world));
            }
        }
    }
}

/// Runs `f` with the network and its engine locked (once per system run), the clock read.
fn with_engine(world: &mut World, f: impl FnOnce(&mut World, &mut PeerNetwork, &mut Engine)) {
    world.resource_scope(|world, mut net: Mut<PeerNetwork>| {
        let net = &mut *net;
        net.tick();
        let shared = net.engine.clone();
        let mut engine = lock(&shared);
        f(world, net, &mut engine);
    });
}

/// `PreUpdate`: whatever arrived since the transport's loop last ran (so a packet that came in
/// just before the frame is read in it), then the events, state and stats.
pub(crate) fn receive(world: &mut World) {
    with_engine(world, |world, net, engine| {
        engine.pump(net.now());
        // Links that came or went, or a socket whose signaling changed: the reconnect policy
        // looks in this frame.
        if engine.take_links_changed() | engine.sockets.take_changes() {
            net.reconnect.notice();
        }
        apply_events(world, net, engine);
        update_state(world, net, engine);
        update_stats(world, net, engine);
        report_transfers(world, net, engine);
    });
}

/// A [`TransferProgress`] for each large message whose progress changed since the last frame.
fn report_transfers(world: &mut World, net: &mut PeerNetwork, engine: &mut Engine) {
    let Some(room) = engine.room.as_mut() else {
        return;
    };
    let mut changed = Vec::new();
    // The newest transfer reported per peer and direction.
    let mut newest: HashMap<(PeerId, TransferDirection), u64> = HashMap::default();
    room.poll_transfers(&mut |peer, t| {
        let key = (peer, t.direction, t.id);
        if net.transfers.get(&key).map(|last| last.done) != Some(t.done) {
            changed.push((peer, t));
        }
        if t.is_done() {
            net.transfers.remove(&key);
        } else {
            net.transfers.insert(key, t);
        }
        let n = newest.entry((peer, t.direction)).or_insert(t.id);
        *n = (*n).max(t.id);
    });
    // Large messages complete in order, each way: one still tracked behind a newer one
    // finished without its last report reaching us (the core keeps a bounded few).
    net.transfers.retain(|&(peer, direction, id), last| {
        let finished = newest.get(&(peer, direction)).is_some_and(|n| id < *n);
        if finished {
            changed.push((
                peer,
                Transfer {
                    done: last.total,
                    ..*last
                },
            ));
        }
        !finished
    });
    // Transfers of peers that left are forgotten with them.
    net.transfers
        .retain(|(peer, _, _), _| room.session(*peer).is_some());
    if changed.is_empty() {
        return;
    }
    let registry = world.resource::<MessageRegistry>();
    let progress: Vec<TransferProgress> = changed
        .into_iter()
        .map(|(peer, t)| TransferProgress {
            peer,
            direction: t.direction,
            message: registry
                .entry(t.kind)
                .map_or_else(|| format!("#{:08x}", t.kind), |e| e.name.clone()),
            id: t.id,
            done: t.done,
            total: t.total,
        })
        .collect();
    world.write_message_batch(progress);
}

fn update_state(world: &mut World, net: &mut PeerNetwork, engine: &mut Engine) {
    let state = net.state(engine);
    if *world.resource::<State<ConnectionState>>().get() != state {
        world
            .resource_mut::<NextState<ConnectionState>>()
            .set(state);
    }
}

fn update_stats(world: &mut World, net: &PeerNetwork, engine: &Engine) {
    let Some(room) = engine.room.as_ref() else {
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
            path: room
                .peer_link(*peer)
                .and_then(|link| engine.sockets.path(link)),
        };
        // Only trigger change detection when something changed.
        stats.set_if_neq(fresh);
    }
}

/// `PostUpdate`: host/join/leave requests, then everything queued this frame goes out.
pub(crate) fn transmit(world: &mut World) {
    with_engine(world, |world, net, engine| {
        for command in std::mem::take(&mut net.commands) {
            let result = match command {
                Command::Host(room) => net.open(engine, world, Role::Host, room, Vec::new()),
                Command::Join(room, payload) => {
                    net.join_payload = payload.clone();
                    net.open(engine, world, Role::Joiner, room, payload)
                }
                Command::Decide(peer, admit) => {
                    let now = net.now();
                    if let Some(room) = engine.room.as_mut() {
                        let waiting = if admit {
                            room.admit_joiner(peer, now)
                        } else {
                            room.refuse_joiner(peer)
                        };
                        if !waiting {
                            warn!("no join request from {peer} is waiting (it timed out or left)");
                        }
                    }
                    Ok(())
                }
                Command::Kick(peer) => {
                    let now = net.now();
                    let kicked = engine
                        .room
                        .as_mut()
                        .is_some_and(|room| room.kick(peer, now));
                    if kicked {
                        info!("kicked peer {peer}");
                    } else {
                        warn!("cannot kick {peer}: not a host, or no such peer in the room");
                    }
                    Ok(())
                }
                Command::HandOver(peer) => {
                    let handed = engine
                        .room
                        .as_mut()
                        .is_some_and(|room| room.hand_over(peer));
                    if !handed {
                        warn!("cannot hand the room to {peer}: not a host, or not a joiner here");
                    }
                    Ok(())
                }
                Command::Drop(peer, error) => {
                    if let Some(room) = engine.room.as_mut()
                        && room.session(peer).is_some()
                    {
                        room.drop_peer(peer, error);
                    }
                    Ok(())
                }
                Command::Leave => {
                    net.close(engine, linger(world));
                    #[cfg(all(feature = "server", not(target_arch = "wasm32")))]
                    world.remove_resource::<crate::config::SignalingServerInfo>();
                    Ok(())
                }
                Command::IceServers(ice) => {
                    if let Some(target) = net.target.as_mut() {
                        target.ice = ice.clone();
                    }
                    world.resource_mut::<PeerMessageSettings>().ice_servers = ice;
                    Ok(())
                }
                Command::Blackout(duration) => {
                    let now = net.now();
                    if let Some(room) = engine.room.as_mut() {
                        room.set_retransmit(true);
                    }
                    if let Some(c) = engine.conditioner.as_mut() {
                        c.blackout(now + duration);
                    } else if engine.room.is_some() {
                        let mut c = LinkConditioner::new(Default::default(), now.as_nanos() as u64);
                        c.blackout(now + duration);
                        engine.conditioner = Some(c);
                    }
                    Ok(())
                }
            };
            if let Err(e) = result {
                error(world, None, e);
            }
        }
        apply_events(world, net, engine);
        // host/join/leave show in the state from the next frame's `StateTransition` on.
        update_state(world, net, engine);

        let now = net.now();
        if let Phase::Joining {
            since,
            rejoin: false,
        } = net.phase
        {
            let timeout = world.resource::<PeerMessageSettings>().join_timeout;
            if now.saturating_sub(since) >= timeout {
                let room = net.room_name.clone().unwrap_or_default();
                // Somebody was there and WebRTC tried, and no connection ever formed: no
                // path, rather than no host.
                let negotiation = engine.sockets.negotiation();
                let kind = if negotiation.tried && !engine.sockets.ever_linked() {
                    PeerErrorKind::NoNetworkPath {
                        room,
                        after: timeout,
                        relay_offered: negotiation.relay_offered,
                    }
                } else {
                    PeerErrorKind::JoinTimeout {
                        room,
                        after: timeout,
                    }
                };
                error(world, None, kind);
                net.close(engine, Duration::ZERO);
                apply_events(world, net, engine);
            }
        }
        engine.transmit(now);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `set_ice_servers` (fresh TURN credentials, say) reaches every socket opened from then
    /// on: here the re-open after the signaling server comes back.
    #[test]
    fn new_ice_servers_are_used_by_the_next_socket() {
        use crate::{MemoryNetwork, PeerMessage, PeerMessagePlugin};
        let network = MemoryNetwork::default();
        let mut app = App::new();
        app.add_plugins(MinimalPlugins)
            .add_plugins(PeerMessagePlugin::default().in_memory(&network));
        let with = |app: &mut App, f: &dyn Fn(&mut PeerMessage)| {
            let world = app.world_mut();
            let mut state = bevy::ecs::system::SystemState::<PeerMessage>::new(world);
            f(&mut state.get_mut(world).expect("PeerMessage"));
            state.apply(world);
            app.update();
        };
        with(&mut app, &|n| n.host("room"));
        let fresh = IceServers::stun(["stun:stun.example.org:3478"]).with(crate::IceServer::turn(
            ["turn:turn.example.org:3478"],
            "1700003600:me",
            "c3VwZXI=",
        ));
        let set = fresh.clone();
        with(&mut app, &move |n| n.set_ice_servers(set.clone()));
        assert_eq!(
            app.world().resource::<PeerMessageSettings>().ice_servers,
            fresh
        );
        assert_ne!(network.ice_of_sockets(), vec![fresh.clone()]);
        // The signaling server goes away and comes back: the room's socket is re-opened.
        network.set_signaling(false);
        for _ in 0..100 {
            network.advance(Duration::from_millis(50));
            app.update();
        }
        network.set_signaling(true);
        for _ in 0..200 {
            network.advance(Duration::from_millis(50));
            app.update();
        }
        let opened = network.ice_of_sockets();
        assert!(opened.len() >= 2, "{opened:?}");
        assert_ne!(opened[0], fresh, "the first socket had the old servers");
        assert_eq!(opened.last(), Some(&fresh), "the re-open has the new ones");
    }

    #[test]
    fn room_names_are_validated() {
        let mut app = App::new();
        app.insert_resource(PeerMessageSettings::default())
            .init_resource::<MessageRegistry>();
        let mut net = PeerNetwork::default();
        let mut engine = Engine::default();
        for bad in ["", "a b", "x/y", "ü"] {
            assert!(matches!(
                net.open(
                    &mut engine,
                    app.world_mut(),
                    Role::Joiner,
                    bad.into(),
                    vec![]
                ),
                Err(PeerErrorKind::InvalidRoomName { .. })
            ));
        }
    }
}
