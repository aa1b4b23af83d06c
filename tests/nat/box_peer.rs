//! The two peers of the internet in a box ([`crate::internet`]): a host and a joiner, each a
//! process in its own home namespace, and the parent's side that starts them and reads what
//! they print. Shared by the NAT tests (`tests/nat/nat.rs`) and the network-path benchmark
//! (`benches/paths.rs`).

use crate::common::*;
use crate::internet::Internet;
use crate::netns::{Child, param};
use bevy::prelude::*;
use bevy_peer_message::prelude::*;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const ROOM: &str = "box";

/// A round trip: the joiner sends it, the host sends it back.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Ping {
    pub seq: u32,
    pub sent_us: u64,
}

/// Bulk data, reliable: the host answers the `last` of each round with [`BulkDone`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Bulk {
    pub round: u32,
    pub last: bool,
    pub data: Vec<u8>,
}

/// The host received a whole bulk round.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct BulkDone {
    pub round: u32,
}

/// The ICE servers a helper is given: `PM_STUN` (a URL or empty), `PM_TURN`
/// (`url|user|password` or empty).
fn ice_from_env() -> IceServers {
    let mut ice = IceServers::none();
    let stun = std::env::var("PM_STUN").unwrap_or_default();
    if !stun.is_empty() {
        ice = ice.with(IceServer::stun([stun]));
    }
    let turn = std::env::var("PM_TURN").unwrap_or_default();
    let parts: Vec<&str> = turn.split('|').collect();
    if let [url, user, password] = parts[..] {
        ice = ice.with(IceServer::turn([url], user, password));
    }
    ice
}

fn peer_app() -> App {
    let join_timeout = param("PM_JOIN_TIMEOUT_MS").parse().expect("milliseconds");
    let plugin = PeerMessagePlugin::default()
        .signaling(Signaling::server(param("PM_URL")))
        .ice_servers(ice_from_env())
        .join_timeout(Duration::from_millis(join_timeout));
    let mut app = App::new();
    app.add_plugins((bevy::app::TaskPoolPlugin::default(), bevy::time::TimePlugin))
        .add_plugins(plugin)
        .add_peer_message::<Ping>(Delivery::Reliable)
        .add_peer_message::<Bulk>(Delivery::Reliable)
        .add_peer_message::<BulkDone>(Delivery::Reliable);
    record_lifecycle(&mut app);
    record::<Received<Ping>>(&mut app);
    record::<Received<BulkDone>>(&mut app);
    app.add_systems(Update, answer_bulk);
    app
}

/// The host's side of bulk rounds: the last message of a round is answered.
fn answer_bulk(mut bulk: MessageReader<Received<Bulk>>, mut net: PeerMessage) {
    for b in bulk.read() {
        if b.message.last {
            net.send(
                b.from,
                BulkDone {
                    round: b.message.round,
                },
            );
        }
    }
}

fn step(app: &mut App) {
    app.update();
    std::thread::sleep(Duration::from_millis(1));
}

/// The host's side, run in a home namespace: hosts, sends every ping back and answers every
/// bulk round, until killed.
pub fn host_main() {
    let mut app = peer_app();
    net(&mut app, |n| n.host(ROOM));
    let mut echoed = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(300) {
        step(&mut app);
        let pings = inbox::<Received<Ping>>(&app);
        for ping in &pings[echoed..] {
            net(&mut app, |n| n.send(ping.from, ping.message.clone()));
        }
        echoed = pings.len();
    }
}

