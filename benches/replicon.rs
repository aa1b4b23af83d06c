//! bevy_replicon over this crate (WebRTC data channels) against bevy_replicon over
//! bevy_replicon_renet (renet on UDP with netcode), the same scene in the same run: a server
//! replicating 64 boxes that all move every frame, and one client.
//!
//! - **RTT of a replicated change**: the client sends a `Poke(n)` client message; the server
//!   writes `n` into a replicated component; the time until the client sees it. Both server and
//!   client tick replicon at its default 64 Hz (`FixedPostUpdate`), so that quantum is in both.
//! - **Bytes per second**: on the wire (the loopback interface's counters, IP and everything
//!   above it, both directions) while the boxes move, and as each backend reports it to
//!   replicon (`ConnectedClientStats::sent_bps` on the server).
//!
//! ```text
//! cargo bench --bench replicon              # 10 s of traffic and 200 pokes per backend
//! cargo bench --bench replicon -- 30 500    # seconds of traffic, pokes
//! ```
//!
//! Server and client run in this process on loopback, inside the private network namespace
//! that Cargo's runner (`tests/netns-run`) puts benchmarks in.

#[path = "../tests/common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "../tests/webrtc/harness.rs"]
mod harness;

use bevy::{prelude::*, state::app::StatesPlugin};
use bevy_peer_message::{RepliconPeerMessagePlugin, prelude::*};
use bevy_replicon::prelude::*;
use bevy_replicon_renet::{
    RenetChannelsExt, RenetClient, RenetServer, RepliconRenetPlugins,
    netcode::{
        ClientAuthentication, NetcodeClientTransport, NetcodeServerTransport, ServerAuthentication,
        ServerConfig,
    },
    renet::ConnectionConfig,
};
use serde::{Deserialize, Serialize};
use std::{
    net::UdpSocket,
    time::{Duration, Instant, SystemTime},
};

const SECOND: Duration = Duration::from_secs(1);
const BOXES: usize = 64;

/// A moving box (replicated).
#[derive(Component, Serialize, Deserialize, Clone, Copy, Default)]
struct BoxPosition([f32; 2]);

/// The last poke the server answered (replicated, on one entity).
#[derive(Component, Serialize, Deserialize, Clone, Copy, Default, PartialEq)]
struct Answer(u32);

/// The client's poke.
#[derive(Message, Serialize, Deserialize, Clone, Copy)]
struct Poke(u32);

fn scene(app: &mut App) {
    app.replicate::<BoxPosition>()
        .replicate::<Answer>()
        .add_client_message::<Poke>(Channel::Ordered)
        .add_systems(
            Update,
            (move_boxes, answer).run_if(in_state(ServerState::Running)),
        );
}

fn move_boxes(time: Res<Time>, mut boxes: Query<&mut BoxPosition>) {
    let t = time.elapsed_secs();
    for (i, mut p) in boxes.iter_mut().enumerate() {
        let phase = t + i as f32;
        p.0 = [100.0 * phase.cos(), 100.0 * phase.sin()];
    }
}

fn answer(mut pokes: MessageReader<FromClient<Poke>>, mut answers: Query<&mut Answer>) {
    for poke in pokes.read() {
        for mut a in &mut answers {
            a.0 = poke.message.0;
        }
    }
}

fn spawn_world(app: &mut App) {
    for _ in 0..BOXES {
        app.world_mut().spawn((Replicated, BoxPosition::default()));
    }
    app.world_mut().spawn((Replicated, Answer(u32::MAX)));
}

fn replicated(app: &mut App) -> usize {
    let mut q = app.world_mut().query::<&BoxPosition>();
    q.iter(app.world()).count()
}

fn answer_seen(app: &mut App) -> Option<u32> {
    let mut q = app.world_mut().query::<&Answer>();
    q.iter(app.world()).next().map(|a| a.0)
}

/// Loopback bytes so far (sent = received on `lo`).
fn wire_bytes() -> u64 {
    std::fs::read_to_string("/sys/class/net/lo/statistics/tx_bytes")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn frame(apps: &mut [&mut App]) {
    for app in apps.iter_mut() {
        app.update();
    }
    std::thread::sleep(Duration::from_millis(1));
}

fn run_until(apps: &mut [&mut App], what: &str, mut done: impl FnMut(&mut [&mut App]) -> bool) {
    let start = Instant::now();
    while !done(apps) {
        assert!(start.elapsed() < 60 * SECOND, "{what}: not within 60 s");
        frame(apps);
    }
}

struct Figures {
    connect: Duration,
    rtt: Vec<f64>,
    wire_bps: f64,
    reported_bps: f64,
}

/// Measures a connected server and client.
fn measure(
    mut server: App,
    mut client: App,
    connect: Duration,
    seconds: u64,
    pokes: u32,
) -> Figures {
    run_until(
        &mut [&mut server, &mut client],
        "the world replicated",
        |a| replicated(a[1]) == BOXES && answer_seen(a[1]).is_some(),
    );
    // Traffic: the boxes moving, nothing else.
    run_until_elapsed(&mut server, &mut client, 2 * SECOND);
    let (bytes, start) = (wire_bytes(), Instant::now());
    run_until_elapsed(&mut server, &mut client, Duration::from_secs(seconds));
    let wire_bps = (wire_bytes() - bytes) as f64 / start.elapsed().as_secs_f64();
    let mut q = server.world_mut().query::<&ConnectedClientStats>();
    let reported_bps = q.iter(server.world()).map(|s| s.sent_bps).sum();
    // Round trips of a replicated change.
    let mut rtt = Vec::new();
    for n in 0..pokes {
        let sent = Instant::now();
        client.world_mut().write_message(Poke(n));
        run_until(&mut [&mut server, &mut client], "an answer", |a| {
            answer_seen(a[1]) == Some(n)
        });
        rtt.push(sent.elapsed().as_secs_f64() * 1e3);
    }
    Figures {
        connect,
        rtt,
        wire_bps,
        reported_bps,
    }
}

fn run_until_elapsed(server: &mut App, client: &mut App, d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        frame(&mut [server, client]);
    }
}

