//! The box game, server-authoritative with bevy_replicon: the host owns the world and moves
//! every player's box; joiners send only their input and see the boxes replicon replicates.
//! This crate is replicon's messaging backend ([`RepliconPeerMessagePlugin`]): the host is the
//! server, joiners are its clients, and a joiner whose Wi-Fi blips stays connected in
//! replicon's eyes (no despawn, no re-replication; its inputs and the world's changes resume).
//!
//! ```text
//! cargo run --example replicon_boxes --features box_game,replicon -- host [ROOM]
//! cargo run --example replicon_boxes --features box_game,replicon -- join [ROOM] --signal ws://ADDR:3536
//! ```
//!
//! Options: `--auto` steers by itself (demos and tests). Keys: arrows or WASD. On the web
//! (`DEMO_EXAMPLE=replicon_boxes tests/web-demo`) the page's query string holds the same
//! choices, e.g. `index.html?join&room=arena&signal=ws://127.0.0.1:3536&auto`.
//!
//! What the game reacts to is logged (`replicon_boxes: ...`), which the demo scripts read.

use bevy::prelude::*;
use bevy_peer_message::{RepliconPeerMessagePlugin, prelude::*};
use bevy_replicon::prelude::*;
use serde::{Deserialize, Serialize};

#[path = "shared/options.rs"]
mod options;
use options::{Options, enter_room, hud_text, key_direction};

/// A player's box, replicated from the host: whose it is.
#[derive(Component, Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[require(Replicated)]
struct Player {
    owner: PeerId,
}

/// Where a box is, replicated from the host (it moves them all).
#[derive(Component, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Default)]
struct BoxPosition(Vec2);

/// A joiner's input, sent to the host every frame (unreliable: only the newest matters).
#[derive(Message, Serialize, Deserialize, Clone, Copy, Debug, Default)]
struct Steer(Vec2);

/// The host's latest input per player (the host's own included).
#[derive(Component, Default)]
struct Steering(Vec2);

/// The text in the corner.
#[derive(Component)]
struct Hud;

/// How many changes of others' boxes this app has seen (logged now and then, for the demos).
#[derive(Resource, Default)]
struct Seen(u64);

const BOX: f32 = 48.0;
const SPEED: f32 = 240.0;

fn main() {
    let options = Options::or_exit("replicon_boxes");
    App::new()
        .add_plugins(DefaultPlugins.set(options.window("replicon_boxes")))
        .add_plugins((RepliconPlugins, options.plugin(), RepliconPeerMessagePlugin))
        .add_plugins(PeerMessageDiagnosticsPlugin)
        .replicate::<Player>()
        .replicate::<BoxPosition>()
        .add_client_message::<Steer>(Channel::Unreliable)
        .insert_resource(options)
        .init_resource::<Seen>()
        .add_observer(spawn_client_box)
        .add_observer(despawn_client_box)
        .add_observer(draw_box)
        .add_systems(Startup, setup)
        .add_systems(OnEnter(ServerState::Running), spawn_own_box)
        .add_systems(OnExit(ClientState::Connected), forget_boxes)
        .add_systems(
            Update,
            (
                steer_own.run_if(in_state(ServerState::Running)),
                take_steering.run_if(in_state(ServerState::Running)),
                send_steering.run_if(in_state(ClientState::Connected)),
                move_boxes.run_if(in_state(ServerState::Running)),
                (show_boxes, log_changes, hud),
            )
                .chain(),
        )
        .add_systems(Update, log_states)
        .run();
}

fn setup(mut commands: Commands, options: Res<Options>, mut net: PeerMessage) {
    commands.spawn(Camera2d);
    commands.spawn((Hud, hud_text()));
    enter_room(&options, &mut net, "replicon_boxes");
}

/// Server: the host plays too.
fn spawn_own_box(mut commands: Commands, net: PeerMessage) {
    commands.spawn((
        Player { owner: net.id() },
        BoxPosition::default(),
        Steering::default(),
    ));
}

/// Client: the server is gone (or replaced by a restarted host): its world goes with it.
fn forget_boxes(boxes: Query<Entity, With<Player>>, mut commands: Commands) {
    for entity in &boxes {
        commands.entity(entity).despawn();
    }
}

/// Server: a client's box appears with it. Its entity is the peer's (see `Peer`).
fn spawn_client_box(added: On<Add<ConnectedClient>>, peers: Query<&Peer>, mut commands: Commands) {
    if let Ok(peer) = peers.get(added.entity) {
        info!(
            "replicon_boxes: connected {} (client {})",
            peer.id, added.entity
        );
        commands.spawn((
            Player { owner: peer.id },
            BoxPosition::default(),
            Steering::default(),
        ));
    }
}

/// Server: and goes with it (a reconnect keeps it: replicon sees no disconnect then).
fn despawn_client_box(
    removed: On<Remove<ConnectedClient>>,
    peers: Query<&Peer>,
    boxes: Query<(Entity, &Player)>,
    mut commands: Commands,
) {
    let Ok(peer) = peers.get(removed.entity) else {
        return;
    };
    info!("replicon_boxes: disconnected {}", peer.id);
    for (entity, player) in &boxes {
        if player.owner == peer.id {
            commands.entity(entity).despawn();
        }
    }
}

/// Every app: a sprite for each box, as it is spawned locally or replicated.
fn draw_box(added: On<Add<Player>>, players: Query<&Player>, mut commands: Commands) {
    if let Ok(player) = players.get(added.entity) {
        let hue = (player.owner.0 % 360) as f32;
        commands.entity(added.entity).insert((
            Sprite::from_color(Color::hsl(hue, 0.7, 0.55), Vec2::splat(BOX)),
            Transform::default(),
        ));
    }
}

