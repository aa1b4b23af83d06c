//! The Bevy side in memory: two or more `App`s on a [`MemoryNetwork`], driven by its clock
//! (each step is 10 ms of network time, then a frame of each app), so every test is
//! deterministic and fast. Real
//! WebRTC is tested in `tests/webrtc/`; here is the plugin's own logic: connecting, states,
//! peer entities, delivery, liveness, resume, the reconnect policy, identity, private rooms,
//! admission and budgets.

mod common;
#[path = "memory/migration.rs"]
mod migration;
#[cfg(feature = "replicon")]
#[path = "memory/replicon.rs"]
mod replicon;
#[path = "memory/star.rs"]
mod star;

use bevy::{prelude::*, time::TimeUpdateStrategy};
use bevy_peer_message::{Budget, ByeReason, prelude::*};
use common::*;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Bevy time per `update`.
const STEP: Duration = Duration::from_millis(10);
const SECOND: Duration = Duration::from_secs(1);

/// An app on `network` whose peer id is `id`, with a manual clock and recorders.
fn app(network: &MemoryNetwork, id: u128, plugin: PeerMessagePlugin) -> App {
    let mut app = App::new();
    app.add_plugins(MinimalPlugins)
        .insert_resource(TimeUpdateStrategy::ManualDuration(STEP))
        .add_plugins(plugin.in_memory(network).identity(identity(id)))
        .add_peer_message::<Numbered>(Delivery::Reliable);
    record_lifecycle(&mut app);
    record::<Received<Numbered>>(&mut app);
    record::<JoinRequest>(&mut app);
    app
}

/// For `duration`, step by step: the network's time (every app's protocol runs, updated or
/// not), then one frame of each app in `apps`.
fn run(network: &MemoryNetwork, apps: &mut [&mut App], duration: Duration) {
    for _ in 0..duration.as_millis().div_ceil(STEP.as_millis()) {
        network.advance(STEP);
        for app in apps.iter_mut() {
            app.update();
        }
    }
}

/// Steps as [`run`] does until `done` holds; panics after `limit`.
fn run_until(
    network: &MemoryNetwork,
    apps: &mut [&mut App],
    limit: Duration,
    what: &str,
    done: impl Fn(&[&mut App]) -> bool,
) {
    let mut elapsed = Duration::ZERO;
    while !done(apps) {
        assert!(elapsed < limit, "{what}: not after {limit:?}");
        network.advance(STEP);
        for app in apps.iter_mut() {
            app.update();
        }
        elapsed += STEP;
    }
}

/// Host `pid(1)` and joiner `pid(2)`, connected.
fn pair(network: &MemoryNetwork, plugin: impl Fn() -> PeerMessagePlugin) -> (App, App) {
    let mut host = app(network, 1, plugin());
    let mut joiner = app(network, 2, plugin());
    connect(network, &mut host, &mut joiner);
    (host, joiner)
}

/// `host` hosts "room", `joiner` joins it; returns once both saw the other connect.
fn connect(network: &MemoryNetwork, host: &mut App, joiner: &mut App) {
    net(host, |n| n.host("room"));
    host.update();
    net(joiner, |n| n.join("room"));
    run_until(network, &mut [host, joiner], SECOND, "connect", |a| {
        state(a[1]) == ConnectionState::Connected && !inbox::<PeerConnected>(a[0]).is_empty()
    });
}

#[test]
fn host_and_joiner_connect_with_states_entities_and_messages() {
    let network = MemoryNetwork::default();
    let mut host = app(&network, 1, PeerMessagePlugin::default());
    let mut joiner = app(&network, 2, PeerMessagePlugin::default());
    assert_eq!(state(&host), ConnectionState::Offline);
    net(&mut host, |n| n.host("room"));
    host.update();
    host.update();
    assert_eq!(
        state(&host),
        ConnectionState::Connected,
        "a host is connected once signalling is up"
    );
    net(&mut joiner, |n| n.join("room"));
    joiner.update(); // PostUpdate applies the join, ...
    joiner.update(); // ... the next frame's StateTransition the state.
    assert_eq!(state(&joiner), ConnectionState::Connecting);
    run_until(
        &network,
        &mut [&mut host, &mut joiner],
        SECOND,
        "connect",
        |a| state(a[1]) == ConnectionState::Connected,
    );
    host.update();

    let joined = inbox::<PeerConnected>(&host);
    assert_eq!(joined.len(), 1);
    assert_eq!((joined[0].peer, joined[0].role), (pid(2), Role::Joiner));
    let peer = host
        .world()
        .get::<Peer>(joined[0].entity)
        .expect("peer entity");
    assert_eq!((peer.id, peer.role), (pid(2), Role::Joiner));
    let at_joiner = inbox::<PeerConnected>(&joiner);
    assert_eq!((at_joiner[0].peer, at_joiner[0].role), (pid(1), Role::Host));

    for i in 0..100 {
        net(&mut host, |n| n.send(pid(2), Numbered(i)));
    }
    net(&mut joiner, |n| n.send_to_host(Numbered(1000)));
    run(&network, &mut [&mut host, &mut joiner], 5 * STEP);
    assert_eq!(numbers(&joiner), (0..100).collect::<Vec<_>>());
    assert_eq!(numbers(&host), vec![1000]);
    let from = inbox::<Received<Numbered>>(&host)[0].from;
    assert_eq!(from, pid(2));

    net(&mut joiner, |n| n.leave());
    run(&network, &mut [&mut host, &mut joiner], 5 * STEP);
    assert_eq!(state(&joiner), ConnectionState::Offline);
    let left = inbox::<PeerDisconnected>(&host);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].reason, DisconnectReason::Left);
    assert!(
        host.world().get_entity(joined[0].entity).is_err(),
        "entity despawned"
    );
    assert_no_errors(&[&host]);
}

