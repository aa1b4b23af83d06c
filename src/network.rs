//! The Bevy shell around the core: owns the [`Room`], the [`Transport`] and (on a native host)
//! the embedded server, turns [`RoomEvent`]s into Bevy messages, entities and state.
//!
//! Two exclusive systems drive it (see [`crate::plugin`]): [`receive`] in `PreUpdate` and
//! [`transmit`] in `PostUpdate`.

use crate::{
    codec,
    config::{PeerMessageSettings, Signaling},
    error::{PeerErrorKind, SendError},
    events::{
        ConnectionState, Peer, PeerConnected, PeerDisconnected, PeerError, PeerReconnected,
        PeerStats,
    },
    messages::MessageRegistry,
    peer::{PeerId, Role},
    room::{LocalIdentity, Room, RoomEvent, WireDelivery},
    transport::{LinkChange, LinkId, Transport},
};
use bevy::{platform::collections::HashMap, platform::time::Instant, prelude::*};
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Offline,
    Hosting,
    Joining { since: Duration },
    Joined,
}

#[derive(Debug, Clone)]
enum Command {
    Host(String),
    Join(String),
    Leave,
}

/// A socket (and server) kept open briefly after `leave()` so the goodbyes get out.
#[derive(Debug)]
struct Lingering {
    transport: Transport,
    #[cfg(all(feature = "server", not(target_arch = "wasm32")))]
    _server: Option<crate::server::EmbeddedServer>,
    until: Duration,
}

/// The plugin's network state. Internal: games use [`PeerMessage`](crate::messages::PeerMessage).
#[derive(Resource, Debug)]
pub struct PeerNetwork {
    epoch: Instant,
    phase: Phase,
    room_name: Option<String>,
    room: Option<Room<LinkId>>,
    transport: Option<Transport>,
    #[cfg(all(feature = "server", not(target_arch = "wasm32")))]
    server: Option<crate::server::EmbeddedServer>,
    lingering: Vec<Lingering>,
    commands: Vec<Command>,
    entities: HashMap<PeerId, Entity>,
    scratch: Vec<u8>,
    events: Vec<RoomEvent>,
}

impl Default for PeerNetwork {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            phase: Phase::Offline,
            room_name: None,
            room: None,
            transport: None,
            #[cfg(all(feature = "server", not(target_arch = "wasm32")))]
            server: None,
            lingering: Vec::new(),
            commands: Vec::new(),
            entities: HashMap::default(),
            scratch: Vec::with_capacity(256),
            events: Vec::new(),
        }
    }
}

impl PeerNetwork {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
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
        delivery: WireDelivery,
    ) -> Result<(), SendError> {
        let Self { room, scratch, .. } = self;
        room.as_mut()
            .ok_or(SendError::UnknownPeer(peer))?
            .send(peer, kind, scratch, delivery)
    }

    pub(crate) fn broadcast_encoded(
        &mut self,
        kind: u32,
        delivery: WireDelivery,
        failed: &mut impl FnMut(PeerId, SendError),
    ) {
        let Self { room, scratch, .. } = self;
        let Some(room) = room.as_mut() else {
            return;
        };
        let peers: Vec<PeerId> = room.peers().map(|(p, _)| p).collect();
        for peer in peers {
            if let Err(e) = room.send(peer, kind, scratch, delivery) {
                failed(peer, e);
            }
        }
    }

    fn state(&mut self) -> ConnectionState {
        match self.phase {
            Phase::Offline => ConnectionState::Offline,
            Phase::Joining { .. } => ConnectionState::Connecting,
            Phase::Joined => ConnectionState::Connected,
            Phase::Hosting => match self.transport.as_mut().and_then(|t| t.id()) {
                Some(_) => ConnectionState::Connected,
                None => ConnectionState::Connecting,
            },
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
        let protocol_hash = world.resource::<MessageRegistry>().protocol_hash();
        let (url, builder) = match &settings.signaling {
            #[cfg(all(feature = "server", not(target_arch = "wasm32")))]
            Signaling::Embedded { bind, join_url } => match role {
                Role::Host => {
                    let server = crate::server::EmbeddedServer::start(*bind)
                        .map_err(PeerErrorKind::Server)?;
                    let addr = server.addr();
                    world.insert_resource(crate::server::SignalingServerInfo { addr });
                    self.server = Some(server);
                    (format!("ws://127.0.0.1:{}/{room_name}", addr.port()), None)
                }
                Role::Joiner => (format!("{join_url}/{room_name}"), None),
            },
            Signaling::Server { url } => (format!("{url}/{room_name}"), None),
            Signaling::Custom { builder, url } => {
                (format!("{url}/{room_name}"), Some(builder.clone()))
            }
        };
        info!("{role} {room_name:?} via {url} as {}", settings.peer_id);
        let local = LocalIdentity {
            id: settings.peer_id,
            role,
            incarnation: crate::peer::random_u128() as u64,
            protocol_hash,
        };
        self.room = Some(Room::new(
            local,
            settings.session.clone(),
            settings.max_peers,
        ));
        self.transport = Some(Transport::open(url, &settings.ice_servers, builder));
        self.room_name = Some(room_name);
        self.phase = match role {
            Role::Host => Phase::Hosting,
            Role::Joiner => Phase::Joining { since: self.now() },
        };
        Ok(())
    }

    /// Leaves the room: goodbyes are queued, the socket lingers a little so they get out.
    fn close(&mut self, linger: Duration) {
        if let Some(room) = self.room.as_mut() {
            room.leave();
            self.events.extend(room.drain_events());
            if let Some(transport) = self.transport.as_mut() {
                let now = self.epoch.elapsed();
                room.poll_transmit(now, &mut |link, channel, packet| {
                    transport.send(link, channel, packet);
                });
            }
        }
        if let Some(transport) = self.transport.take() {
            self.lingering.push(Lingering {
                transport,
                #[cfg(all(feature = "server", not(target_arch = "wasm32")))]
                _server: self.server.take(),
                until: self.now() + linger,
            });
        }
        self.room = None;
        self.room_name = None;
        self.phase = Phase::Offline;
    }
}