/// This app's input: keys, or a circle with `--auto`.
fn input(keys: &ButtonInput<KeyCode>, time: &Time, options: &Options) -> Vec2 {
    if options.auto {
        let t = time.elapsed_secs() * if options.host { 1.0 } else { -1.3 };
        return Vec2::new(-t.sin(), t.cos());
    }
    key_direction(keys)
}

/// Server: the host steers its own box directly.
fn steer_own(
    keys: Res<ButtonInput<KeyCode>>,
    time: Res<Time>,
    options: Res<Options>,
    net: PeerMessage,
    mut boxes: Query<(&Player, &mut Steering)>,
) {
    for (player, mut steering) in &mut boxes {
        if player.owner == net.id() {
            steering.0 = input(&keys, &time, &options);
        }
    }
}

/// Client: the joiner's input goes to the host.
fn send_steering(
    keys: Res<ButtonInput<KeyCode>>,
    time: Res<Time>,
    options: Res<Options>,
    mut steer: MessageWriter<Steer>,
) {
    steer.write(Steer(input(&keys, &time, &options)));
}

/// Server: clients' inputs, applied to their boxes (a client's entity is its peer's).
fn take_steering(
    mut steers: MessageReader<FromClient<Steer>>,
    peers: Query<&Peer>,
    mut boxes: Query<(&Player, &mut Steering)>,
) {
    for steer in steers.read() {
        let Some(peer) = steer.client_id.entity().and_then(|e| peers.get(e).ok()) else {
            continue;
        };
        // A lying client cannot go faster than the others.
        let direction = steer.message.0.clamp_length_max(1.0);
        for (player, mut steering) in &mut boxes {
            if player.owner == peer.id {
                steering.0 = if direction.is_finite() {
                    direction
                } else {
                    Vec2::ZERO
                };
            }
        }
    }
}

/// Server: the world moves.
fn move_boxes(time: Res<Time>, mut boxes: Query<(&Steering, &mut BoxPosition)>) {
    for (steering, mut position) in &mut boxes {
        let next = position.0 + steering.0 * SPEED * time.delta_secs();
        let next = next.clamp(Vec2::new(-380.0, -280.0), Vec2::new(380.0, 280.0));
        if next != position.0 {
            position.0 = next;
        }
    }
}

/// Every app: sprites follow the (replicated) positions.
fn show_boxes(mut boxes: Query<(&BoxPosition, &mut Transform), Changed<BoxPosition>>) {
    for (position, mut transform) in &mut boxes {
        transform.translation = position.0.extend(0.0);
    }
}

/// Logs others' boxes moving: the first change and every 120th (the demos wait for it).
fn log_changes(
    net: PeerMessage,
    mut seen: ResMut<Seen>,
    boxes: Query<(&Player, &BoxPosition), Changed<BoxPosition>>,
) {
    for (player, position) in &boxes {
        if player.owner == net.id() {
            continue;
        }
        seen.0 += 1;
        if seen.0 == 1 || seen.0.is_multiple_of(120) {
            info!(
                "replicon_boxes: position from {}: ({:.0}, {:.0}), {} changes seen",
                player.owner, position.0.x, position.0.y, seen.0
            );
        }
    }
}

fn log_states(
    mut client: MessageReader<StateTransitionEvent<ClientState>>,
    mut server: MessageReader<StateTransitionEvent<ServerState>>,
    mut back: MessageReader<PeerReconnected>,
    mut away: MessageReader<PeerReconnecting>,
) {
    for t in client.read() {
        info!("replicon_boxes: client {:?} -> {:?}", t.exited, t.entered);
        if t.entered == Some(ClientState::Connected) {
            info!("replicon_boxes: connected to the host");
        }
    }
    for t in server.read() {
        info!("replicon_boxes: server {:?} -> {:?}", t.exited, t.entered);
    }
    for e in away.read() {
        info!("replicon_boxes: reconnecting {}", e.peer);
    }
    for e in back.read() {
        info!(
            "replicon_boxes: reconnected {} after {:?}",
            e.peer, e.downtime
        );
    }
}

fn hud(
    net: PeerMessage,
    client: Res<State<ClientState>>,
    server: Res<State<ServerState>>,
    stats: Res<ClientStats>,
    clients: Query<(&Peer, &ConnectedClientStats)>,
    boxes: Query<(), With<Player>>,
    mut text: Query<&mut Text, With<Hud>>,
) {
    let Ok(mut text) = text.single_mut() else {
        return;
    };
    let mut lines = vec![
        format!(
            "room {:?} - me {} ({})",
            net.room().unwrap_or("-"),
            net.id(),
            net.role().map_or("-".into(), |r| r.to_string()),
        ),
        format!(
            "replicon: server {:?}, client {:?} - {} boxes",
            server.get(),
            client.get(),
            boxes.iter().count()
        ),
    ];
    if *client.get() == ClientState::Connected {
        lines.push(format!(
            "host - rtt {:.1} ms - loss {:.1} % - {:.1} KiB/s in, {:.1} KiB/s out",
            stats.rtt * 1e3,
            stats.packet_loss,
            stats.received_bps / 1024.0,
            stats.sent_bps / 1024.0
        ));
    }
    let mut rows: Vec<_> = clients.iter().collect();
    rows.sort_by_key(|(peer, _)| peer.id);
    for (peer, stats) in rows {
        lines.push(format!(
            "client {} - rtt {:.1} ms - loss {:.1} % - {:.1} KiB/s out",
            peer.id,
            stats.rtt * 1e3,
            stats.packet_loss,
            stats.sent_bps / 1024.0
        ));
    }
    lines.push("arrows/WASD: move (the host moves every box)".into());
    let joined = lines.join("\n");
    if text.0 != joined {
        text.0 = joined;
    }
}