#[test]
fn messages_leave_in_the_frame_they_are_sent_and_are_read_in_the_frame_they_arrive() {
    let network = MemoryNetwork::default();
    let (mut host, mut joiner) = pair(&network, PeerMessagePlugin::default);
    net(&mut host, |n| n.send(pid(2), Numbered(7)));
    host.update(); // PostUpdate of this frame sends.
    joiner.update(); // PreUpdate receives, Update reads.
    assert_eq!(numbers(&joiner), vec![7], "zero added frames each way");
}

#[test]
fn a_host_away_for_a_while_comes_back_and_nothing_is_lost_or_repeated() {
    let network = MemoryNetwork::default();
    let plugin = || PeerMessagePlugin::default().liveness_timeout(SECOND);
    let (mut host, mut joiner) = pair(&network, plugin);
    let mut sent = 0;
    for _ in 0..10 {
        net(&mut host, |n| n.send(pid(2), Numbered(sent)));
        sent += 1;
        run(&network, &mut [&mut host, &mut joiner], STEP);
    }
    network.set_online(pid(1), false);
    // The host keeps sending through a 5 s outage.
    for _ in 0..500 {
        if sent < 200 {
            net(&mut host, |n| n.send(pid(2), Numbered(sent)));
            sent += 1;
        }
        run(&network, &mut [&mut host, &mut joiner], STEP);
    }
    assert_eq!(inbox::<PeerReconnecting>(&joiner).len(), 1);
    assert_eq!(state(&joiner), ConnectionState::Reconnecting);
    network.set_online(pid(1), true);
    run_until(
        &network,
        &mut [&mut host, &mut joiner],
        5 * SECOND,
        "resume",
        |a| state(a[1]) == ConnectionState::Connected && numbers(a[1]).len() == 200,
    );
    assert_eq!(numbers(&joiner), (0..200).collect::<Vec<_>>());
    assert_eq!(inbox::<PeerReconnected>(&joiner).len(), 1);
    assert!(inbox::<PeerDisconnected>(&joiner).is_empty());
    assert_eq!(
        inbox::<PeerConnected>(&joiner).len(),
        1,
        "the same session, resumed"
    );
}

/// One app's frames stop for 5 s (a level load, a hidden tab) while its link is healthy and
/// the other app streams to it; the stalled app had queued messages just before.
fn stall(stalled_is_host: bool) {
    let network = MemoryNetwork::default();
    let plugin = || PeerMessagePlugin::default().liveness_timeout(SECOND);
    let (host, joiner) = pair(&network, plugin);
    let (mut stalled, mut other, stalled_id, other_id) = if stalled_is_host {
        (host, joiner, pid(1), pid(2))
    } else {
        (joiner, host, pid(2), pid(1))
    };
    let opened = network.sockets_opened();
    // Sent in the stalled app's last frame: it leaves in that frame's PostUpdate.
    for i in 0..5 {
        net(&mut stalled, |n| n.send(other_id, Numbered(1000 + i)));
    }
    stalled.update();
    // 5 s of network time with only the other app's frames; it sends a message a step.
    for i in 0..500 {
        net(&mut other, |n| n.send(stalled_id, Numbered(i)));
        run(&network, &mut [&mut other], STEP);
    }
    for (who, app) in [("the other app", &other), ("the stalled app", &stalled)] {
        assert!(
            inbox::<PeerReconnecting>(app).is_empty(),
            "{who} saw its peer away during a stall of frames"
        );
    }
    assert_eq!(state(&other), ConnectionState::Connected);
    assert_eq!(
        network.sockets_opened(),
        opened,
        "nobody re-opened a socket"
    );
    assert_eq!(numbers(&other), (1000..1005).collect::<Vec<_>>());
    // Everything sent during the stall is there in the first frame after it, once and in
    // order.
    stalled.update();
    assert_eq!(numbers(&stalled), (0..500).collect::<Vec<_>>());
    run(&network, &mut [&mut stalled, &mut other], SECOND);
    assert_eq!(numbers(&stalled).len(), 500);
    for app in [&stalled, &other] {
        assert!(inbox::<PeerReconnecting>(app).is_empty());
        assert_no_errors(&[app]);
        assert_eq!(inbox::<PeerConnected>(app).len(), 1);
    }
}

#[test]
fn a_host_whose_frames_stall_for_5_s_is_not_taken_for_away() {
    stall(true);
}

