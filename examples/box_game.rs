//! A small networked game, native and in the browser: every player moves a box; positions go
//! `UnreliableSequenced` (only the newest counts), a "ping" goes `Reliable` and is answered with
//! a "pong". The window shows every player's box, the room, each peer's state and round trip.
//!
//! Native (graphical Bevy features are behind the `box_game` Cargo feature):
//!
//! ```text
//! cargo run --example box_game --features box_game -- host [ROOM]              # embedded signaling on :3536
//! cargo run --example box_game --features box_game -- join [ROOM] --signal ws://ADDR:3536
//! ```
//!
//! Options: `--auto` moves your box by itself (demos and tests). Keys: arrows or WASD move,
//! space sends a ping to everyone.
//!
//! In the browser (`tests/web-demo` builds the bundle into `target/web/box_game` and serves it):
//! the page's query string holds the same choices, e.g.
//! `index.html?host&room=arena&signal=ws://127.0.0.1:3536&auto`. A page cannot run a signaling
//! server, so a browser host needs one by URL (`cargo run --example signaling_server`, or a
//! native host's embedded one).
//!
//! Every event the game reacts to is also logged (`box_game: ...`, the browser console on the
//! web), which the browser test reads.

use bevy::prelude::*;
use bevy_peer_message::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

#[path = "shared/options.rs"]
mod options;
use options::{Options, enter_room, hud_text, key_direction};

/// Where a player's box is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
struct BoxPosition {
    x: f32,
    y: f32,
}

/// A short reliable message: "ping" is answered with "pong".
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Shout {
    text: String,
}

/// Our own box.
#[derive(Component)]
struct Mine;

/// Another player's box.
#[derive(Component)]
struct TheirBox;

/// The text in the corner.
#[derive(Component)]
struct Hud;

/// Per-peer game state the HUD shows.
#[derive(Resource, Default)]
struct Players {
    boxes: HashMap<PeerId, Entity>,
    away: HashSet<PeerId>,
    positions_received: HashMap<PeerId, u64>,
    last_shout: Option<String>,
}

const BOX: f32 = 48.0;
const SPEED: f32 = 240.0;

fn main() {
    let options = Options::or_exit("box_game");
    App::new()
        .add_plugins(DefaultPlugins.set(options.window("box_game")))
        .add_plugins((options.plugin(), PeerMessageDiagnosticsPlugin))
        .add_peer_message::<BoxPosition>(Delivery::UnreliableSequenced)
        .add_peer_message::<Shout>(Delivery::Reliable)
        .insert_resource(options)
        .init_resource::<Players>()
        .init_resource::<Graph>()
        .add_systems(Startup, (setup, setup_graph))
        .add_systems(
            Update,
            (
                (move_mine, send_position).chain(),
                (lifecycle, their_positions, shouts, hud).chain(),
                graph,
            ),
        )
        .run();
}

/// Samples kept in the live graph (one a frame).
const GRAPH_SAMPLES: usize = 120;
/// The graph's height in pixels.
const GRAPH_HEIGHT: f32 = 40.0;

/// The last frames' round trip and traffic, from the room's diagnostics.
#[derive(Resource, Default)]
struct Graph {
    rtt_ms: std::collections::VecDeque<f32>,
    kib_per_s: std::collections::VecDeque<f32>,
}

/// One bar of the graph: which series, which sample.
#[derive(Component)]
struct Bar {
    rtt: bool,
    index: usize,
}

/// The graph's caption.
#[derive(Component)]
struct GraphLabel;

/// Two rows of thin bars at the bottom left: round trip (top) and bytes per second both ways.
fn setup_graph(mut commands: Commands) {
    let row = |commands: &mut Commands, rtt: bool, color: Color| {
        commands
            .spawn(Node {
                height: Val::Px(GRAPH_HEIGHT),
                align_items: AlignItems::FlexEnd,
                ..default()
            })
            .with_children(|bars| {
                for index in 0..GRAPH_SAMPLES {
                    bars.spawn((
                        Bar { rtt, index },
                        Node {
                            width: Val::Px(2.0),
                            height: Val::Px(0.0),
                            ..default()
                        },
                        BackgroundColor(color),
                    ));
                }
            })
            .id()
    };
    let rtt = row(&mut commands, true, Color::srgb(0.4, 0.8, 1.0));
    let traffic = row(&mut commands, false, Color::srgb(1.0, 0.7, 0.3));
    let label = commands
        .spawn((
            GraphLabel,
            Text::new(""),
            TextFont {
                font_size: FontSize::Px(12.0),
                ..default()
            },
        ))
        .id();
    commands
        .spawn(Node {
            position_type: PositionType::Absolute,
            bottom: Val::Px(8.0),
            left: Val::Px(8.0),
            flex_direction: FlexDirection::Column,
            row_gap: Val::Px(4.0),
            ..default()
        })
        .add_children(&[label, rtt, traffic]);
}

