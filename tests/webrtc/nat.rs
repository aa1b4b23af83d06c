//! Peers behind NATs, in the internet in a box ([`crate::internet`]): each peer a process in
//! its own home namespace behind a NAT router, the signaling server (here, in the parent) and
//! coturn on the public side. Ordinary NATs connect directly through STUN's server-reflexive
//! candidates; symmetric NATs only through a TURN relay; symmetric NATs without one fail with a
//! `NoNetworkPath` error that names the cure.

use crate::harness::*;
use crate::internet::{Internet, Nat};
use crate::netns::{Child, can_create_namespaces, param};
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
        .add_peer_message::<Ping>(Delivery::Reliable);
    record_lifecycle(&mut app);
    record::<Received<Ping>>(&mut app);
    app
}

fn step(app: &mut App) {
    app.update();
    std::thread::sleep(Duration::from_millis(1));
}

/// Helper, run in a home namespace: hosts, sends every ping back, until killed.
#[test]
#[ignore = "helper: started inside a home namespace by the NAT tests"]
fn child_nat_host() {
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

/// Helper, run in a home namespace: joins; once connected, says how (`PATH ...`) and how
/// fast it connected, sends `PM_PINGS` pings 10 ms apart, checks the echoes (each once, in
/// order) and prints their round trips. Prints `ERROR ...` for each error and exits when the
/// join fails.
#[test]
#[ignore = "helper: started inside a home namespace by the NAT tests"]
fn child_nat_joiner() {
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
            // WebRTC reports the candidate pair about once a second.
            let asked = Instant::now();
            let path = loop {
                step(&mut app);
                let path = app.world().get::<PeerStats>(entity).and_then(|s| s.path);
                if path.is_some() || asked.elapsed() > Duration::from_secs(5) {
                    break path;
                }
            };
            println!("PATH {path:?}");
            round_trips(&mut app, host, pings, epoch);
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

const SECOND: Duration = Duration::from_secs(1);

/// What a run looked like from the joiner's side.
pub struct Outcome {
    pub joiner: Child,
    /// Runs until the outcome is dropped (then it is killed).
    pub _host: Child,
}

/// Runs a host in home 0 and a joiner in home 1 with the given ICE servers until the joiner's
/// helper exits.
pub fn run_pair(
    internet: &Internet,
    server: &bevy_peer_message::EmbeddedServer,
    turn: bool,
    pings: u32,
    join_timeout: Duration,
) -> Outcome {
    run_pair_with(internet, server, turn, pings, join_timeout, |_| {})
}

/// [`run_pair`], calling `during` with the joiner's helper once it runs.
pub fn run_pair_with(
    internet: &Internet,
    server: &bevy_peer_message::EmbeddedServer,
    turn: bool,
    pings: u32,
    join_timeout: Duration,
    during: impl FnOnce(&Child),
) -> Outcome {
    let url = format!("ws://{}:{}", internet.public, server.addr().port());
    let turn_param = match (&internet.turn_secret, turn) {
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
    let env = |pings: u32| {
        vec![
            ("PM_URL", url.clone()),
            ("PM_STUN", internet.stun_url()),
            ("PM_TURN", turn_param.clone()),
            ("PM_PINGS", pings.to_string()),
            ("PM_JOIN_TIMEOUT_MS", join_timeout.as_millis().to_string()),
        ]
    };
    let host = Child::spawn(&internet.homes[0].ns, "nat::child_nat_host", &env(0));
    // The host's room is open once the server has a socket in it; a joiner that came first
    // would only wait for it, but the join timeout would count from its start.
    std::thread::sleep(Duration::from_millis(1500));
    let mut joiner = Child::spawn(&internet.homes[1].ns, "nat::child_nat_joiner", &env(pings));
    during(&joiner);
    let finished = joiner.wait(join_timeout + Duration::from_secs(60));
    assert_eq!(finished, Some(true), "the joiner's helper finished cleanly");
    Outcome {
        joiner,
        _host: host,
    }
}

fn public_server(internet: &Internet) -> bevy_peer_message::EmbeddedServer {
    bevy_peer_message::EmbeddedServer::start(
        format!("{}:0", internet.public).parse().expect("address"),
    )
    .expect("signaling server")
}

fn ready() -> bool {
    require_isolated_network();
    can_create_namespaces() && crate::internet::tools_present()
}

/// Both peers behind ordinary home NATs, STUN only: they connect straight through the NATs
/// (server-reflexive candidates, no relay) and every ping comes back once, in order.
#[test]
fn behind_ordinary_nats_peers_connect_directly_through_stun() {
    if !ready() {
        return;
    }
    let mut internet = Internet::create(&[Nat::Cone, Nat::Cone]);
    internet.start_turn();
    let server = public_server(&internet);
    let run = run_pair(&internet, &server, false, 200, 20 * SECOND);
    assert!(run.joiner.said("CONNECTED"), "connected");
    assert!(
        run.joiner.said("PATH Some(ServerReflexive)"),
        "through the NATs, not relayed"
    );
    assert!(run.joiner.said("ECHOES 200 of 200, in order: true"));
}

/// Both peers behind symmetric NATs, with a TURN server (short-lived credentials from
/// `TurnCredentials::rest`): they connect through the relay, and every ping comes back once,
/// in order.
#[test]
fn behind_symmetric_nats_peers_connect_through_turn() {
    if !ready() {
        return;
    }
    let mut internet = Internet::create(&[Nat::Symmetric, Nat::Symmetric]);
    internet.start_turn();
    let server = public_server(&internet);
    let run = run_pair(&internet, &server, true, 200, 20 * SECOND);
    assert!(run.joiner.said("CONNECTED"), "connected");
    assert!(run.joiner.said("PATH Some(Relayed)"), "relayed");
    assert!(run.joiner.said("ECHOES 200 of 200, in order: true"));
}

/// Both peers behind symmetric NATs and no TURN server: no path exists. The join fails at
/// `join_timeout` with `NoNetworkPath`, which says a TURN server is the cure, not with a
/// generic timeout.
#[test]
fn behind_symmetric_nats_without_turn_the_join_fails_with_no_network_path() {
    if !ready() {
        return;
    }
    let mut internet = Internet::create(&[Nat::Symmetric, Nat::Symmetric]);
    internet.start_turn();
    let server = public_server(&internet);
    let run = run_pair(&internet, &server, false, 0, 8 * SECOND);
    assert!(!run.joiner.said("CONNECTED"), "no path, no connection");
    assert!(
        run.joiner.said("ERROR NoNetworkPath") && run.joiner.said("relay_offered: false"),
        "the error names the missing path"
    );
    assert!(run.joiner.said("GAVE UP"));
}

/// A host behind one NAT, a joiner behind another; one second after they connect the joiner's
/// home loses its uplink for 3 s while the joiner streams pings, and its router forgets every
/// NAT mapping meanwhile (as after a router reboot), so the joiner comes back from other public
/// ports. The session resumes on a new connection and every ping comes back exactly once, in
/// order.
fn cut_behind_nat(nat: Nat, turn: bool, path: &str) {
    let mut internet = Internet::create(&[nat, nat]);
    internet.start_turn();
    let server = public_server(&internet);
    let home = &internet.homes[1];
    let run = run_pair_with(&internet, &server, turn, 800, 20 * SECOND, |joiner| {
        let start = Instant::now();
        while !joiner.said("PATH") {
            assert!(start.elapsed() < 30 * SECOND, "no connection to cut");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(SECOND);
        home.cut();
        home.flush_nat();
        std::thread::sleep(3 * SECOND);
        home.flush_nat();
        home.restore();
    });
    assert!(run.joiner.said(path), "connected {path}");
    assert!(
        run.joiner.said("RECONNECTED") && !run.joiner.said("RECONNECTED 0 times"),
        "the cut was noticed and the session resumed"
    );
    assert!(run.joiner.said("ECHOES 800 of 800, in order: true"));
}

#[test]
fn a_cut_behind_ordinary_nats_with_new_mappings_loses_nothing() {
    if !ready() {
        return;
    }
    cut_behind_nat(Nat::Cone, false, "PATH Some(ServerReflexive)");
}

#[test]
fn a_cut_behind_symmetric_nats_through_turn_with_new_mappings_loses_nothing() {
    if !ready() {
        return;
    }
    cut_behind_nat(Nat::Symmetric, true, "PATH Some(Relayed)");
}