#[test]
fn a_joiner_whose_frames_stall_for_5_s_is_not_taken_for_away() {
    stall(false);
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Chunk(u32, Vec<u8>);

#[test]
fn a_stalled_app_holds_a_bounded_backlog_and_its_sender_sees_backpressure() {
    const LIMIT: usize = 16 * 1024;
    const WINDOW: usize = 4 * 1024;
    let network = MemoryNetwork::default();
    let plugin = || {
        PeerMessagePlugin::default()
            .liveness_timeout(SECOND)
            .session(SessionConfig {
                max_undelivered_bytes: LIMIT,
                max_in_flight: WINDOW,
                max_unacked_bytes: 256 * 1024,
                ..SessionConfig::default()
            })
    };
    let mut host = app(&network, 1, plugin());
    let mut joiner = app(&network, 2, plugin());
    for a in [&mut host, &mut joiner] {
        a.add_peer_message::<Chunk>(Delivery::Reliable);
        record::<Received<Chunk>>(a);
    }
    connect(&network, &mut host, &mut joiner);
    // The joiner's frames stop for 3 s; the host sends 200-byte messages as fast as the
    // plugin takes them.
    let mut sent = 0u32;
    let mut refused = 0;
    for _ in 0..300 {
        for _ in 0..50 {
            match net(&mut host, |n| {
                n.try_send(pid(2), &Chunk(sent, vec![7; 200]))
            }) {
                Ok(()) => sent += 1,
                Err(SendError::Backpressure { .. }) => refused += 1,
                Err(e) => panic!("{e}"),
            }
        }
        run(&network, &mut [&mut host], STEP);
    }
    assert!(refused > 0, "the host's game saw backpressure");
    // What the stalled app held: at most the limit, one window and a packet beyond it.
    joiner.update();
    let held: usize = inbox::<Received<Chunk>>(&joiner)
        .iter()
        .map(|r| r.message.1.len())
        .sum();
    assert!(
        held <= LIMIT + WINDOW + 1200,
        "{held} bytes held by a stalled app"
    );
    assert!(held >= LIMIT / 2, "it did take what it could: {held}");
    // Frames resume: everything arrives, once and in order, and nobody was dropped.
    run_until(
        &network,
        &mut [&mut host, &mut joiner],
        30 * SECOND,
        "drain",
        |a| inbox::<Received<Chunk>>(a[1]).len() == sent as usize,
    );
    let got: Vec<u32> = inbox::<Received<Chunk>>(&joiner)
        .iter()
        .map(|r| r.message.0)
        .collect();
    assert_eq!(got, (0..sent).collect::<Vec<_>>());
    for a in [&host, &joiner] {
        assert_no_errors(&[a]);
        assert!(inbox::<PeerReconnecting>(a).is_empty());
    }
}

#[test]
fn an_invalid_room_name_is_the_games_own_error() {
    let network = MemoryNetwork::default();
    let mut app = app(&network, 1, PeerMessagePlugin::default());
    net(&mut app, |n| n.host("no spaces"));
    // Refused in that frame's PostUpdate, read in the next frame's Update.
    run(&network, &mut [&mut app], 2 * STEP);
    let errors = inbox::<PeerError>(&app);
    assert!(
        matches!(
            errors.as_slice(),
            [PeerError { error: e @ PeerErrorKind::InvalidRoomName { .. }, .. }]
                if e.fault() == Fault::Local
        ),
        "{errors:?}"
    );
    assert_eq!(state(&app), ConnectionState::Offline);
}

#[test]
fn one_outage_is_one_error_however_many_attempts_it_takes() {
    let network = MemoryNetwork::default();
    let plugin = || PeerMessagePlugin::default().liveness_timeout(SECOND);
    let (mut host, mut joiner) = pair(&network, plugin);
    let opened = network.sockets_opened();
    network.set_online(pid(2), false);
    run(&network, &mut [&mut host, &mut joiner], 10 * SECOND);
    let attempts = network.sockets_opened() - opened;
    assert!(attempts >= 5, "the joiner kept trying ({attempts} sockets)");
    let errors = inbox::<PeerError>(&joiner);
    assert!(
        errors.len() <= 1,
        "{} errors for one outage: {errors:?}",
        errors.len()
    );
    network.set_online(pid(2), true);
    run_until(
        &network,
        &mut [&mut host, &mut joiner],
        5 * SECOND,
        "back",
        |a| state(a[1]) == ConnectionState::Connected,
    );
}

#[test]
fn reopen_attempts_follow_the_backoff() {
    let network = MemoryNetwork::default();
    let backoff = Backoff {
        base: Duration::from_millis(150),
        factor: 2.0,
        cap: Duration::from_millis(800),
        spread: 0.0,
    };
    let plugin = || PeerMessagePlugin::default().backoff(backoff.clone());
    let (mut host, mut joiner) = pair(&network, plugin);
    network.set_signaling(false);
    // The policy runs when a socket's signaling changes and when a backoff runs out (not on a
    // tick): attempts 150, 450, 1050, 1850 and 2650 ms after the first (waits of 150, 300,
    // 600, then the 800 ms cap), to the step.
    let mut opened = network.sockets_opened();
    let mut at = vec![];
    for step in 0..320u64 {
        run(&network, &mut [&mut host, &mut joiner], STEP);
        let now = network.sockets_opened();
        if now > opened {
            at.push((step * 10, now - opened));
            opened = now;
        }
    }
    let first = at[0].0;
    let since_first: Vec<(u64, u64)> = at.iter().map(|&(t, n)| (t - first, n)).collect();
    assert_eq!(
        since_first,
        vec![(0, 2), (150, 2), (450, 2), (1050, 2), (1850, 2), (2650, 2)],
        "(ms after the first attempt, sockets opened by host and joiner)"
    );
    // Links made before the server went down keep working.
    net(&mut host, |n| n.send(pid(2), Numbered(1)));
    run(&network, &mut [&mut host, &mut joiner], 2 * STEP);
    assert_eq!(numbers(&joiner), vec![1]);
    network.set_signaling(true);
    run(&network, &mut [&mut host, &mut joiner], 2 * SECOND);
    let opened = network.sockets_opened();
    run(&network, &mut [&mut host, &mut joiner], 2 * SECOND);
    assert_eq!(
        network.sockets_opened(),
        opened,
        "no attempts once the server is back"
    );
}

#[test]
fn after_the_resume_timeout_a_joiner_joins_again_as_a_new_session() {
    let network = MemoryNetwork::default();
    let plugin = || {
        PeerMessagePlugin::default()
            .liveness_timeout(SECOND)
            .resume_timeout(3 * SECOND)
    };
    let (mut host, mut joiner) = pair(&network, plugin);
    network.set_online(pid(1), false);
    run(&network, &mut [&mut host, &mut joiner], 5 * SECOND);
    let gone = inbox::<PeerDisconnected>(&joiner);
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].reason, DisconnectReason::Timeout);
    assert_eq!(
        inbox::<PeerDisconnected>(&host)[0].reason,
        DisconnectReason::Timeout
    );
    assert_eq!(state(&joiner), ConnectionState::Connecting, "joining again");
    // No join timeout ends a rejoin (the default join timeout is 10 s).
    run(&network, &mut [&mut host, &mut joiner], 15 * SECOND);
    assert_eq!(state(&joiner), ConnectionState::Connecting);
    network.set_online(pid(1), true);
    run_until(
        &network,
        &mut [&mut host, &mut joiner],
        5 * SECOND,
        "rejoin",
        |a| state(a[1]) == ConnectionState::Connected && inbox::<PeerConnected>(a[0]).len() == 2,
    );
    assert_eq!(inbox::<PeerConnected>(&joiner).len(), 2, "a fresh session");
    net(&mut host, |n| n.send(pid(2), Numbered(8)));
    run(&network, &mut [&mut host, &mut joiner], 2 * STEP);
    assert_eq!(numbers(&joiner), vec![8]);
    let errors = inbox::<PeerError>(&joiner);
    assert!(
        !errors
            .iter()
            .any(|e| matches!(e.error, PeerErrorKind::JoinTimeout { .. })),
        "{errors:?}"
    );
}