fn base_app() -> App {
    let mut app = App::new();
    app.add_plugins((
        bevy::app::TaskPoolPlugin::default(),
        bevy::time::TimePlugin,
        StatesPlugin,
    ));
    app
}

fn ours(seconds: u64, pokes: u32) -> Figures {
    let start = Instant::now();
    let mut server = harness::app_with(
        PeerMessagePlugin::default().signaling(Signaling::embedded(
            "127.0.0.1:0".parse().expect("address"),
            "ws://127.0.0.1:0",
        )),
        |_| {},
    );
    server.add_plugins((RepliconPlugins, RepliconPeerMessagePlugin));
    scene(&mut server);
    server.finish();
    server.cleanup();
    spawn_world(&mut server);
    common::net(&mut server, |n| n.host("bench"));
    run_until(&mut [&mut server], "the room", |a| {
        a[0].world().get_resource::<SignalingServerInfo>().is_some()
    });
    let port = server.world().resource::<SignalingServerInfo>().addr.port();
    let mut client = harness::app_with(
        PeerMessagePlugin::default().signaling(Signaling::server(format!("ws://127.0.0.1:{port}"))),
        |_| {},
    );
    client.add_plugins((RepliconPlugins, RepliconPeerMessagePlugin));
    scene(&mut client);
    client.finish();
    client.cleanup();
    common::net(&mut client, |n| n.join("bench"));
    run_until(&mut [&mut server, &mut client], "connected", |a| {
        *a[1].world().resource::<State<ClientState>>().get() == ClientState::Connected
    });
    let connect = start.elapsed();
    measure(server, client, connect, seconds, pokes)
}

fn renet(seconds: u64, pokes: u32) -> Figures {
    const PROTOCOL_ID: u64 = 7;
    let start = Instant::now();
    let now = || {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("time")
    };
    let mut server = base_app();
    server.add_plugins((RepliconPlugins, RepliconRenetPlugins));
    scene(&mut server);
    server.finish();
    server.cleanup();
    spawn_world(&mut server);
    let channels = server.world().resource::<RepliconChannels>().clone();
    let config = || ConnectionConfig {
        server_channels_config: channels.server_configs(),
        client_channels_config: channels.client_configs(),
        ..Default::default()
    };
    let socket = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let addr = socket.local_addr().expect("address");
    let transport = NetcodeServerTransport::new(
        ServerConfig {
            current_time: now(),
            max_clients: 1,
            protocol_id: PROTOCOL_ID,
            authentication: ServerAuthentication::Unsecure,
            public_addresses: vec![addr],
        },
        socket,
    )
    .expect("netcode server");
    server.insert_resource(RenetServer::new(config()));
    server.insert_resource(transport);

    let mut client = base_app();
    client.add_plugins((RepliconPlugins, RepliconRenetPlugins));
    scene(&mut client);
    client.finish();
    client.cleanup();
    let transport = NetcodeClientTransport::new(
        now(),
        ClientAuthentication::Unsecure {
            client_id: 1,
            protocol_id: PROTOCOL_ID,
            server_addr: addr,
            user_data: None,
        },
        UdpSocket::bind("127.0.0.1:0").expect("udp"),
    )
    .expect("netcode client");
    client.insert_resource(RenetClient::new(config()));
    client.insert_resource(transport);
    run_until(&mut [&mut server, &mut client], "connected", |a| {
        *a[1].world().resource::<State<ClientState>>().get() == ClientState::Connected
    });
    let connect = start.elapsed();
    measure(server, client, connect, seconds, pokes)
}

fn percentile(samples: &[f64], p: f64) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    s[((s.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let seconds = args.first().copied().unwrap_or(10);
    let pokes = args.get(1).copied().unwrap_or(200) as u32;
    eprintln!("{BOXES} moving boxes; {seconds} s of traffic; {pokes} pokes per backend");
    let renet = renet(seconds, pokes);
    let ours = ours(seconds, pokes);
    println!("| metric | bevy_peer_message (WebRTC) | bevy_replicon_renet (UDP) | ratio |");
    println!("|---|--:|--:|--:|");
    let row = |name: &str, a: f64, b: f64, unit: &str| {
        println!("| {name} | {a:.2} {unit} | {b:.2} {unit} | {:.2} |", a / b);
    };
    row(
        "connect (start → ClientState::Connected)",
        ours.connect.as_secs_f64() * 1e3,
        renet.connect.as_secs_f64() * 1e3,
        "ms",
    );
    for (name, p) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
        row(
            &format!("RTT of a replicated change, {name}"),
            percentile(&ours.rtt, p),
            percentile(&renet.rtt, p),
            "ms",
        );
    }
    row(
        "bytes on the wire per second (lo, both ways)",
        ours.wire_bps / 1024.0,
        renet.wire_bps / 1024.0,
        "KiB/s",
    );
    row(
        "server → client as the backend reports it",
        ours.reported_bps / 1024.0,
        renet.reported_bps / 1024.0,
        "KiB/s",
    );
}
