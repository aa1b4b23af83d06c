//! What every test of the Bevy side needs, in memory (`tests/memory.rs`) or over real WebRTC
//! (`tests/webrtc/`): recorders of the messages an app sees, its `PeerMessage`, its state.
//! Each test binary uses a part of it.
#![allow(dead_code)]

#[cfg(feature = "replicon")]
pub mod replicon;

use bevy::prelude::*;
use bevy_peer_message::prelude::*;
use serde::{Deserialize, Serialize};

/// A numbered reliable message.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct Numbered(pub u32);

/// Every message of type `M` an app received, in order.
#[derive(Resource)]
pub struct Inbox<M: Send + Sync + 'static>(pub Vec<M>);

impl<M: Send + Sync + 'static> Default for Inbox<M> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

fn collect<M: Message + Clone>(mut reader: MessageReader<M>, mut inbox: ResMut<Inbox<M>>) {
    inbox.0.extend(reader.read().cloned());
}

/// Records every `M` message the app sees into `Inbox<M>` (if `M` is registered at all).
pub fn record<M: Message + Clone>(app: &mut App) {
    if !app.world().contains_resource::<Messages<M>>() {
        return;
    }
    app.init_resource::<Inbox<M>>()
        .add_systems(Update, collect::<M>);
}

/// Records the lifecycle messages: connected, disconnected, reconnecting, reconnected, errors.
pub fn record_lifecycle(app: &mut App) {
    record::<PeerConnected>(app);
    record::<PeerDisconnected>(app);
    record::<PeerReconnecting>(app);
    record::<PeerReconnected>(app);
    record::<PeerError>(app);
    record::<HostMigrated>(app);
}

/// The messages of type `M` an app has recorded.
pub fn inbox<M: Send + Sync + Clone + 'static>(app: &App) -> Vec<M> {
    app.world().resource::<Inbox<M>>().0.clone()
}

/// The numbers of the [`Numbered`] messages an app received, in order.
pub fn numbers(app: &App) -> Vec<u32> {
    inbox::<Received<Numbered>>(app)
        .iter()
        .map(|r| r.message.0)
        .collect()
}

/// Fails if any of `apps` was told of an error.
pub fn assert_no_errors(apps: &[&App]) {
    for (i, app) in apps.iter().enumerate() {
        let errors = inbox::<PeerError>(app);
        assert!(errors.is_empty(), "app {i}: {errors:?}");
    }
}

/// Runs a closure with the app's [`PeerMessage`] parameter.
pub fn net<R>(app: &mut App, f: impl FnOnce(&mut PeerMessage) -> R) -> R {
    let world = app.world_mut();
    let mut state = bevy::ecs::system::SystemState::<PeerMessage>::new(world);
    let mut param = state.get_mut(world).expect("PeerMessage is available");
    let r = f(&mut param);
    state.apply(world);
    r
}

/// The app's connection state.
pub fn state(app: &App) -> ConnectionState {
    *app.world().resource::<State<ConnectionState>>().get()
}

/// The identity of test app number `n` (the same in every run, so tests can name peers).
pub fn identity(n: u128) -> Identity {
    bevy_peer_message::internals::testing::key(n)
}

/// The peer id of test app number `n`.
pub fn pid(n: u128) -> PeerId {
    identity(n).peer_id()
}