#[test]
fn a_joiner_that_opted_out_of_rejoining_goes_offline_after_the_resume_timeout() {
    let network = MemoryNetwork::default();
    let plugin = || {
        PeerMessagePlugin::default()
            .liveness_timeout(SECOND)
            .resume_timeout(3 * SECOND)
            .rejoin(false)
    };
    let (mut host, mut joiner) = pair(&network, plugin);
    network.set_online(pid(1), false);
    run(&network, &mut [&mut host, &mut joiner], 5 * SECOND);
    assert_eq!(
        inbox::<PeerDisconnected>(&joiner)[0].reason,
        DisconnectReason::Timeout
    );
    assert_eq!(state(&joiner), ConnectionState::Offline);
    network.set_online(pid(1), true);
    run(&network, &mut [&mut host, &mut joiner], 2 * SECOND);
    assert_eq!(state(&joiner), ConnectionState::Offline);
    assert_eq!(inbox::<PeerConnected>(&joiner).len(), 1);
}

#[test]
fn a_join_with_no_host_times_out() {
    let network = MemoryNetwork::default();
    let mut joiner = app(
        &network,
        2,
        PeerMessagePlugin::default().join_timeout(2 * SECOND),
    );
    net(&mut joiner, |n| n.join("empty"));
    run(&network, &mut [&mut joiner], 1900 * STEP / 10);
    assert_eq!(state(&joiner), ConnectionState::Connecting);
    run(&network, &mut [&mut joiner], 20 * STEP);
    assert_eq!(state(&joiner), ConnectionState::Offline);
    let errors = inbox::<PeerError>(&joiner);
    assert!(
        matches!(
            errors.as_slice(),
            [PeerError {
                error: PeerErrorKind::JoinTimeout { .. },
                ..
            }]
        ),
        "{errors:?}"
    );
}

#[test]
fn a_full_room_refuses_the_extra_joiner_and_the_others_carry_on() {
    let network = MemoryNetwork::default();
    let plugin = || PeerMessagePlugin::default().max_peers(1);
    let (mut host, mut joiner) = pair(&network, plugin);
    let mut extra = app(&network, 3, plugin());
    net(&mut extra, |n| n.join("room"));
    run(&network, &mut [&mut host, &mut joiner, &mut extra], SECOND);
    assert_eq!(state(&extra), ConnectionState::Offline);
    assert!(
        inbox::<PeerError>(&extra)
            .iter()
            .any(|e| e.error == PeerErrorKind::RoomFull),
        "{:?}",
        inbox::<PeerError>(&extra)
    );
    net(&mut host, |n| n.send(pid(2), Numbered(5)));
    run(&network, &mut [&mut host, &mut joiner], 2 * STEP);
    assert_eq!(numbers(&joiner), vec![5]);
    assert_eq!(state(&joiner), ConnectionState::Connected);
}