fn error(world: &mut World, peer: Option<PeerId>, error: PeerErrorKind) {
    let e = PeerError { peer, error };
    warn!("{e}");
    world.write_message(e);
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
        RoomEvent::Reconnected { peer } => {
            world.write_message(PeerReconnected {
                peer,
                downtime: Duration::ZERO,
            });
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
                // The room is the host's: without it, we leave too.
                let linger = world.resource::<PeerMessageSettings>().linger;
                net.close(linger);
            }
        }
        RoomEvent::Error { peer, error: e } => {
            // Only the host sends RoomFull: a join it refuses is over.
            let refused =
                e == PeerErrorKind::RoomFull && matches!(net.phase, Phase::Joining { .. });
            error(world, peer, e);
            if refused {
                let linger = world.resource::<PeerMessageSettings>().linger;
                net.close(linger);
            }
        }
    }
}

/// `PreUpdate`: links, packets, events, timeouts, state, stats.
pub(crate) fn receive(world: &mut World) {
    world.resource_scope(|world, mut net: Mut<PeerNetwork>| {
        let net = &mut *net;
        let now = net.now();
        if let (Some(transport), Some(room)) = (net.transport.as_mut(), net.room.as_mut()) {
            transport.poll_links(|change| match change {
                LinkChange::Up(link) => room.link_up(link),
                LinkChange::Down(link) => room.link_down(link),
            });
            transport.receive(|link, _channel, packet| room.on_packet(link, packet, now));
        }
        apply_events(world, net);

        // The socket's loop ended: signaling unreachable, or lost with nobody connected.
        let ended = net.transport.as_mut().and_then(|t| t.ended().cloned());
        if let Some(result) = ended {
            let reason = result.err().unwrap_or_else(|| "socket closed".into());
            error(world, None, PeerErrorKind::Signaling(reason));
            let linger = world.resource::<PeerMessageSettings>().linger;
            net.close(linger);
            apply_events(world, net);
        }

        if let Phase::Joining { since } = net.phase {
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

        update_stats(world, net);
        let state = net.state();
        if *world.resource::<State<ConnectionState>>().get() != state {
            world
                .resource_mut::<NextState<ConnectionState>>()
                .set(state);
        }
    });
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
        let s = session.stats();
        let fresh = PeerStats {
            rtt: s.rtt,
            jitter: s.jitter,
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out,
            packets_in: s.packets_in,
            packets_out: s.packets_out,
            resent: s.resent,
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
        for command in std::mem::take(&mut net.commands) {
            let result = match command {
                Command::Host(room) => net.open(world, Role::Host, room),
                Command::Join(room) => net.open(world, Role::Joiner, room),
                Command::Leave => {
                    let linger = world.resource::<PeerMessageSettings>().linger;
                    net.close(linger);
                    #[cfg(all(feature = "server", not(target_arch = "wasm32")))]
                    world.remove_resource::<crate::server::SignalingServerInfo>();
                    Ok(())
                }
            };
            if let Err(e) = result {
                error(world, None, e);
            }
        }
        apply_events(world, net);

        let now = net.now();
        if let (Some(transport), Some(room)) = (net.transport.as_mut(), net.room.as_mut()) {
            room.poll_transmit(now, &mut |link, channel, packet| {
                transport.send(link, channel, packet);
            });
        }
        net.lingering.retain_mut(|l| {
            if now < l.until && l.transport.ended().is_none() {
                return true;
            }
            l.transport.close();
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
