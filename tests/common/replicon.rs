//! bevy_replicon on both sides of a test (feature `replicon`): replicated boxes the server
//! moves, a client message the server counts, and what the host saw of its clients. Shared by
//! the in-memory tests and the real-WebRTC ones.
#![allow(dead_code)]

use bevy::prelude::*;
use bevy_peer_message::RepliconPeerMessagePlugin;
use bevy_replicon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Replicated: which box (the same number on every app).
#[derive(Component, Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
pub struct Tag(pub u32);

/// Replicated: where it is; the server moves every box each frame.
#[derive(Component, Serialize, Deserialize, Clone, Copy, PartialEq, Debug)]
pub struct Position(pub i64);

/// A client's input: push box `n` (the server counts pushes in `Pushes`).
#[derive(Message, Serialize, Deserialize, Clone, Copy, Debug)]
pub struct Push(pub u32);

/// Server: every push received, in order.
#[derive(Resource, Default)]
pub struct Pushes(pub Vec<u32>);

/// Host: client entities whose `ConnectedClient` was removed.
#[derive(Resource, Default)]
pub struct ClientsRemoved(pub Vec<Entity>);

/// Adds replicon (its plugins, this crate's backend, the boxes, the pushes) to an app that has
/// `PeerMessagePlugin`, and finishes it (`App::run` would: replicon sets its channels up in
/// `finish`).
pub fn add_replicon(app: &mut App) {
    app.add_plugins(RepliconPlugins)
        .add_plugins(RepliconPeerMessagePlugin)
        .replicate::<Tag>()
        .replicate::<Position>()
        .add_client_message::<Push>(Channel::Ordered)
        .init_resource::<Pushes>()
        .init_resource::<ClientsRemoved>()
        .add_observer(
            |removed: On<Remove<ConnectedClient>>, mut log: ResMut<ClientsRemoved>| {
                log.0.push(removed.entity)
            },
        )
        .add_systems(
            Update,
            (move_boxes, take_pushes).run_if(in_state(ServerState::Running)),
        )
        // What games do: a client that lost its server forgets that server's world.
        .add_systems(OnExit(ClientState::Connected), forget_boxes);
    app.finish();
    app.cleanup();
}

pub fn move_boxes(mut boxes: Query<&mut Position>) {
    for mut p in &mut boxes {
        p.0 += 1;
    }
}

pub fn forget_boxes(boxes: Query<Entity, With<Tag>>, mut commands: Commands) {
    for entity in &boxes {
        commands.entity(entity).despawn();
    }
}

pub fn take_pushes(mut pushes: MessageReader<FromClient<Push>>, mut log: ResMut<Pushes>) {
    log.0.extend(pushes.read().map(|p| p.message.0));
}

/// Server: a new box.
pub fn spawn_box(app: &mut App, tag: u32) -> Entity {
    app.world_mut()
        .spawn((Replicated, Tag(tag), Position(0)))
        .id()
}

/// Every box an app has: tag → the positions of the entities with it (one, unless
/// duplicated).
pub fn boxes_of(app: &App) -> BTreeMap<u32, Vec<i64>> {
    let mut out: BTreeMap<u32, Vec<i64>> = BTreeMap::new();
    for entity in app.world().iter_entities() {
        if let (Some(tag), Some(pos)) = (entity.get::<Tag>(), entity.get::<Position>()) {
            out.entry(tag.0).or_default().push(pos.0);
        }
    }
    out
}

/// The app's replicon client state.
pub fn client_state(app: &App) -> ClientState {
    *app.world().resource::<State<ClientState>>().get()
}
