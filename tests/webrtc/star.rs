//! The star topology over real WebRTC: joiners of a room of five connect to the host only (one
//! WebRTC connection each, none between them, although the embedded signaling server is a
//! full mesh), and what they send each other, small or large, reliable or not, arrives through
//! the host exactly once and in order.

use crate::harness::*;
use bevy::prelude::*;
use bevy_peer_message::prelude::*;
use std::time::Duration;

fn star() -> PeerMessagePlugin {
    PeerMessagePlugin::default().topology(Topology::Star)
}

/// WebRTC connections the app's sockets hold (from `describe`'s `links {..}`).
fn connections(app: &mut App) -> usize {
    let view = bevy_peer_message::internals::describe(app.world_mut());
    view.lines()
        .filter_map(|line| {
            let list = line.split("links {").nth(1)?.split('}').next()?;
            Some(list.split(',').filter(|s| !s.trim().is_empty()).count())
        })
        .sum()
}

#[test]
fn joiners_of_a_star_talk_through_the_host_on_one_connection_each() {
    let (mut host, url) = host_app("star", star());
    let mut joiners: Vec<App> = (0..4)
        .map(|_| {
            app(star()
                .signaling(Signaling::server(url.clone()))
                .join_timeout(Duration::from_secs(30)))
        })
        .collect();
    for j in &mut joiners {
        net(j, |n| n.join("star"));
    }
    let mut apps: Vec<&mut App> = std::iter::once(&mut host)
        .chain(joiners.iter_mut())
        .collect();
    wait_connected(&mut apps, 4);
    run_for(&mut apps, Duration::from_millis(500));
    assert_eq!(connections(apps[0]), 4, "the host: one per joiner");
    for (i, j) in apps.iter_mut().enumerate().skip(1) {
        assert_eq!(connections(j), 1, "joiner {i}: the host's only");
        assert_eq!(net(j, |n| n.peers().count()), 4, "joiner {i} sees the room");
    }
    let ids: Vec<PeerId> = apps.iter_mut().map(|a| id(a)).collect();

    // Joiner 1 streams to joiner 2; joiner 3 broadcasts; joiner 4 sends joiner 1 a large blob.
    for n in 0..300 {
        net(apps[1], |net| net.send(ids[2], Numbered(n)));
    }
    net(apps[3], |net| {
        net.broadcast(Chat("to everyone".into()));
        net.broadcast(Spark(7));
    });
    let blob: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    net(apps[4], |net| net.send(ids[1], Blob(blob.clone())));
    run_until(&mut apps, Duration::from_secs(30), "relayed traffic", |a| {
        numbers_from(a[2], ids[1]).len() == 300
            && !inbox::<Received<Blob>>(a[1]).is_empty()
            && [0, 1, 2, 4]
                .iter()
                .all(|i| !inbox::<Received<Chat>>(a[*i]).is_empty())
    });
    run_for(&mut apps, Duration::from_millis(300));
    assert_eq!(numbers_from(apps[2], ids[1]), (0..300).collect::<Vec<_>>());
    let blobs = inbox::<Received<Blob>>(apps[1]);
    assert_eq!(blobs.len(), 1);
    assert_eq!(blobs[0].from, ids[4]);
    assert!(blobs[0].message.0 == blob, "the blob, whole");
    for i in [0, 1, 2, 4] {
        let chats = inbox::<Received<Chat>>(apps[i]);
        assert_eq!(chats.len(), 1, "app {i}");
        assert_eq!(chats[0].from, ids[3]);
        // Unreliable: at most once.
        assert!(inbox::<Received<Spark>>(apps[i]).len() <= 1);
    }
    assert!(inbox::<Received<Chat>>(apps[3]).is_empty(), "not its own");
    for (i, a) in apps.iter().enumerate() {
        assert!(inbox::<PeerError>(a).is_empty(), "app {i}");
    }
}

/// Joiners that are there before the host (on a stand-alone signaling server) offer it nothing:
/// they open new sockets until the host links to them, then talk through it.
#[test]
fn joiners_waiting_before_the_host_are_linked_once_it_comes() {
    let server = bevy_peer_message::EmbeddedServer::start("127.0.0.1:0".parse().expect("address"))
        .expect("a signaling server");
    let url = format!("ws://127.0.0.1:{}", server.addr().port());
    let plugin = || {
        star()
            .signaling(Signaling::server(url.clone()))
            .join_timeout(Duration::from_secs(30))
    };
    let mut joiners: Vec<App> = (0..3).map(|_| app(plugin())).collect();
    for j in &mut joiners {
        net(j, |n| n.join("early"));
    }
    let mut refs: Vec<&mut App> = joiners.iter_mut().collect();
    run_for(&mut refs, Duration::from_millis(1500));
    let mut host = app(plugin());
    net(&mut host, |n| n.host("early"));
    let mut apps: Vec<&mut App> = std::iter::once(&mut host)
        .chain(joiners.iter_mut())
        .collect();
    wait_connected(&mut apps, 3);
    let ids: Vec<PeerId> = apps.iter_mut().map(|a| id(a)).collect();
    net(apps[1], |net| net.send(ids[3], Numbered(1)));
    run_until(
        &mut apps,
        Duration::from_secs(10),
        "a relayed message",
        |a| !numbers_from(a[3], ids[1]).is_empty(),
    );
    for (i, a) in apps.iter_mut().enumerate().skip(1) {
        assert_eq!(connections(a), 1, "joiner {i}");
    }
}
