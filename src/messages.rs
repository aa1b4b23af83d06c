//! Typed messages: registration ([`PeerMessageAppExt::add_peer_message`]), the
//! [`Received<T>`] Bevy message, and the [`PeerMessage`] system parameter that hosts, joins,
//! leaves and sends.

use crate::{
    codec::{self, CodecError},
    config::PeerMessageSettings,
    error::{PeerErrorKind, SendError},
    events::PeerError,
    network::PeerNetwork,
    peer::{PeerId, Role},
    room::WireDelivery,
    session::Stats,
};
use bevy::{ecs::system::SystemParam, platform::collections::HashMap, prelude::*};
use serde::{Serialize, de::DeserializeOwned};
use std::any::TypeId;

/// How a message type travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// Exactly once, in order, across reconnects; large messages are fragmented. Chat, commands,
    /// game events.
    Reliable,
    /// At most once, in any order, never resent; one packet at most. Fire-and-forget effects.
    Unreliable,
    /// Like `Unreliable`, but anything older than the newest delivered of the same type is
    /// dropped. Positions and other state that the next update replaces.
    UnreliableSequenced,
}

impl Delivery {
    fn wire(self) -> WireDelivery {
        match self {
            Delivery::Reliable => WireDelivery::Reliable,
            Delivery::Unreliable => WireDelivery::Unreliable,
            Delivery::UnreliableSequenced => WireDelivery::Sequenced,
        }
    }
    fn code(self) -> u8 {
        match self {
            Delivery::Reliable => 0,
            Delivery::Unreliable => 1,
            Delivery::UnreliableSequenced => 2,
        }
    }
}

/// What a type needs to be sent to peers: serde both ways, and thread-safe.
pub trait PeerMessageType: Serialize + DeserializeOwned + Send + Sync + 'static {}
impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> PeerMessageType for T {}

/// A value of type `T` received from a peer. Written in [`PreUpdate`]
/// ([`PeerMessageSet::Receive`](crate::plugin::PeerMessageSet)), readable in the same frame's
/// [`Update`] with a `MessageReader<Received<T>>`.
#[derive(Message, Debug, Clone, PartialEq)]
pub struct Received<T: Send + Sync + 'static> {
    /// The sender.
    pub from: PeerId,
    /// The value.
    pub message: T,
}

pub(crate) type DeliverFn = fn(&mut World, PeerId, &[u8], usize) -> Result<(), CodecError>;

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub name: String,
    pub delivery: Delivery,
    pub type_name: &'static str,
    pub deliver: DeliverFn,
}

/// Every registered message type, by wire id and by Rust type.
#[derive(Resource, Debug, Default)]
pub struct MessageRegistry {
    by_kind: HashMap<u32, Entry>,
    by_type: HashMap<TypeId, u32>,
}

impl MessageRegistry {
    /// Hash of every registered name and delivery. Peers must agree on it to talk.
    pub fn protocol_hash(&self) -> u64 {
        let mut entries: Vec<&Entry> = self.by_kind.values().collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let codes: Vec<[u8; 1]> = entries.iter().map(|e| [e.delivery.code()]).collect();
        codec::hash64(
            entries
                .iter()
                .zip(&codes)
                .flat_map(|(e, c)| [e.name.as_bytes(), c.as_slice()]),
        )
    }

    /// The wire id and delivery of `T`, if registered.
    pub fn lookup<T: 'static>(&self) -> Option<(u32, Delivery)> {
        let kind = *self.by_type.get(&TypeId::of::<T>())?;
        self.by_kind.get(&kind).map(|e| (kind, e.delivery))
    }

    /// Every registered kind with how it travels.
    pub(crate) fn wire_kinds(&self) -> std::collections::HashMap<u32, WireDelivery> {
        self.by_kind
            .iter()
            .map(|(k, e)| (*k, e.delivery.wire()))
            .collect()
    }

    pub(crate) fn entry(&self, kind: u32) -> Option<&Entry> {
        self.by_kind.get(&kind)
    }

    fn register<T: PeerMessageType>(&mut self, name: String, delivery: Delivery) {
        let kind = codec::type_id_of(&name);
        if let Some(&existing) = self.by_type.get(&TypeId::of::<T>()) {
            panic!(
                "bevy_peer_message: {} registered twice (as {:?})",
                std::any::type_name::<T>(),
                self.by_kind.get(&existing).map(|e| &e.name)
            );
        }
        if let Some(other) = self.by_kind.get(&kind) {
            panic!(
                "bevy_peer_message: message names {name:?} and {:?} hash to the same id; \
                 register one of them with add_peer_message_named and another name",
                other.name
            );
        }
        self.by_type.insert(TypeId::of::<T>(), kind);
        self.by_kind.insert(
            kind,
            Entry {
                name,
                delivery,
                type_name: std::any::type_name::<T>(),
                deliver: deliver::<T>,
            },
        );
    }
}