#[test]
fn three_peers_form_a_mesh_and_broadcast_reaches_everyone() {
    let network = MemoryNetwork::default();
    let (mut host, mut a) = pair(&network, PeerMessagePlugin::default);
    let mut b = app(&network, 3, PeerMessagePlugin::default());
    net(&mut b, |n| n.join("room"));
    run_until(
        &network,
        &mut [&mut host, &mut a, &mut b],
        SECOND,
        "mesh",
        |apps| {
            apps.iter()
                .all(|app| inbox::<PeerConnected>(app).len() == 2)
        },
    );
    net(&mut b, |n| n.broadcast(Numbered(9)));
    run(&network, &mut [&mut host, &mut a, &mut b], 2 * STEP);
    assert_eq!(numbers(&host), vec![9]);
    assert_eq!(numbers(&a), vec![9]);
}

#[test]
fn a_restarted_host_gets_its_joiners_back() {
    let network = MemoryNetwork::default();
    let (host, mut joiner) = pair(&network, PeerMessagePlugin::default);
    // The host's process ends (its sockets close with it) and starts again: a new app, with a
    // new random peer id, hosting the same room.
    drop(host);
    run(&network, &mut [&mut joiner], 10 * STEP);
    assert_eq!(state(&joiner), ConnectionState::Reconnecting);
    let mut restarted = app(&network, 11, PeerMessagePlugin::default());
    net(&mut restarted, |n| n.host("room"));
    run_until(
        &network,
        &mut [&mut restarted, &mut joiner],
        5 * SECOND,
        "rejoin",
        |a| state(a[1]) == ConnectionState::Connected && !inbox::<PeerConnected>(a[0]).is_empty(),
    );
    let gone = inbox::<PeerDisconnected>(&joiner);
    assert_eq!(gone.len(), 1);
    assert_eq!(
        (gone[0].peer, gone[0].reason),
        (pid(1), DisconnectReason::Replaced)
    );
    let connected = inbox::<PeerConnected>(&joiner);
    assert_eq!(
        connected.last().map(|c| (c.peer, c.role)),
        Some((pid(11), Role::Host))
    );
    net(&mut restarted, |n| n.send(pid(2), Numbered(3)));
    run(&network, &mut [&mut restarted, &mut joiner], 2 * STEP);
    assert_eq!(numbers(&joiner), vec![3]);
    assert_no_errors(&[&restarted]);
}

#[test]
fn a_second_host_is_refused_while_the_first_is_there() {
    let network = MemoryNetwork::default();
    let (mut host, mut joiner) = pair(&network, PeerMessagePlugin::default);
    let mut intruder = app(&network, 12, PeerMessagePlugin::default());
    net(&mut intruder, |n| n.host("room"));
    run(
        &network,
        &mut [&mut host, &mut joiner, &mut intruder],
        SECOND,
    );
    assert!(inbox::<PeerDisconnected>(&joiner).is_empty());
    assert!(
        inbox::<PeerError>(&joiner)
            .iter()
            .any(|e| e.error == PeerErrorKind::DuplicateHost),
        "{:?}",
        inbox::<PeerError>(&joiner)
    );
    net(&mut host, |n| n.send(pid(2), Numbered(4)));
    run(&network, &mut [&mut host, &mut joiner], 2 * STEP);
    assert_eq!(numbers(&joiner), vec![4]);
}

#[test]
fn the_id_follows_the_identity_the_game_gives() {
    let network = MemoryNetwork::default();
    let (mut host, mut joiner) = pair(&network, PeerMessagePlugin::default);
    assert_eq!(net(&mut host, |n| n.id()), identity(1).peer_id());
    assert_eq!(net(&mut joiner, |n| n.host_id()), Some(pid(1)));
    assert_eq!(inbox::<PeerConnected>(&host)[0].peer, pid(2));
}

#[test]
fn a_private_room_refuses_a_wrong_secret_on_both_sides_and_takes_the_right_one() {
    let network = MemoryNetwork::default();
    let secret = |s: &str| PeerMessagePlugin::default().room_secret(RoomSecret::new(s));
    let mut host = app(&network, 1, secret("opensesame"));
    let mut wrong = app(&network, 2, secret("open sesame"));
    let mut none = app(&network, 3, PeerMessagePlugin::default());
    net(&mut host, |n| n.host("room"));
    host.update();
    net(&mut wrong, |n| n.join("room"));
    net(&mut none, |n| n.join("room"));
    run(&network, &mut [&mut host, &mut wrong, &mut none], SECOND);
    for (app, n) in [(&wrong, 2), (&none, 3)] {
        assert_eq!(
            state(app),
            ConnectionState::Offline,
            "app {n}: the join is over"
        );
        assert!(
            inbox::<PeerError>(app)
                .iter()
                .any(|e| e.error == PeerErrorKind::RoomSecretMismatch && e.peer == Some(pid(1))),
            "{:?}",
            inbox::<PeerError>(app)
        );
        assert!(
            inbox::<PeerError>(&host)
                .iter()
                .any(|e| e.error == PeerErrorKind::RoomSecretMismatch && e.peer == Some(pid(n))),
            "{:?}",
            inbox::<PeerError>(&host)
        );
    }
    assert!(inbox::<PeerConnected>(&host).is_empty());
    let mut right = app(&network, 4, secret("opensesame"));
    net(&mut right, |n| n.join("room"));
    run_until(
        &network,
        &mut [&mut host, &mut right],
        SECOND,
        "join",
        |a| state(a[1]) == ConnectionState::Connected,
    );
}

