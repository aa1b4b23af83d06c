//! Typed messages flow both ways with each delivery, through each kind of signaling.

use crate::harness::*;
use bevy::prelude::*;
use bevy_peer_message::{EmbeddedServer, prelude::*};
use std::{sync::Arc, time::Duration};

/// Reliable, unreliable and sequenced messages, host to joiner and back, over the embedded
/// signaling server; `from` names the sender; peers are entities with stats.
#[test]
fn every_delivery_works_both_ways() {
    let (mut host, mut joiner) = connected_pair("delivery");
    let (host_id, joiner_id) = (id(&mut host), id(&mut joiner));
    assert_eq!(state(&host), ConnectionState::Connected);
    assert_eq!(state(&joiner), ConnectionState::Connected);
    assert_eq!(inbox::<PeerConnected>(&joiner)[0].role, Role::Host);
    assert_eq!(inbox::<PeerConnected>(&host)[0].role, Role::Joiner);
    assert_eq!(net(&mut joiner, |n| n.host_id()), Some(host_id));

    for i in 0..200u32 {
        net(&mut host, |n| n.send(joiner_id, Numbered(i)));
        net(&mut joiner, |n| n.send_to_host(Numbered(1000 + i)));
        if i % 10 == 0 {
            // Spread over frames, several per frame.
            host.update();
            joiner.update();
        }
    }
    for i in 0..20u32 {
        net(&mut host, |n| n.send(joiner_id, Spark(i)));
        net(&mut joiner, |n| n.send(host_id, Spark(i)));
        for k in 0..5 {
            net(&mut host, |n| {
                n.send(joiner_id, Position(i as f32, 0.0, i * 5 + k))
            });
            net(&mut joiner, |n| {
                n.send(host_id, Position(0.0, i as f32, i * 5 + k))
            });
        }
        host.update();
        joiner.update();
    }
    run_until(
        &mut [&mut host, &mut joiner],
        Duration::from_secs(20),
        "all reliable messages",
        |a| numbers(a[0]).len() == 200 && numbers(a[1]).len() == 200,
    );
    run_for(&mut [&mut host, &mut joiner], Duration::from_millis(300));

    assert_eq!(
        numbers(&joiner),
        (0..200).collect::<Vec<_>>(),
        "in order, exactly once"
    );
    assert_eq!(numbers(&host), (1000..1200).collect::<Vec<_>>());
    assert!(
        inbox::<Received<Numbered>>(&host)
            .iter()
            .all(|r| r.from == joiner_id)
    );
    assert!(
        inbox::<Received<Numbered>>(&joiner)
            .iter()
            .all(|r| r.from == host_id)
    );

    for (app, from) in [(&host, joiner_id), (&joiner, host_id)] {
        let sparks = inbox::<Received<Spark>>(app);
        // Unreliable: on loopback nearly all arrive; never more than once.
        assert!(
            sparks.len() >= 10 && sparks.len() <= 20,
            "{} sparks",
            sparks.len()
        );
        assert!(sparks.iter().all(|s| s.from == from));
        let seqs: Vec<u32> = inbox::<Received<Position>>(app)
            .iter()
            .map(|p| p.message.2)
            .collect();
        assert!(!seqs.is_empty());
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "sequenced never goes back: {seqs:?}"
        );
    }

    // One entity per remote peer, with live stats.
    run_for(&mut [&mut host, &mut joiner], Duration::from_millis(600));
    let mut peers = host.world_mut().query::<(&Peer, &PeerStats)>();
    let (peer, stats) = peers.single(host.world()).expect("one peer entity");
    assert_eq!(peer.id, joiner_id);
    assert!(stats.rtt.is_some(), "round-trip time measured");
    assert!(stats.bytes_in > 0 && stats.bytes_out > 0);
    assert_no_errors(&[&host]);
    assert_no_errors(&[&joiner]);
}

/// The seed's "relay the signal yourself": two apps connected through a custom in-process
/// `SignallerBuilder`, no websocket anywhere.
#[test]
fn custom_signaller_connects_without_a_server() {
    let hub = LocalSignalingHub::default();
    let signaling = || Signaling::custom(Arc::new(hub.clone()), "local://hub");
    let mut host = app(PeerMessagePlugin::default().signaling(signaling()));
    let mut joiner = app(PeerMessagePlugin::default().signaling(signaling()));
    net(&mut host, |n| n.host("custom"));
    net(&mut joiner, |n| n.join("custom"));
    wait_connected(&mut [&mut host, &mut joiner], 1);
    assert_eq!(hub.occupancy("local://hub/custom"), 2);
    net(&mut joiner, |n| n.send_to_host(Chat("over the hub".into())));
    let joiner_id = id(&mut joiner);
    net(&mut host, |n| n.send(joiner_id, Chat("back".into())));
    run_until(
        &mut [&mut host, &mut joiner],
        Duration::from_secs(10),
        "chat both ways",
        |a| !inbox::<Received<Chat>>(a[0]).is_empty() && !inbox::<Received<Chat>>(a[1]).is_empty(),
    );
    assert_eq!(
        inbox::<Received<Chat>>(&host)[0].message,
        Chat("over the hub".into())
    );
    assert_eq!(
        inbox::<Received<Chat>>(&joiner)[0].message,
        Chat("back".into())
    );
}

/// Host and joiner both use a stand-alone matchbox signaling server given by URL.
#[test]
fn standalone_server_by_url() {
    let server = EmbeddedServer::start("127.0.0.1:0".parse().unwrap()).expect("server");
    let url = format!("ws://127.0.0.1:{}", server.addr().port());
    let mut host = app(PeerMessagePlugin::default().signaling(Signaling::server(url.clone())));
    let mut joiner = app(PeerMessagePlugin::default().signaling(Signaling::server(url)));
    net(&mut host, |n| n.host("standalone"));
    net(&mut joiner, |n| n.join("standalone"));
    wait_connected(&mut [&mut host, &mut joiner], 1);
    assert!(
        host.world().get_resource::<SignalingServerInfo>().is_none(),
        "nothing embedded"
    );
    net(&mut host, |n| n.broadcast(Chat("hello".into())));
    run_until(
        &mut [&mut host, &mut joiner],
        Duration::from_secs(10),
        "chat",
        |a| !inbox::<Received<Chat>>(a[1]).is_empty(),
    );
}
