//! Room semantics: broadcast in a mesh of three, leave, join with no host.

use crate::harness::*;
use bevy::prelude::*;
use bevy_peer_message::{EmbeddedServer, prelude::*};
use std::time::{Duration, Instant};

/// Three peers in one room: everyone connects to everyone, and a broadcast reaches each other
/// peer exactly once, from the host and from a joiner alike.
#[test]
fn broadcast_reaches_everyone_once_with_three_peers() {
    let (mut host, url) = host_app("three", PeerMessagePlugin::default());
    let mut a = app(PeerMessagePlugin::default().signaling(Signaling::server(url.clone())));
    let mut b = app(PeerMessagePlugin::default().signaling(Signaling::server(url)));
    net(&mut a, |n| n.join("three"));
    net(&mut b, |n| n.join("three"));
    wait_connected(&mut [&mut host, &mut a, &mut b], 2);
    let (hid, aid, bid) = (id(&mut host), id(&mut a), id(&mut b));
    for app in [&mut host, &mut a, &mut b] {
        assert_eq!(net(app, |n| n.peers().count()), 2);
    }

    net(&mut host, |n| n.broadcast(Numbered(1)));
    net(&mut a, |n| n.broadcast(Numbered(2)));
    run_until(
        &mut [&mut host, &mut a, &mut b],
        Duration::from_secs(10),
        "broadcasts",
        |x| {
            numbers_from(x[1], hid).len() == 1
                && numbers_from(x[2], hid).len() == 1
                && numbers_from(x[0], aid).len() == 1
                && numbers_from(x[2], aid).len() == 1
        },
    );
    run_for(&mut [&mut host, &mut a, &mut b], Duration::from_millis(300));
    assert_eq!(numbers_from(&a, hid), vec![1]);
    assert_eq!(numbers_from(&b, hid), vec![1]);
    assert_eq!(numbers_from(&host, aid), vec![2]);
    assert_eq!(numbers_from(&b, aid), vec![2]);
    assert!(numbers_from(&host, bid).is_empty());
    assert_eq!(
        inbox::<Received<Numbered>>(&a).len(),
        1,
        "nobody hears itself"
    );
}

/// `leave()` tells the others at once (a `Bye`), long before WebRTC would notice (~30 s).
#[test]
fn leave_is_seen_at_once_by_the_others() {
    let (mut host, mut joiner) = connected_pair("leave");
    let joiner_id = id(&mut joiner);
    let started = Instant::now();
    net(&mut joiner, |n| n.leave());
    run_until(
        &mut [&mut host, &mut joiner],
        Duration::from_secs(5),
        "the host to see the leave",
        |a| !inbox::<PeerDisconnected>(a[0]).is_empty(),
    );
    eprintln!("leave seen after {:?}", started.elapsed());
    assert_eq!(
        inbox::<PeerDisconnected>(&host)[0],
        PeerDisconnected {
            peer: joiner_id,
            reason: DisconnectReason::Left
        }
    );
    assert_eq!(
        inbox::<PeerDisconnected>(&joiner)[0].reason,
        DisconnectReason::LocalLeave
    );
    assert_eq!(state(&joiner), ConnectionState::Offline);
    assert_eq!(
        state(&host),
        ConnectionState::Connected,
        "the host's room stays open"
    );
    let mut peers = host.world_mut().query::<&Peer>();
    assert_eq!(
        peers.iter(host.world()).count(),
        0,
        "the peer entity is despawned"
    );

    // And when the host leaves, its joiners leave with it.
    let (mut host, mut joiner) = connected_pair("leave2");
    net(&mut host, |n| n.leave());
    run_until(
        &mut [&mut host, &mut joiner],
        Duration::from_secs(5),
        "the joiner to go offline",
        |a| state(a[1]) == ConnectionState::Offline,
    );
    assert_eq!(
        inbox::<PeerDisconnected>(&joiner)[0].reason,
        DisconnectReason::Left
    );
    assert!(host.world().get_resource::<SignalingServerInfo>().is_none());
}