/// Feeds the graph from the room's diagnostics and resizes its bars.
fn graph(
    store: Res<bevy::diagnostic::DiagnosticsStore>,
    mut graph: ResMut<Graph>,
    mut bars: Query<(&Bar, &mut Node)>,
    mut label: Query<&mut Text, With<GraphLabel>>,
) {
    type D = PeerMessageDiagnosticsPlugin;
    let value = |path| store.get(&path).and_then(|d| d.value()).unwrap_or(0.0) as f32;
    let rtt = value(D::RTT);
    let kib = (value(D::BYTES_IN) + value(D::BYTES_OUT)) / 1024.0;
    let graph = &mut *graph;
    for (series, sample) in [(&mut graph.rtt_ms, rtt), (&mut graph.kib_per_s, kib)] {
        series.push_back(sample);
        if series.len() > GRAPH_SAMPLES {
            series.pop_front();
        }
    }
    let max = |s: &std::collections::VecDeque<f32>| s.iter().copied().fold(1e-3, f32::max);
    let (rtt_max, kib_max) = (max(&graph.rtt_ms), max(&graph.kib_per_s));
    for (bar, mut node) in &mut bars {
        let (series, top) = if bar.rtt {
            (&graph.rtt_ms, rtt_max)
        } else {
            (&graph.kib_per_s, kib_max)
        };
        // The newest sample at the right.
        let offset = GRAPH_SAMPLES - series.len();
        let sample = bar
            .index
            .checked_sub(offset)
            .and_then(|i| series.get(i))
            .copied()
            .unwrap_or(0.0);
        let height = Val::Px(GRAPH_HEIGHT * sample / top);
        if node.height != height {
            node.height = height;
        }
    }
    if let Ok(mut text) = label.single_mut() {
        let caption = format!(
            "rtt {rtt:.1} ms (max {rtt_max:.1}) / traffic {kib:.1} KiB/s (max {kib_max:.1})"
        );
        if text.0 != caption {
            text.0 = caption;
        }
    }
}

fn color_of(peer: PeerId) -> Color {
    let hue = (peer.0 % 360) as f32;
    Color::hsl(hue, 0.7, 0.55)
}

fn setup(mut commands: Commands, options: Res<Options>, mut net: PeerMessage) {
    commands.spawn(Camera2d);
    commands.spawn((
        Mine,
        Sprite::from_color(color_of(net.id()), Vec2::splat(BOX)),
        Transform::from_xyz(0.0, 0.0, 1.0),
    ));
    commands.spawn((Hud, hud_text()));
    enter_room(&options, &mut net, "box_game");
}

fn move_mine(
    keys: Res<ButtonInput<KeyCode>>,
    time: Res<Time>,
    options: Res<Options>,
    mut mine: Query<&mut Transform, With<Mine>>,
) {
    let Ok(mut transform) = mine.single_mut() else {
        return;
    };
    if options.auto {
        let t = time.elapsed_secs() * if options.host { 1.0 } else { -1.3 };
        transform.translation.x = 160.0 * t.cos();
        transform.translation.y = 120.0 * t.sin();
        return;
    }
    let direction = key_direction(&keys);
    let moved = direction * SPEED * time.delta_secs();
    transform.translation += moved.extend(0.0);
    transform.translation.x = transform.translation.x.clamp(-380.0, 380.0);
    transform.translation.y = transform.translation.y.clamp(-280.0, 280.0);
}

/// Our position goes out every frame: sequenced, so a late packet never moves a box back, and
/// packed with whatever else this frame sends.
fn send_position(
    mine: Query<&Transform, With<Mine>>,
    keys: Res<ButtonInput<KeyCode>>,
    mut net: PeerMessage,
) {
    if let Ok(transform) = mine.single() {
        net.broadcast(BoxPosition {
            x: transform.translation.x,
            y: transform.translation.y,
        });
    }
    if keys.just_pressed(KeyCode::Space) {
        net.broadcast(Shout {
            text: "ping".into(),
        });
    }
}

type LifecycleReaders<'w, 's> = (
    MessageReader<'w, 's, PeerConnected>,
    MessageReader<'w, 's, PeerReconnecting>,
    MessageReader<'w, 's, PeerReconnected>,
    MessageReader<'w, 's, PeerDisconnected>,
    MessageReader<'w, 's, PeerError>,
    MessageReader<'w, 's, HostMigrated>,
);