fn deliver<T: PeerMessageType>(
    world: &mut World,
    from: PeerId,
    payload: &[u8],
    max: usize,
) -> Result<(), CodecError> {
    let message: T = codec::decode_bounded(payload, max)?;
    world.write_message(Received { from, message });
    Ok(())
}

/// Registers message types on the [`App`].
pub trait PeerMessageAppExt {
    /// Registers `T`, named by its Rust type path (`std::any::type_name`), which is the same on
    /// native and wasm builds of the same code. Adds the [`Received<T>`] message.
    ///
    /// Every peer must register the same types with the same deliveries (the handshake checks).
    ///
    /// Large byte buffers: serde writes a plain `Vec<u8>` as a sequence of `u8`s, which costs
    /// ~165 µs per 64 KiB through bincode (`cargo bench --bench codec`); mark such fields
    /// `#[serde(with = "serde_bytes")]` (the `serde_bytes` crate) to have them copied whole.
    fn add_peer_message<T: PeerMessageType>(&mut self, delivery: Delivery) -> &mut Self;

    /// Registers `T` under an explicit `name`: stable even if the type is renamed or moved, and
    /// shared with peers whose type lives elsewhere.
    fn add_peer_message_named<T: PeerMessageType>(
        &mut self,
        name: &str,
        delivery: Delivery,
    ) -> &mut Self;
}

impl PeerMessageAppExt for App {
    fn add_peer_message<T: PeerMessageType>(&mut self, delivery: Delivery) -> &mut Self {
        self.add_peer_message_named::<T>(std::any::type_name::<T>(), delivery)
    }

    fn add_peer_message_named<T: PeerMessageType>(
        &mut self,
        name: &str,
        delivery: Delivery,
    ) -> &mut Self {
        self.init_resource::<MessageRegistry>();
        self.world_mut()
            .resource_mut::<MessageRegistry>()
            .register::<T>(name.to_owned(), delivery);
        self.add_message::<Received<T>>();
        self
    }
}

/// The one system parameter a game needs: host, join, leave, send, and who is here.
///
/// Sends are queued and leave in this frame's [`PostUpdate`]
/// ([`PeerMessageSet::Send`](crate::plugin::PeerMessageSet)). The plain methods never fail
/// loudly: a refused send becomes a [`PeerError`] message. The `try_` methods return the
/// [`SendError`] instead.
///
/// ```
/// # use bevy::prelude::*;
/// # use bevy_peer_message::prelude::*;
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Chat(String);
/// fn greet(mut joined: MessageReader<PeerConnected>, mut net: PeerMessage) {
///     for event in joined.read() {
///         net.send(event.peer, Chat("welcome".into()));
///     }
/// }
/// # bevy::ecs::system::assert_is_system(greet);
/// ```
#[derive(SystemParam)]
pub struct PeerMessage<'w> {
    net: ResMut<'w, PeerNetwork>,
    registry: Res<'w, MessageRegistry>,
    settings: Res<'w, PeerMessageSettings>,
    errors: MessageWriter<'w, PeerError>,
}