/// A join that finds no host fails after `join_timeout` with a clear error, back to Offline;
/// a join that finds no signaling server fails with a signaling error.
#[test]
fn join_without_a_host_times_out() {
    let server = EmbeddedServer::start("127.0.0.1:0".parse().unwrap()).expect("server");
    let url = format!("ws://127.0.0.1:{}", server.addr().port());
    let mut joiner = app(PeerMessagePlugin::default()
        .signaling(Signaling::server(url))
        .join_timeout(Duration::from_millis(1500)));
    net(&mut joiner, |n| n.join("nobody-here"));
    joiner.update();
    joiner.update();
    assert_eq!(state(&joiner), ConnectionState::Connecting);
    let started = Instant::now();
    run_until(
        &mut [&mut joiner],
        Duration::from_secs(10),
        "the join timeout",
        |a| state(a[0]) == ConnectionState::Offline,
    );
    assert!(started.elapsed() >= Duration::from_millis(1400));
    let errors = inbox::<PeerError>(&joiner);
    assert!(
        matches!(&errors[..], [PeerError { peer: None, error: PeerErrorKind::JoinTimeout { room, .. } }] if room == "nobody-here"),
        "{errors:?}"
    );
    // The app can try again afterwards.
    net(&mut joiner, |n| n.join("nobody-here"));
    joiner.update();
    joiner.update();
    assert_eq!(state(&joiner), ConnectionState::Connecting);

    // No signaling server at all (a port nobody listens on): the outage is reported once
    // (attempts repeat with backoff, each in the log; tests/memory.rs counts them), and the
    // join still ends at its timeout.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut lost = app(PeerMessagePlugin::default()
        .signaling(Signaling::server(format!("ws://127.0.0.1:{port}")))
        .join_timeout(Duration::from_secs(3)));
    net(&mut lost, |n| n.join("room"));
    run_until(
        &mut [&mut lost],
        Duration::from_secs(30),
        "the join timeout",
        |a| {
            inbox::<PeerError>(a[0])
                .iter()
                .any(|e| matches!(e.error, PeerErrorKind::JoinTimeout { .. }))
        },
    );
    let signaling = inbox::<PeerError>(&lost)
        .iter()
        .filter(|e| matches!(e.error, PeerErrorKind::Signaling(_)))
        .count();
    assert_eq!(
        signaling,
        1,
        "one outage, one error: {:?}",
        inbox::<PeerError>(&lost)
    );
    lost.update();
    assert_eq!(state(&lost), ConnectionState::Offline);
}

/// A host and `joiners` joiners, all joining `room` at once.
fn room_of(room: &str, joiners: usize) -> (App, Vec<App>) {
    let (host, url) = host_app(room, PeerMessagePlugin::default());
    let mut others: Vec<App> = (0..joiners)
        .map(|_| app(PeerMessagePlugin::default().signaling(Signaling::server(url.clone()))))
        .collect();
    for j in &mut others {
        net(j, |n| n.join(room));
    }
    (host, others)
}

/// Six peers joining at once form a full mesh (15 WebRTC connections made concurrently on a
/// small machine), and it stays whole.
#[test]
fn six_peers_form_a_full_mesh() {
    let (mut host, mut joiners) = room_of("mesh", 5);
    let mut apps: Vec<&mut App> = std::iter::once(&mut host)
        .chain(joiners.iter_mut())
        .collect();
    let start = Instant::now();
    run_until(
        &mut apps,
        Duration::from_secs(40),
        "a full mesh of 6",
        |apps| {
            apps.iter_mut().all(|a| {
                net(a, |n| n.peers().count()) == 5 && state(a) == ConnectionState::Connected
            })
        },
    );
    eprintln!("full mesh of 6 in {:?}", start.elapsed());
    run_for(&mut apps, Duration::from_secs(2));
    for a in apps.iter_mut() {
        assert_eq!(net(a, |n| n.peers().count()), 5, "the mesh stays whole");
        assert!(inbox::<PeerDisconnected>(a).is_empty());
    }
}

/// A process that has run a big room keeps working: after an 8-peer mesh is formed and torn
/// down, a fresh host and joiner in the same process connect and talk both ways.
#[test]
fn a_fresh_pair_works_after_a_big_room_in_the_same_process() {
    let (mut host, mut joiners) = room_of("big", 7);
    {
        let mut apps: Vec<&mut App> = std::iter::once(&mut host)
            .chain(joiners.iter_mut())
            .collect();
        run_until(&mut apps, Duration::from_secs(60), "a mesh of 8", |apps| {
            apps.iter_mut().all(|a| net(a, |n| n.peers().count()) == 7)
        });
        for a in apps.iter_mut() {
            net(a, |n| n.leave());
        }
        run_for(&mut apps, Duration::from_millis(300));
    }
    drop(joiners);
    drop(host);

    for round in 0..3 {
        let room = format!("after{round}");
        let (mut host, url) = host_app(&room, PeerMessagePlugin::default());
        let mut joiner = app(PeerMessagePlugin::default().signaling(Signaling::server(url)));
        net(&mut joiner, |n| n.join(room.clone()));
        wait_connected(&mut [&mut host, &mut joiner], 1);
        let joiner_id = id(&mut joiner);
        net(&mut host, |n| n.send(joiner_id, Numbered(round)));
        net(&mut joiner, |n| n.send_to_host(Numbered(100 + round)));
        run_until(
            &mut [&mut host, &mut joiner],
            Duration::from_secs(20),
            "a message each way",
            |a| numbers(a[0]) == vec![100 + round] && numbers(a[1]) == vec![round],
        );
    }
}