/// The joiner's side, run in a home namespace: joins; once connected, says how (`PATH ...`)
/// and how fast it connected, sends `PM_PINGS` pings 10 ms apart, checks the echoes (each once,
/// in order) and prints their round trips, then runs the bulk rounds of `PM_BULK`. Prints
/// `ERROR ...` for each error and returns when the join fails.
pub fn joiner_main() {
    let pings: u32 = param("PM_PINGS").parse().expect("a count");
    let mut app = peer_app();
    let epoch = Instant::now();
    net(&mut app, |n| n.join(ROOM));
    let mut errors = 0;
    loop {
        step(&mut app);
        let seen = inbox::<PeerError>(&app);
        for e in &seen[errors..] {
            println!("ERROR {:?}", e.error);
        }
        errors = seen.len();
        if let Some(c) = inbox::<PeerConnected>(&app).first() {
            println!("CONNECTED after {} ms", epoch.elapsed().as_millis());
            let host = c.peer;
            let entity = c.entity;
            // WebRTC reports the candidate pair about once a second (later on a loaded
            // machine).
            let asked = Instant::now();
            let path = loop {
                step(&mut app);
                let path = app.world().get::<PeerStats>(entity).and_then(|s| s.path);
                if path.is_some() || asked.elapsed() > Duration::from_secs(20) {
                    break path;
                }
            };
            println!("PATH {path:?}");
            round_trips(&mut app, host, pings, epoch);
            bulk_rounds(
                &mut app,
                host,
                &std::env::var("PM_BULK").unwrap_or_default(),
            );
            return;
        }
        if state(&app) == ConnectionState::Offline && errors > 0 {
            println!("GAVE UP after {} ms", epoch.elapsed().as_millis());
            return;
        }
        assert!(
            epoch.elapsed() < Duration::from_secs(90),
            "neither connected nor gave up"
        );
    }
}

/// Sends `count` pings to `host` 10 ms apart and prints the echoes' round trips.
fn round_trips(app: &mut App, host: PeerId, count: u32, epoch: Instant) {
    let mut sent = 0;
    let mut next = Instant::now();
    let mut rtts = Vec::new();
    let mut seen = 0;
    let mut order_ok = true;
    let deadline = Instant::now() + Duration::from_millis(10 * count as u64) + 20 * SECOND;
    while (rtts.len() as u32) < count && Instant::now() < deadline {
        if sent < count && Instant::now() >= next {
            let sent_us = epoch.elapsed().as_micros() as u64;
            net(app, |n| n.send(host, Ping { seq: sent, sent_us }));
            sent += 1;
            next += Duration::from_millis(10);
        }
        step(app);
        let echoes = inbox::<Received<Ping>>(app);
        for echo in &echoes[seen..] {
            order_ok &= echo.message.seq == rtts.len() as u32;
            rtts.push(epoch.elapsed().as_micros() as u64 - echo.message.sent_us);
        }
        seen = echoes.len();
    }
    let received = rtts.len();
    rtts.sort_unstable();
    let pct = |p: usize| {
        rtts.get((rtts.len() * p / 100).min(rtts.len().saturating_sub(1)))
            .map_or(f64::NAN, |us| *us as f64 / 1000.0)
    };
    println!(
        "RTT p50 {:.2} ms p99 {:.2} ms over {received} of {count}",
        pct(50),
        pct(99)
    );
    println!("ECHOES {received} of {count}, in order: {order_ok}");
    println!("RECONNECTED {} times", inbox::<PeerReconnected>(app).len());
}

/// Sends the bulk rounds of `spec` (`<size>x<count>,...`) to `host`, each as fast as the
/// session takes them, and prints each round's throughput (first send to the host's answer).
fn bulk_rounds(app: &mut App, host: PeerId, spec: &str) {
    for (round, part) in spec.split(',').filter(|p| !p.is_empty()).enumerate() {
        let round = round as u32;
        let (size, count) = part.split_once('x').expect("<size>x<count>");
        let (size, count): (usize, u32) =
            (size.parse().expect("size"), count.parse().expect("count"));
        let start = Instant::now();
        let mut sent = 0;
        let mut done = false;
        while !done && start.elapsed() < 120 * SECOND {
            while sent < count {
                let message = Bulk {
                    round,
                    last: sent + 1 == count,
                    data: vec![sent as u8; size],
                };
                // Refused while the session's queue is full: again next frame.
                if net(app, |n| n.try_send(host, &message)).is_err() {
                    break;
                }
                sent += 1;
            }
            step(app);
            done = inbox::<Received<BulkDone>>(app)
                .iter()
                .any(|d| d.message.round == round);
        }
        let seconds = start.elapsed().as_secs_f64();
        let megabytes = (size as f64 * count as f64) / 1e6;
        if done {
            println!(
                "BULK {size} B x {count}: {:.2} MB/s ({:.2} s)",
                megabytes / seconds,
                seconds
            );
        } else {
            println!("BULK {size} B x {count}: not done after {seconds:.0} s");
        }
    }
}