#[test]
fn the_hosts_game_reviews_joiners_and_a_refused_one_talks_to_nobody() {
    let network = MemoryNetwork::default();
    let mut host = app(
        &network,
        1,
        PeerMessagePlugin::default().review_joiners(Duration::from_secs(5)),
    );
    let mut alice = app(&network, 2, PeerMessagePlugin::default());
    let mut mallory = app(&network, 3, PeerMessagePlugin::default());
    net(&mut host, |n| n.host("room"));
    host.update();
    net(&mut alice, |n| n.join_with("room", b"alice".to_vec()));
    run_until(
        &network,
        &mut [&mut host, &mut alice],
        SECOND,
        "request",
        |a| !inbox::<JoinRequest>(a[0]).is_empty(),
    );
    assert_eq!(
        inbox::<JoinRequest>(&host),
        vec![JoinRequest {
            peer: pid(2),
            payload: b"alice".to_vec()
        }]
    );
    // The decision can take frames; meanwhile the joiner waits, connecting.
    run(&network, &mut [&mut host, &mut alice], 300 * STEP / 10);
    assert_eq!(state(&alice), ConnectionState::Connecting);
    net(&mut host, |n| n.admit(pid(2)));
    run_until(
        &network,
        &mut [&mut host, &mut alice],
        SECOND,
        "admitted",
        |a| state(a[1]) == ConnectionState::Connected,
    );
    net(&mut mallory, |n| n.join_with("room", b"mallory".to_vec()));
    run_until(
        &network,
        &mut [&mut host, &mut alice, &mut mallory],
        SECOND,
        "mallory's request",
        |a| inbox::<JoinRequest>(a[0]).len() == 2,
    );
    net(&mut host, |n| n.refuse(pid(3)));
    run(
        &network,
        &mut [&mut host, &mut alice, &mut mallory],
        8 * SECOND,
    );
    assert_eq!(state(&mallory), ConnectionState::Offline);
    assert!(
        inbox::<PeerError>(&mallory)
            .iter()
            .any(|e| e.error == PeerErrorKind::NotAdmitted),
        "{:?}",
        inbox::<PeerError>(&mallory)
    );
    assert!(inbox::<PeerConnected>(&mallory).is_empty());
    assert!(
        inbox::<PeerConnected>(&alice)
            .iter()
            .all(|c| c.peer != pid(3)),
        "alice never binds a peer the host did not admit"
    );
    assert_no_errors(&[&host, &alice]);
    net(&mut alice, |n| n.send_to_host(Numbered(1)));
    run(&network, &mut [&mut host, &mut alice], 2 * STEP);
    assert_eq!(numbers(&host), vec![1]);
}

/// Unreliable noise from a flooder.
#[derive(Serialize, Deserialize, Clone, Debug)]
struct Noise(Vec<u8>);

#[test]
fn a_flooder_over_budget_is_dropped_and_an_honest_stream_is_untouched() {
    let network = MemoryNetwork::default();
    let plugin = || {
        PeerMessagePlugin::default().budgets(Budgets {
            messages_per_second: 1_000,
            burst: SECOND,
            ..Budgets::default()
        })
    };
    let with_noise = |mut app: App| {
        app.add_peer_message::<Noise>(Delivery::Unreliable);
        app
    };
    let mut host = with_noise(app(&network, 1, plugin()));
    let mut honest = with_noise(app(&network, 2, plugin()));
    let mut flooder = with_noise(app(&network, 3, plugin()));
    connect(&network, &mut host, &mut honest);
    net(&mut flooder, |n| n.join("room"));
    run_until(
        &network,
        &mut [&mut host, &mut honest, &mut flooder],
        SECOND,
        "mesh",
        |a| inbox::<PeerConnected>(a[0]).len() == 2,
    );
    // 2 s: the honest joiner sends 2 numbered messages a frame, the flooder 100 noise
    // messages a frame (10 000 a second, ten times the budget).
    let mut sent = 0;
    for _ in 0..200 {
        for _ in 0..2 {
            net(&mut honest, |n| n.send_to_host(Numbered(sent)));
            sent += 1;
        }
        for _ in 0..100 {
            net(&mut flooder, |n| {
                if n.host_id().is_some() {
                    n.send_to_host(Noise(vec![0; 64]))
                }
            });
        }
        run(&network, &mut [&mut host, &mut honest, &mut flooder], STEP);
    }
    run(
        &network,
        &mut [&mut host, &mut honest, &mut flooder],
        SECOND,
    );
    assert_eq!(
        numbers(&host),
        (0..sent).collect::<Vec<_>>(),
        "exactly once, in order"
    );
    let errors = inbox::<PeerError>(&host);
    assert_eq!(
        errors,
        vec![PeerError {
            peer: Some(pid(3)),
            error: PeerErrorKind::OverBudget {
                budget: Budget::MessagesPerSecond,
                limit: 1_000
            }
        }]
    );
    assert!(
        inbox::<PeerDisconnected>(&honest)
            .iter()
            .any(|d| d.peer == pid(3) && d.reason == DisconnectReason::Evicted),
        "the host removes the flooder from the room"
    );
    assert!(inbox::<PeerError>(&honest).is_empty());
    assert_eq!(state(&honest), ConnectionState::Connected);
}