impl PeerMessage<'_> {
    /// Opens `room` as its host (with the default settings on native, starting the embedded
    /// signaling server). Takes effect in this frame's [`PostUpdate`].
    pub fn host(&mut self, room: impl Into<String>) {
        self.net.queue_host(room.into());
    }

    /// Joins `room`, whose host must appear within `join_timeout`.
    pub fn join(&mut self, room: impl Into<String>) {
        self.net.queue_join(room.into());
    }

    /// Leaves the room: every peer is told at once (they see
    /// [`DisconnectReason::Left`](crate::room::DisconnectReason)), and this app goes
    /// [`Offline`](crate::events::ConnectionState::Offline).
    pub fn leave(&mut self) {
        self.net.queue_leave();
    }

    /// Drops every packet from peers for `duration`, as if the network went away (see
    /// [`crate::conditioner`]): rehearse reconnects without root. Works with or without a
    /// configured [`LinkConditioner`](crate::conditioner::LinkConditioner).
    pub fn simulate_blackout(&mut self, duration: std::time::Duration) {
        self.net.queue_blackout(duration);
    }

    /// Our stable id.
    pub fn id(&self) -> PeerId {
        self.settings.peer_id
    }

    /// Our role while in a room.
    pub fn role(&self) -> Option<Role> {
        self.net.role()
    }

    /// The room we are in (or connecting to).
    pub fn room(&self) -> Option<&str> {
        self.net.room_name()
    }

    /// The host, once a joiner is connected to it (our own id on a host).
    pub fn host_id(&self) -> Option<PeerId> {
        match self.net.role() {
            Some(Role::Host) => Some(self.settings.peer_id),
            _ => self.net.room().and_then(|r| r.host()),
        }
    }

    /// The connected peers.
    pub fn peers(&self) -> impl Iterator<Item = (PeerId, Role)> + '_ {
        self.net.room().into_iter().flat_map(|r| r.peers())
    }

    /// Live figures for a peer.
    pub fn stats(&self, peer: PeerId) -> Option<&Stats> {
        self.net
            .room()
            .and_then(|r| r.session(peer))
            .map(|s| s.stats())
    }

    /// Sends `message` to `peer`. A refusal is reported as a [`PeerError`].
    pub fn send<M: PeerMessageType>(&mut self, peer: PeerId, message: M) {
        if let Err(e) = self.try_send(peer, &message) {
            self.report(Some(peer), e);
        }
    }

    /// Sends `message` to `peer`, or says why not.
    pub fn try_send<M: PeerMessageType>(
        &mut self,
        peer: PeerId,
        message: &M,
    ) -> Result<(), SendError> {
        let (kind, delivery) = self.encode(message)?;
        self.net.send_encoded(peer, kind, delivery.wire())
    }

    /// Sends `message` to every connected peer, once each (encoded once).
    pub fn broadcast<M: PeerMessageType>(&mut self, message: M) {
        let mut failed = Vec::new();
        match self.encode(&message) {
            Ok((kind, delivery)) => {
                self.net
                    .broadcast_encoded(kind, delivery.wire(), &mut |p, e| failed.push((Some(p), e)))
            }
            Err(e) => failed.push((None, e)),
        }
        for (peer, e) in failed {
            self.report(peer, e);
        }
    }

    /// Sends `message` to every connected peer; the first refusal, if any, after trying all.
    pub fn try_broadcast<M: PeerMessageType>(&mut self, message: &M) -> Result<(), SendError> {
        let (kind, delivery) = self.encode(message)?;
        let mut first = None;
        self.net
            .broadcast_encoded(kind, delivery.wire(), &mut |_, e| {
                first.get_or_insert(e);
            });
        first.map_or(Ok(()), Err)
    }

    /// Sends `message` to the host (a joiner's shortcut).
    pub fn send_to_host<M: PeerMessageType>(&mut self, message: M) {
        if let Err(e) = self.try_send_to_host(&message) {
            self.report(None, e);
        }
    }

    /// Sends `message` to the host, or says why not.
    pub fn try_send_to_host<M: PeerMessageType>(&mut self, message: &M) -> Result<(), SendError> {
        let host = self
            .net
            .room()
            .filter(|r| r.local().role == Role::Joiner)
            .and_then(|r| r.host())
            .ok_or(SendError::NoHost)?;
        self.try_send(host, message)
    }

    fn encode<M: PeerMessageType>(&mut self, message: &M) -> Result<(u32, Delivery), SendError> {
        let (kind, delivery) = self
            .registry
            .lookup::<M>()
            .ok_or(SendError::Unregistered(std::any::type_name::<M>()))?;
        self.net.encode(message)?;
        Ok((kind, delivery))
    }

    fn report(&mut self, peer: Option<PeerId>, error: SendError) {
        warn!("send refused: {error}");
        self.errors.write(PeerError {
            peer,
            error: PeerErrorKind::Send(error),
        });
    }
}
