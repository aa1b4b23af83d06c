//! The message registry: [`PeerMessageAppExt::add_peer_message`] gives each serde type a wire
//! id and a [`Delivery`], and [`Received<T>`] is how a received value reaches the game.

use crate::core::{
    codec::{self, CodecError},
    error::PeerErrorKind,
    peer::PeerId,
    room::{RelayFilter, RelayView},
    wire::Delivery,
};
use bevy::{platform::collections::HashMap, prelude::*};
use serde::{Serialize, de::DeserializeOwned};
use std::{any::TypeId, sync::Arc};

/// What a type needs to be sent to peers: serde both ways, and thread-safe.
pub trait PeerMessageType: Serialize + DeserializeOwned + Send + Sync + 'static {}
impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> PeerMessageType for T {}

/// A value of type `T` received from a peer. Written in [`PreUpdate`]
/// ([`PeerMessageSet::Receive`](crate::PeerMessageSet)), readable in the same frame's
/// [`Update`] with a `MessageReader<Received<T>>`.
#[derive(Message, Debug, Clone, PartialEq)]
pub struct Received<T: Send + Sync + 'static> {
    /// The sender.
    pub from: PeerId,
    /// The value.
    pub message: T,
}

/// A message a star room's host relays from one joiner to others, as the game's filter sees it
/// (see [`PeerMessageAppExt::filter_relayed`]).
#[derive(Debug, Clone, Copy)]
pub struct Relayed<'a, T> {
    /// The joiner that sent it.
    pub from: PeerId,
    /// The joiner it is for; `None`: every joiner (the host itself gets its own copy as a
    /// [`Received<T>`], whatever the filter says).
    pub to: Option<PeerId>,
    /// The value.
    pub message: &'a T,
}

pub(crate) type DeliverFn = fn(&mut World, PeerId, &[u8], usize) -> Result<(), CodecError>;

/// A filter on one type's relayed messages: decodes (bounded by the size given) and decides.
type FilterFn = Arc<dyn Fn(&RelayView<'_>, usize) -> Result<bool, PeerErrorKind> + Send + Sync>;

/// The game's relay filters, by wire id.
#[derive(Default, Clone)]
struct RelayFilters(HashMap<u32, FilterFn>);

impl std::fmt::Debug for RelayFilters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

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
    filters: RelayFilters,
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
    pub(crate) fn wire_kinds(&self) -> std::collections::HashMap<u32, Delivery> {
        self.by_kind.iter().map(|(k, e)| (*k, e.delivery)).collect()
    }

    pub(crate) fn entry(&self, kind: u32) -> Option<&Entry> {
        self.by_kind.get(&kind)
    }

    /// The core's filter for a star host, from the game's filters (none: relay everything).
    /// Relayed payloads decode within `max` bytes.
    pub(crate) fn relay_filter(&self, max: usize) -> Option<RelayFilter> {
        if self.filters.0.is_empty() {
            return None;
        }
        let filters = self.filters.clone();
        Some(RelayFilter(Arc::new(
            move |view: &RelayView<'_>| match filters.0.get(&view.kind) {
                Some(filter) => filter(view, max),
                None => Ok(true),
            },
        )))
    }

    fn add_filter<T: PeerMessageType>(
        &mut self,
        filter: impl Fn(&Relayed<'_, T>) -> bool + Send + Sync + 'static,
    ) {
        let Some(&kind) = self.by_type.get(&TypeId::of::<T>()) else {
            panic!(
                "bevy_peer_message: filter_relayed::<{}> before add_peer_message::<{0}>",
                std::any::type_name::<T>()
            );
        };
        let filter = move |view: &RelayView<'_>, max: usize| {
            let message: T = codec::decode_bounded(view.payload, max).map_err(|error| {
                PeerErrorKind::Decode {
                    type_name: std::any::type_name::<T>(),
                    error,
                }
            })?;
            Ok(filter(&Relayed {
                from: view.from,
                to: view.to,
                message: &message,
            }))
        };
        self.filters.0.insert(kind, Arc::new(filter));
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
        if kind == crate::core::room::CONTROL_KIND {
            panic!(
                "bevy_peer_message: message name {name:?} hashes to the id reserved for the \
                 room's own messages; register it with add_peer_message_named and another name"
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

    /// Star host ([`Topology::Star`](crate::Topology)): `filter` sees every `T` one joiner
    /// sends another (or everyone) before the host relays it, and says whether it goes on
    /// (`true`) or is dropped (`false`: its receivers never see it, its sender is not told).
    /// A relayed `T` that does not decode drops its sender with a [`PeerError`](crate::PeerError).
    /// Types without a filter are relayed without being decoded. Register `T` first.
    ///
    /// ```
    /// use bevy::prelude::*;
    /// use bevy_peer_message::prelude::*;
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize, Deserialize)]
    /// struct Chat(String);
    ///
    /// App::new()
    ///     .add_plugins(PeerMessagePlugin::default().topology(Topology::Star))
    ///     .add_peer_message::<Chat>(Delivery::Reliable)
    ///     // Whispers stay short; shouting at everyone is the host's privilege.
    ///     .filter_relayed::<Chat>(|r: &Relayed<Chat>| r.to.is_some() && r.message.0.len() < 200);
    /// ```
    fn filter_relayed<T: PeerMessageType>(
        &mut self,
        filter: impl Fn(&Relayed<'_, T>) -> bool + Send + Sync + 'static,
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

    fn filter_relayed<T: PeerMessageType>(
        &mut self,
        filter: impl Fn(&Relayed<'_, T>) -> bool + Send + Sync + 'static,
    ) -> &mut Self {
        self.init_resource::<MessageRegistry>();
        self.world_mut()
            .resource_mut::<MessageRegistry>()
            .add_filter(filter);
        self
    }
}