/// Found by the soak (BENCHMARKS.md, "Security: soak and fuzzing"). Each outage of the host
/// makes every joiner open a new socket, so two joiners get up to four links between them and
/// bind the new ones in their own order. Each side used to close the link it bound before,
/// and they could end up each bound on a link the other had closed: a joiner lost another for
/// good (`Timeout` after `resume_timeout`) although their own link never went away. Now the
/// older link stays as a standby until unused, and the two settle on one link.
#[test]
fn joiners_keep_each_other_through_repeated_host_outages() {
    let network = MemoryNetwork::default();
    let (mut host, mut a) = pair(&network, PeerMessagePlugin::default);
    let mut b = app(&network, 3, PeerMessagePlugin::default());
    let mut c = app(&network, 4, PeerMessagePlugin::default());
    net(&mut b, |n| n.join("room"));
    net(&mut c, |n| n.join("room"));
    run_until(
        &network,
        &mut [&mut host, &mut a, &mut b, &mut c],
        2 * SECOND,
        "mesh",
        |apps| {
            apps.iter()
                .all(|app| inbox::<PeerConnected>(app).len() == 3)
        },
    );
    for _ in 0..4 {
        network.set_online(pid(1), false);
        run(
            &network,
            &mut [&mut host, &mut a, &mut b, &mut c],
            5 * SECOND,
        );
        network.set_online(pid(1), true);
        run(
            &network,
            &mut [&mut host, &mut a, &mut b, &mut c],
            55 * SECOND,
        );
    }
    for (name, app) in [("a", &a), ("b", &b), ("c", &c)] {
        assert!(
            inbox::<PeerDisconnected>(app).is_empty(),
            "{name}: {:?}",
            inbox::<PeerDisconnected>(app)
        );
        assert_eq!(net_peers(app), 3, "{name}");
    }
}

fn net_peers(app: &App) -> usize {
    app.world()
        .iter_entities()
        .filter(|e| e.contains::<Peer>())
        .count()
}

/// A level: large enough to travel as many packets.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Level(Vec<u8>);

/// A large reliable message reports its progress on both sides, frame after frame, growing, up
/// to `done == total` once; small messages report nothing.
#[test]
fn a_large_message_reports_its_progress_on_both_sides() {
    let network = MemoryNetwork::default();
    let slow = || {
        PeerMessagePlugin::default().conditioner(LinkConditionerConfig {
            latency: Duration::from_millis(30),
            jitter: Duration::ZERO,
            loss: 0.0,
        })
    };
    let mut apps: Vec<App> = [1, 2]
        .into_iter()
        .map(|id| {
            let mut app = app(&network, id, slow());
            app.add_peer_message_named::<Level>("level", Delivery::Reliable);
            record::<TransferProgress>(&mut app);
            record::<Received<Level>>(&mut app);
            app
        })
        .collect();
    let (host, joiner) = apps.split_at_mut(1);
    let (host, joiner) = (&mut host[0], &mut joiner[0]);
    connect(&network, host, joiner);
    let level: Vec<u8> = (0..400_000u32).map(|i| i as u8).collect();
    net(host, |n| n.send(pid(2), Level(level.clone())));
    net(host, |n| n.send(pid(2), Numbered(7)));
    run_until(
        &network,
        &mut [host, joiner],
        10 * SECOND,
        "the level",
        |a| !inbox::<Received<Level>>(a[1]).is_empty(),
    );
    run(&network, &mut [host, joiner], SECOND);
    assert_eq!(inbox::<Received<Level>>(joiner)[0].message.0, level);
    for (app, direction, peer) in [
        (&*host, TransferDirection::Sending, pid(2)),
        (&*joiner, TransferDirection::Receiving, pid(1)),
    ] {
        let progress = inbox::<TransferProgress>(app);
        assert!(
            progress.len() >= 3,
            "{direction:?}: progress over several frames: {progress:?}"
        );
        // The size is the encoded message's: the bytes and their length.
        let total = progress[0].total;
        assert!((level.len()..level.len() + 16).contains(&total), "{total}");
        assert!(progress.iter().all(|p| p.direction == direction
            && p.peer == peer
            && p.message == "level"
            && p.total == total));
        assert!(
            progress.windows(2).all(|w| w[0].done < w[1].done),
            "{direction:?}: growing: {progress:?}"
        );
        assert_eq!(progress.last().map(|p| p.done), Some(total));
        assert_eq!(
            progress.iter().filter(|p| p.done == p.total).count(),
            1,
            "{direction:?}: complete once"
        );
    }
    let sending_id = inbox::<TransferProgress>(host)[0].id;
    assert_eq!(
        inbox::<TransferProgress>(joiner)[0].id,
        sending_id,
        "the same id both sides"
    );
}

