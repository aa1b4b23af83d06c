//! Test harness: real Bevy apps over real WebRTC, isolated from the real network.
//!
//! Cargo runs this binary through `tests/netns-run` (see `.cargo/config.toml`), which puts it in a
//! network namespace of its own. [`require_isolated_network`] checks that: as root, a test refuses
//! to run anywhere but inside such a namespace; as an ordinary user it runs on the machine's own
//! interfaces and says so.

pub use crate::common::*;
use bevy::prelude::*;
use bevy_peer_message::prelude::*;
use serde::{Deserialize, Serialize};
use std::{
    sync::Once,
    time::{Duration, Instant},
};

/// A reliable chat line.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Chat(pub String);

/// An unreliable effect.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct Spark(pub u32);

/// A sequenced position.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct Position(pub f32, pub f32, pub u32);

/// A large reliable blob.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Blob(pub Vec<u8>);

/// An unreliable blob (to test the one-packet limit).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Burst(pub Vec<u8>);

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// Fails the test if, as root, we are not inside a namespace made by `tests/netns-run`.
pub fn require_isolated_network() {
    static CHECK: Once = Once::new();
    CHECK.call_once(|| {
        if !is_root() {
            eprintln!(
                "harness: not root: these tests run on this machine's ordinary interfaces \
                 (as root they run in private network namespaces)"
            );
            return;
        }
        let ns = std::env::var("PEER_MESSAGE_NETNS").unwrap_or_default();
        let interfaces: Vec<String> = std::fs::read_dir("/sys/class/net")
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let foreign: Vec<&String> = interfaces
            .iter()
            .filter(|i| *i != "lo" && !i.starts_with("pm"))
            .collect();
        assert!(
            !ns.is_empty() && foreign.is_empty(),
            "running as root outside a private network namespace (PEER_MESSAGE_NETNS={ns:?}, \
             interfaces {interfaces:?}): run the tests with `cargo test` (the runner in \
             .cargo/config.toml) or `tests/netns-run`, never on the real network"
        );
    });
}

/// What a test app registers (the same on every peer unless a test says otherwise).
pub fn register(app: &mut App) {
    app.add_peer_message::<Chat>(Delivery::Reliable)
        .add_peer_message::<Numbered>(Delivery::Reliable)
        .add_peer_message::<Blob>(Delivery::Reliable)
        .add_peer_message::<Spark>(Delivery::Unreliable)
        .add_peer_message::<Burst>(Delivery::Unreliable)
        .add_peer_message::<Position>(Delivery::UnreliableSequenced);
}

/// A headless app with the plugin (no ICE servers) and recorders for every message type.
pub fn app_with(plugin: PeerMessagePlugin, register_messages: impl FnOnce(&mut App)) -> App {
    require_isolated_network();
    let mut app = App::new();
    app.add_plugins((bevy::app::TaskPoolPlugin::default(), bevy::time::TimePlugin))
        .add_plugins(plugin.ice_servers(IceServers::none()));
    register_messages(&mut app);
    record_lifecycle(&mut app);
    record::<Received<Chat>>(&mut app);
    record::<Received<Numbered>>(&mut app);
    record::<Received<Blob>>(&mut app);
    record::<Received<Spark>>(&mut app);
    record::<Received<Position>>(&mut app);
    record::<Received<Burst>>(&mut app);
    app
}

/// [`app_with`] the standard registrations.
pub fn app(plugin: PeerMessagePlugin) -> App {
    app_with(plugin, register)
}

/// Updates every app in turn until `done` holds, or panics after `timeout`.
pub fn run_until(
    apps: &mut [&mut App],
    timeout: Duration,
    what: &str,
    mut done: impl FnMut(&mut [&mut App]) -> bool,
) {
    let start = Instant::now();
    loop {
        for app in apps.iter_mut() {
            app.update();
        }
        if done(apps) {
            return;
        }
        if start.elapsed() > timeout {
            let errors: Vec<Vec<PeerError>> = apps.iter().map(|a| inbox::<PeerError>(a)).collect();
            for (i, app) in apps.iter_mut().enumerate() {
                let view = bevy_peer_message::internals::describe(app.world_mut());
                eprintln!("app {i}: {view}");
            }
            panic!("timed out after {timeout:?} waiting for {what}; errors per app: {errors:?}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Updates every app for `duration`.
pub fn run_for(apps: &mut [&mut App], duration: Duration) {
    let start = Instant::now();
    while start.elapsed() < duration {
        for app in apps.iter_mut() {
            app.update();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A host on the embedded server (bound to a free port), already listening.
pub fn host_app(room: &str, plugin: PeerMessagePlugin) -> (App, String) {
    let mut host = app(plugin.signaling(Signaling::embedded(
        "127.0.0.1:0".parse().expect("address"),
        "ws://127.0.0.1:0",
    )));
    let room = room.to_owned();
    net(&mut host, |n| n.host(room));
    run_until(
        &mut [&mut host],
        Duration::from_secs(10),
        "the host to open",
        |a| state(a[0]) == ConnectionState::Connected,
    );
    let addr = host.world().resource::<SignalingServerInfo>().addr;
    (host, format!("ws://127.0.0.1:{}", addr.port()))
}

/// A host and a joiner connected through the host's embedded server. The join may take up to
/// 30 s (as long as [`wait_connected`] waits): WebRTC's setup on a loaded 2-core machine, with
/// other tests' peers beside it, can take longer than the default 10 s.
pub fn connected_pair(room: &str) -> (App, App) {
    let (mut host, url) = host_app(room, PeerMessagePlugin::default());
    let mut joiner = app(PeerMessagePlugin::default()
        .signaling(Signaling::server(url))
        .join_timeout(Duration::from_secs(30)));
    let room = room.to_owned();
    net(&mut joiner, |n| n.join(room));
    wait_connected(&mut [&mut host, &mut joiner], 1);
    (host, joiner)
}

/// Waits until every app has seen `each` peers connect.
pub fn wait_connected(apps: &mut [&mut App], each: usize) {
    run_until(apps, Duration::from_secs(30), "peers to connect", |apps| {
        apps.iter().all(|a| inbox::<PeerConnected>(a).len() >= each)
    });
}

/// The numbers of the [`Numbered`] messages an app received from `from`, in order.
pub fn numbers_from(app: &App, from: PeerId) -> Vec<u32> {
    inbox::<Received<Numbered>>(app)
        .iter()
        .filter(|r| r.from == from)
        .map(|r| r.message.0)
        .collect()
}

/// The id of an app.
pub fn id(app: &mut App) -> PeerId {
    net(app, |n| n.id())
}

/// A raw matchbox socket (no ICE servers, our two channels) in `url`'s room, its message loop
/// on a thread of its own: a peer that speaks our wire format by hand, or not at all.
pub fn raw_socket(url: &str) -> (matchbox_socket::WebRtcSocket, std::thread::JoinHandle<()>) {
    use matchbox_socket::{ChannelConfig, RtcIceServerConfig, WebRtcSocketBuilder};
    let (socket, message_loop) = WebRtcSocketBuilder::new(url)
        .ice_server(RtcIceServerConfig {
            urls: vec![],
            username: None,
            credential: None,
        })
        .add_channel(ChannelConfig::reliable())
        .add_channel(ChannelConfig::unreliable())
        .build();
    let thread = std::thread::spawn(move || {
        let _ = futures::executor::block_on(message_loop);
    });
    (socket, thread)
}