const SECOND: Duration = Duration::from_secs(1);

/// What a run looked like from the joiner's side.
pub struct Outcome {
    pub joiner: Child,
    /// Runs until the outcome is dropped (then it is killed).
    pub _host: Child,
}

/// How to start the helpers in a namespace with an environment: tests run `#[ignore]`d helper
/// tests of their binary, the benchmark runs itself with a flag.
pub struct Spawner {
    pub signaling: fn(&str, &[(&str, String)]) -> Child,
    pub host: fn(&str, &[(&str, String)]) -> Child,
    pub joiner: fn(&str, &[(&str, String)]) -> Child,
}

/// The signaling server's side, run in the public namespace: listens on `PM_BIND`, says
/// `LISTENING`, and serves until killed (at most ten minutes).
pub fn signaling_main() {
    let bind = param("PM_BIND").parse().expect("an address");
    let _server = bevy_peer_message::EmbeddedServer::start(bind).expect("listen");
    println!("LISTENING");
    std::thread::sleep(Duration::from_secs(600));
}

/// What the joiner does once connected, and how long it may take to join.
pub struct Script<'a> {
    /// Relay through the box's TURN server (short-lived credentials) besides STUN.
    pub turn: bool,
    /// Pings to time.
    pub pings: u32,
    /// Bulk rounds, `<size>x<count>,...`.
    pub bulk: &'a str,
    /// The joiner's `join_timeout`.
    pub join_timeout: Duration,
}

/// Runs a host in home 0 and a joiner in home 1 until the joiner's helper exits, calling
/// `during` with the joiner's helper once it runs.
pub fn run_pair(
    internet: &Internet,
    spawn: &Spawner,
    script: Script,
    during: impl FnOnce(&Child),
) -> Outcome {
    let url = internet.signaling_url();
    let turn_param = match (&internet.turn_secret, script.turn) {
        (Some(secret), true) => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("clock")
                .as_secs();
            let creds = TurnCredentials::rest(secret.as_bytes(), "player", now + 3600);
            format!(
                "{}|{}|{}",
                internet.turn_url(),
                creds.username,
                creds.credential
            )
        }
        _ => String::new(),
    };
    let env = vec![
        ("PM_URL", url),
        ("PM_STUN", internet.stun_url()),
        ("PM_TURN", turn_param),
        ("PM_PINGS", script.pings.to_string()),
        ("PM_BULK", script.bulk.to_string()),
        (
            "PM_JOIN_TIMEOUT_MS",
            script.join_timeout.as_millis().to_string(),
        ),
    ];
    let host = (spawn.host)(&internet.homes[0].ns, &env);
    // The host's room is open once the server has a socket in it; a joiner that came first
    // would only wait for it, but the join timeout would count from its start.
    std::thread::sleep(Duration::from_millis(1500));
    let mut joiner = (spawn.joiner)(&internet.homes[1].ns, &env);
    during(&joiner);
    let finished = joiner.wait(script.join_timeout + Duration::from_secs(180));
    assert_eq!(finished, Some(true), "the joiner's helper finished cleanly");
    Outcome {
        joiner,
        _host: host,
    }
}