/// The room's diagnostics fill in with traffic: one peer, a round trip, bytes and packets each
/// way, and a reconnect counted after an outage.
#[test]
fn diagnostics_measure_the_room() {
    use bevy::diagnostic::DiagnosticsStore;
    type D = PeerMessageDiagnosticsPlugin;
    let network = MemoryNetwork::default();
    let mut host = app(&network, 1, PeerMessagePlugin::default());
    let mut joiner = app(&network, 2, PeerMessagePlugin::default());
    joiner.add_plugins(PeerMessageDiagnosticsPlugin);
    connect(&network, &mut host, &mut joiner);
    for i in 0..100 {
        net(&mut joiner, |n| n.send_to_host(Numbered(i)));
        run(&network, &mut [&mut host, &mut joiner], STEP);
    }
    let value = |app: &App, path| {
        app.world()
            .resource::<DiagnosticsStore>()
            .get(&path)
            .and_then(|d| d.value())
    };
    assert_eq!(value(&joiner, D::PEERS), Some(1.0));
    assert!(value(&joiner, D::RTT).is_some_and(|ms| ms >= 0.0));
    for path in [D::BYTES_OUT, D::PACKETS_OUT, D::BYTES_IN, D::PACKETS_IN] {
        assert!(
            value(&joiner, path.clone()).is_some_and(|v| v > 0.0),
            "{path:?}"
        );
    }
    assert_eq!(value(&joiner, D::RECONNECTS), Some(0.0));
    assert!(value(&joiner, D::MESSAGES_OUT).is_some_and(|v| v > 0.0));
    // Loss needs a few seconds of probes.
    assert_eq!(value(&joiner, D::LOSS), None);
    run(&network, &mut [&mut host, &mut joiner], 3 * SECOND);
    assert_eq!(value(&joiner, D::LOSS), Some(0.0));
    let host_rtt = D::peer_path(pid(1), "rtt");
    let host_loss = D::peer_path(pid(1), "loss");
    assert!(value(&joiner, host_rtt.clone()).is_some_and(|ms| ms >= 0.0));
    assert_eq!(value(&joiner, host_loss.clone()), Some(0.0));
    network.set_online(pid(1), false);
    run(&network, &mut [&mut host, &mut joiner], 2 * SECOND);
    network.set_online(pid(1), true);
    run_until(
        &network,
        &mut [&mut host, &mut joiner],
        20 * SECOND,
        "back",
        |a| !inbox::<PeerReconnected>(a[1]).is_empty(),
    );
    run(&network, &mut [&mut host, &mut joiner], STEP);
    assert_eq!(value(&joiner, D::RECONNECTS), Some(1.0));
    // A peer gone has no figures any more.
    net(&mut host, |n| n.leave());
    run(&network, &mut [&mut host, &mut joiner], 5 * STEP);
    assert_eq!(value(&joiner, host_rtt), None);
    assert_eq!(value(&joiner, host_loss), None);
}

#[test]
fn the_host_kicks_a_joiner_out_of_the_room() {
    let network = MemoryNetwork::default();
    let plugin = || PeerMessagePlugin::default().rejoin(false);
    let mut host = app(&network, 1, plugin());
    let mut kicked = app(&network, 2, plugin());
    let mut stays = app(&network, 3, plugin());
    connect(&network, &mut host, &mut kicked);
    net(&mut stays, |n| n.join("room"));
    run_until(
        &network,
        &mut [&mut host, &mut kicked, &mut stays],
        SECOND,
        "three",
        |a| inbox::<PeerConnected>(a[2]).len() == 2,
    );
    net(&mut stays, |n| n.kick(pid(2))); // Not a host: a warning, nothing else.
    net(&mut host, |n| n.kick(pid(2)));
    run(
        &network,
        &mut [&mut host, &mut kicked, &mut stays],
        10 * STEP,
    );
    let gone = |app: &App| {
        inbox::<PeerDisconnected>(app)
            .iter()
            .map(|d| (d.peer, d.reason))
            .collect::<Vec<_>>()
    };
    assert_eq!(gone(&host), vec![(pid(2), DisconnectReason::Kicked)]);
    assert_eq!(gone(&stays), vec![(pid(2), DisconnectReason::Evicted)]);
    assert_eq!(state(&kicked), ConnectionState::Offline);
    assert_eq!(
        inbox::<PeerError>(&kicked)
            .iter()
            .map(|e| e.error.clone())
            .collect::<Vec<_>>(),
        vec![PeerErrorKind::RefusedByPeer(ByeReason::Kicked)]
    );
    net(&mut stays, |n| n.send_to_host(Numbered(7)));
    run(
        &network,
        &mut [&mut host, &mut kicked, &mut stays],
        5 * STEP,
    );
    assert_eq!(numbers(&host), vec![7]);
    assert_no_errors(&[&host, &stays]);
}

#[test]
fn a_joiner_kicked_while_away_hears_it_when_it_comes_back() {
    let network = MemoryNetwork::default();
    let plugin = || {
        PeerMessagePlugin::default()
            .rejoin(false)
            .liveness_timeout(SECOND)
    };
    let (mut host, mut joiner) = pair(&network, plugin);
    network.set_online(pid(2), false);
    run(&network, &mut [&mut host, &mut joiner], 2 * SECOND);
    assert_eq!(inbox::<PeerReconnecting>(&host).len(), 1);
    net(&mut host, |n| n.kick(pid(2)));
    run(&network, &mut [&mut host, &mut joiner], 5 * STEP);
    network.set_online(pid(2), true);
    run_until(
        &network,
        &mut [&mut host, &mut joiner],
        10 * SECOND,
        "the joiner told",
        |a| state(a[1]) == ConnectionState::Offline,
    );
    assert!(
        inbox::<PeerError>(&joiner)
            .iter()
            .any(|e| e.error == PeerErrorKind::RefusedByPeer(ByeReason::Kicked)),
        "{:?}",
        inbox::<PeerError>(&joiner)
    );
    // The host: one disconnect (the kick), no second session, the return refused.
    assert_eq!(
        inbox::<PeerDisconnected>(&host)
            .iter()
            .map(|d| d.reason)
            .collect::<Vec<_>>(),
        vec![DisconnectReason::Kicked]
    );
    assert_eq!(inbox::<PeerConnected>(&host).len(), 1);
    assert!(
        inbox::<PeerError>(&host)
            .iter()
            .all(|e| e.error == PeerErrorKind::KickedPeerReturned)
    );
}
