//! The README's main job: a host and a joiner, in one process, on the default configuration
//! (the host embeds the signaling server; nothing external to start). They greet each other,
//! exchange typed messages both ways, measure round-trip times, print it all and exit 0.
//!
//! ```text
//! cargo run --example demo
//! ```
//!
//! (Cargo runs it through `tests/netns-run`: as root, inside a private network namespace.)

use bevy::prelude::*;
use bevy_peer_message::prelude::*;
use serde::{Deserialize, Serialize};
use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

#[derive(Serialize, Deserialize, Clone, Debug)]
struct Chat(String);

#[derive(Serialize, Deserialize, Clone, Copy, Debug)]
struct Ping(u32);

#[derive(Serialize, Deserialize, Clone, Copy, Debug)]
struct Pong(u32);

#[derive(Serialize, Deserialize, Clone, Copy, Debug)]
struct Position(Vec2);

const ROUND_TRIPS: usize = 200;

#[derive(Resource)]
struct Who(&'static str);

#[derive(Resource, Default)]
struct Pings {
    sent: Vec<Instant>,
    rtts: Vec<Duration>,
}

#[derive(Resource, Default)]
struct Log {
    chats: usize,
    positions: usize,
}

fn app(name: &'static str) -> App {
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        // Default signaling: the host embeds the server. Both peers are on this machine, so no
        // STUN is needed (and none is contacted): host candidates only.
        .add_plugins(PeerMessagePlugin::default().ice_servers(IceServers::none()))
        .add_peer_message::<Chat>(Delivery::Reliable)
        .add_peer_message::<Ping>(Delivery::Reliable)
        .add_peer_message::<Pong>(Delivery::Reliable)
        .add_peer_message::<Position>(Delivery::UnreliableSequenced)
        .insert_resource(Who(name))
        .init_resource::<Pings>()
        .init_resource::<Log>()
        .add_systems(Update, (greet, chat, positions, errors));
    app
}

fn greet(name: Res<Who>, mut joined: MessageReader<PeerConnected>, mut net: PeerMessage) {
    for event in joined.read() {
        println!("[{}] {} {} connected", name.0, event.role, event.peer);
        net.send(event.peer, Chat(format!("hello from the {}", name.0)));
    }
}

fn chat(name: Res<Who>, mut chat: MessageReader<Received<Chat>>, mut log: ResMut<Log>) {
    for Received { from, message } in chat.read() {
        println!("[{}] {from} says: {:?}", name.0, message.0);
        log.chats += 1;
    }
}

fn positions(name: Res<Who>, mut pos: MessageReader<Received<Position>>, mut log: ResMut<Log>) {
    for Received { from, message } in pos.read() {
        if log.positions == 0 {
            println!("[{}] first position from {from}: {}", name.0, message.0);
        }
        log.positions += 1;
    }
}

fn errors(name: Res<Who>, mut errors: MessageReader<PeerError>) {
    for e in errors.read() {
        eprintln!("[{}] error: {e}", name.0);
    }
}

/// Host: one ping in flight at a time; each pong is a round trip.
fn ping(mut net: PeerMessage, mut pings: ResMut<Pings>, mut pongs: MessageReader<Received<Pong>>) {
    for Received {
        message: Pong(n), ..
    } in pongs.read()
    {
        if let Some(sent) = pings.sent.get(*n as usize) {
            let rtt = sent.elapsed();
            pings.rtts.push(rtt);
        }
    }
    let Some((peer, _)) = net.peers().next() else {
        return;
    };
    if pings.sent.len() == pings.rtts.len() && pings.sent.len() < ROUND_TRIPS {
        let n = pings.sent.len() as u32;
        pings.sent.push(Instant::now());
        net.send(peer, Ping(n));
    }
}

/// Joiner: answers pings, streams its position.
fn pong(mut net: PeerMessage, mut pings: MessageReader<Received<Ping>>, mut t: Local<f32>) {
    for Received {
        message: Ping(n), ..
    } in pings.read()
    {
        net.send_to_host(Pong(*n));
    }
    if net.host_id().is_some() {
        *t += 0.1;
        net.send_to_host(Position(Vec2::new(t.cos(), t.sin()) * 100.0));
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() -> ExitCode {
    if cfg!(target_arch = "wasm32") {
        eprintln!("the demo hosts with the embedded signaling server, which is native-only");
        return ExitCode::FAILURE;
    }
    let mut host = app("host");
    host.add_systems(Update, ping)
        .add_systems(Startup, |mut net: PeerMessage| net.host("demo"));
    let mut joiner = app("joiner");
    joiner.add_systems(Update, pong);

    let started = Instant::now();
    let mut joined = false;
    loop {
        host.update();
        // Join once the host's room is open (its embedded server is listening).
        if !joined
            && *host.world().resource::<State<ConnectionState>>() == ConnectionState::Connected
        {
            let addr = host.world().resource::<SignalingServerInfo>().addr;
            println!("[host] room \"demo\" open; embedded signaling server on {addr}");
            bevy::ecs::system::RunSystemOnce::run_system_once(
                joiner.world_mut(),
                |mut net: PeerMessage| net.join("demo"),
            )
            .ok();
            joined = true;
        }
        joiner.update();

        let done = host.world().resource::<Pings>().rtts.len() >= ROUND_TRIPS
            && host.world().resource::<Log>().chats > 0
            && joiner.world().resource::<Log>().chats > 0
            && host.world().resource::<Log>().positions > 0;
        if done {
            break;
        }
        if started.elapsed() > Duration::from_secs(30)
            || (joined
                && *joiner.world().resource::<State<ConnectionState>>() == ConnectionState::Offline
                && started.elapsed() > Duration::from_secs(2))
        {
            eprintln!("demo failed: no connection within {:?}", started.elapsed());
            return ExitCode::FAILURE;
        }
    }

    let mut rtts = host.world().resource::<Pings>().rtts.clone();
    rtts.sort();
    let stats = host
        .world_mut()
        .query::<&PeerStats>()
        .iter(host.world())
        .next()
        .cloned()
        .unwrap_or_default();
    println!(
        "[host] {} positions received (unreliable, sequenced)",
        host.world().resource::<Log>().positions
    );
    println!(
        "round trip of a reliable typed message over WebRTC, {} samples: min {:?}, p50 {:?}, p99 {:?}",
        rtts.len(),
        rtts[0],
        percentile(&rtts, 0.5),
        percentile(&rtts, 0.99),
    );
    println!(
        "plugin's own estimate (PeerStats.rtt): {:?}; {} bytes out, {} bytes in",
        stats.rtt, stats.bytes_out, stats.bytes_in
    );
    println!("connected and done in {:?}", started.elapsed());
    ExitCode::SUCCESS
}
