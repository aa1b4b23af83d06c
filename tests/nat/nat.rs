//! Peers behind NATs, in the internet in a box ([`crate::internet`]): each peer a process in
//! its own home namespace behind a NAT router, the signaling server (a helper process) and
//! coturn in the public namespace. Ordinary NATs connect directly through STUN's server-reflexive
//! candidates; symmetric NATs only through a TURN relay; symmetric NATs without one fail with a
//! `NoNetworkPath` error that names the cure.

use crate::box_peer::{Outcome, Script, Spawner, host_main, joiner_main, run_pair, signaling_main};
use crate::harness::require_isolated_network;
use crate::internet::{Internet, Nat};
use crate::netns::{Child, can_create_namespaces};
use std::time::{Duration, Instant};

const SECOND: Duration = Duration::from_secs(1);

/// Helper, run in a home namespace: the host's side (see `box_peer::host_main`).
#[test]
#[ignore = "helper: started inside a home namespace by the NAT tests"]
fn child_nat_host() {
    host_main();
}

/// Helper, run in a home namespace: the joiner's side (see `box_peer::joiner_main`).
#[test]
#[ignore = "helper: started inside a home namespace by the NAT tests"]
fn child_nat_joiner() {
    joiner_main();
}

/// Helper, run in the public namespace: the signaling server (see `box_peer::signaling_main`).
#[test]
#[ignore = "helper: started inside the public namespace by the NAT tests"]
fn child_nat_signaling() {
    signaling_main();
}

const HELPERS: Spawner = Spawner {
    signaling: |ns, env| Child::spawn(ns, "nat::child_nat_signaling", env),
    host: |ns, env| Child::spawn(ns, "nat::child_nat_host", env),
    joiner: |ns, env| Child::spawn(ns, "nat::child_nat_joiner", env),
};

/// Runs the pair with `pings` and nothing else.
fn pings(
    internet: &Internet,
    turn: bool,
    pings: u32,
    join_timeout: Duration,
    during: impl FnOnce(&Child),
) -> Outcome {
    let script = Script {
        turn,
        pings,
        bulk: "",
        join_timeout,
    };
    run_pair(internet, &HELPERS, script, during)
}

/// One NAT test at a time: each runs two peer processes and coturn beside the test binary's
/// own tests, which is as much as two cores take without slowing WebRTC's setup past the
/// other tests' timeouts. Held for the whole test.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn ready() -> bool {
    require_isolated_network();
    can_create_namespaces() && crate::internet::tools_present()
}

/// Both peers behind ordinary home NATs, STUN only: they connect straight through the NATs
/// (server-reflexive candidates, no relay) and every ping comes back once, in order.
#[test]
fn behind_ordinary_nats_peers_connect_directly_through_stun() {
    connects_with_200_pings([Nat::Cone, Nat::Cone], false, "PATH Some(ServerReflexive)");
}

/// A host behind the first NAT and a joiner behind the second, with TURN or not: they connect
/// by `path` and every one of 200 pings comes back once, in order.
fn connects_with_200_pings(nats: [Nat; 2], turn: bool, path: &str) {
    if !ready() {
        return;
    }
    let _serial = serial();
    let mut internet = Internet::create(&nats);
    internet.start_turn();
    internet.start_signaling(HELPERS.signaling);
    let run = pings(&internet, turn, 200, 20 * SECOND, |_| {});
    assert!(run.joiner.said("CONNECTED"), "connected");
    assert!(run.joiner.said(path), "connected by {path}");
    assert!(run.joiner.said("ECHOES 200 of 200, in order: true"));
}

/// Both peers behind symmetric NATs, with a TURN server (short-lived credentials from
/// `TurnCredentials::rest`): they connect through the relay, and every ping comes back once,
/// in order.
#[test]
fn behind_symmetric_nats_peers_connect_through_turn() {
    connects_with_200_pings([Nat::Symmetric, Nat::Symmetric], true, "PATH Some(Relayed)");
}

/// Both peers behind symmetric NATs and no TURN server: no path exists. The join fails at
/// `join_timeout` with `NoNetworkPath`, which says a TURN server is the cure, not with a
/// generic timeout.
#[test]
fn behind_symmetric_nats_without_turn_the_join_fails_with_no_network_path() {
    if !ready() {
        return;
    }
    let _serial = serial();
    let mut internet = Internet::create(&[Nat::Symmetric, Nat::Symmetric]);
    internet.start_turn();
    internet.start_signaling(HELPERS.signaling);
    let run = pings(&internet, false, 0, 8 * SECOND, |_| {});
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
    internet.start_signaling(HELPERS.signaling);
    let home = &internet.homes[1];
    let run = pings(&internet, turn, 800, 20 * SECOND, |joiner| {
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
    let _serial = serial();
    cut_behind_nat(Nat::Cone, false, "PATH Some(ServerReflexive)");
}

#[test]
fn a_cut_behind_symmetric_nats_through_turn_with_new_mappings_loses_nothing() {
    if !ready() {
        return;
    }
    let _serial = serial();
    cut_behind_nat(Nat::Symmetric, true, "PATH Some(Relayed)");
}

/// One peer behind a symmetric NAT, the other behind an ordinary one: hole punching needs both
/// NATs to keep their mappings, so this too only connects through the TURN relay.
#[test]
fn behind_a_symmetric_and_an_ordinary_nat_peers_connect_through_turn() {
    connects_with_200_pings([Nat::Symmetric, Nat::Cone], true, "PATH Some(Relayed)");
}