fn lifecycle(
    (mut connected, mut away, mut back, mut gone, mut errors, mut migrated): LifecycleReaders,
    mut players: ResMut<Players>,
    mut commands: Commands,
) {
    for e in connected.read() {
        info!("box_game: connected {} ({})", e.peer, e.role);
        let entity = commands
            .spawn((
                TheirBox,
                Sprite::from_color(color_of(e.peer), Vec2::splat(BOX)),
                Transform::from_xyz(0.0, 0.0, 0.0),
                Visibility::Hidden,
            ))
            .id();
        players.boxes.insert(e.peer, entity);
    }
    for e in away.read() {
        info!("box_game: reconnecting {}", e.peer);
        players.away.insert(e.peer);
    }
    for e in back.read() {
        info!("box_game: reconnected {} after {:?}", e.peer, e.downtime);
        players.away.remove(&e.peer);
    }
    for e in gone.read() {
        info!("box_game: disconnected {} ({:?})", e.peer, e.reason);
        players.away.remove(&e.peer);
        players.positions_received.remove(&e.peer);
        if let Some(entity) = players.boxes.remove(&e.peer) {
            commands.entity(entity).despawn();
        }
    }
    for e in errors.read() {
        warn!("box_game: error {:?}: {}", e.peer, e.error);
    }
    // The host left or vanished and the room moved on: the boxes keep moving.
    for e in migrated.read() {
        info!("box_game: host is now {} (was {})", e.new, e.old);
    }
}

fn their_positions(
    mut positions: MessageReader<Received<BoxPosition>>,
    mut players: ResMut<Players>,
    mut boxes: Query<(&mut Transform, &mut Visibility), With<TheirBox>>,
) {
    for Received { from, message } in positions.read() {
        let count = players.positions_received.entry(*from).or_insert(0);
        *count += 1;
        // Logged on the first and then every 120th, so a test can see positions flow.
        if *count == 1 || count.is_multiple_of(120) {
            info!(
                "box_game: position from {from}: ({:.0}, {:.0}), {} received",
                message.x, message.y, count
            );
        }
        let Some(entity) = players.boxes.get(from).copied() else {
            continue;
        };
        if let Ok((mut transform, mut visibility)) = boxes.get_mut(entity) {
            transform.translation.x = message.x;
            transform.translation.y = message.y;
            *visibility = Visibility::Visible;
        }
    }
}

fn shouts(
    mut shouts: MessageReader<Received<Shout>>,
    mut players: ResMut<Players>,
    mut net: PeerMessage,
) {
    for Received { from, message } in shouts.read() {
        info!("box_game: {from} says {:?}", message.text);
        players.last_shout = Some(format!("{from}: {}", message.text));
        if message.text == "ping" {
            net.send(
                *from,
                Shout {
                    text: "pong".into(),
                },
            );
        }
    }
}

fn hud(
    net: PeerMessage,
    players: Res<Players>,
    state: Res<State<ConnectionState>>,
    peers: Query<(&Peer, &PeerStats)>,
    mut text: Query<&mut Text, With<Hud>>,
) {
    let Ok(mut text) = text.single_mut() else {
        return;
    };
    let mut lines = vec![format!(
        "room {:?} - me {} ({}) - {:?}",
        net.room().unwrap_or("-"),
        net.id(),
        net.role().map_or("-".into(), |r| r.to_string()),
        state.get()
    )];
    let mut rows: Vec<_> = peers.iter().collect();
    rows.sort_by_key(|(peer, _)| peer.id);
    for (peer, stats) in rows {
        let status = if players.away.contains(&peer.id) {
            "reconnecting"
        } else {
            "connected"
        };
        let rtt = stats
            .rtt
            .map_or("-".into(), |d| format!("{:.1} ms", d.as_secs_f64() * 1e3));
        // How the link travels: straight, through NATs, or through a TURN relay.
        let path = match stats.path {
            Some(NetworkPath::Direct) => "direct",
            Some(NetworkPath::ServerReflexive) => "through NAT",
            Some(NetworkPath::Relayed) => "relayed",
            None => "-",
        };
        let loss = stats
            .loss
            .map_or("-".into(), |l| format!("{:.0} %", l * 100.0));
        lines.push(format!(
            "{} {} - {status} - {path} - rtt {rtt} - loss {loss} - {} positions",
            peer.role,
            peer.id,
            players.positions_received.get(&peer.id).unwrap_or(&0)
        ));
    }
    if let Some(shout) = &players.last_shout {
        lines.push(format!("last: {shout}"));
    }
    lines.push("arrows/WASD: move - space: ping".into());
    let joined = lines.join("\n");
    if text.0 != joined {
        text.0 = joined;
    }
}
