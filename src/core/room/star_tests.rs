//! The star topology on the simulated clock: joiners meet through the host, what they send each
//! other is relayed exactly once and in order (under loss, across an outage, past a slow
//! joiner), the host filters, and joiners or hosts that lie about routes are dropped.

use super::sim::*;
use super::star::ROUTE_MAX;
use super::testing::peer;
use super::*;
use std::sync::{Arc, Mutex};

/// The peer at socket `i`.
fn at(i: usize) -> PeerId {
    peer(i as u128 + 1)
}

fn star_room(i: usize, config: SessionConfig) -> Option<Room<Wire>> {
    let role = if i == 0 { Role::Host } else { Role::Joiner };
    let mut r = Room::new(identity_of(i, role), config, 8);
    r.set_topology(Topology::Star);
    Some(r)
}

fn identity_of(i: usize, role: Role) -> LocalIdentity {
    super::testing::identity(i as u128 + 1, role, HASH)
}

/// Host at socket 0, joiners at 1..n, linked to the host only (`all_pairs`: every pair
/// linked, as a mesh-wide signaling server does), everyone connected.
fn star_with(n: usize, config: SessionConfig, all_pairs: bool) -> Mesh {
    let rooms = (0..n).map(|i| star_room(i, config.clone())).collect();
    let mut mesh = Mesh::new(rooms);
    for a in 0..n {
        for b in a + 1..n {
            if a == 0 || all_pairs {
                mesh.link(a, b);
            }
        }
    }
    mesh.run(100);
    for i in 0..n {
        let events = mesh.take_events(i);
        let mut met: Vec<PeerId> = events
            .iter()
            .map(|e| match e {
                RoomEvent::Connected { peer, role } => {
                    assert_eq!(*role == Role::Host, *peer == at(0), "{peer}'s role");
                    *peer
                }
                other => panic!("socket {i}: unexpected {other:?}"),
            })
            .collect();
        met.sort();
        let mut want: Vec<PeerId> = (0..n).filter(|j| *j != i).map(at).collect();
        want.sort();
        assert_eq!(met, want, "socket {i} meets everyone");
    }
    mesh
}

fn star_of(n: usize) -> Mesh {
    star_with(n, SessionConfig::default(), false)
}

/// The numbered messages room `i` received, with their senders; every other event.
fn received(mesh: &mut Mesh, i: usize) -> (Vec<(PeerId, u16)>, Vec<RoomEvent>) {
    let mut got = Vec::new();
    let mut other = Vec::new();
    for e in mesh.take_events(i) {
        match e {
            RoomEvent::Message { from, payload, .. } => {
                got.push((from, u16::from_le_bytes([payload[0], payload[1]])))
            }
            e => other.push(e),
        }
    }
    (got, other)
}

/// Send buffers small enough for a backlog to form within a test's traffic.
fn small_buffers() -> SessionConfig {
    SessionConfig {
        max_unacked_bytes: 4 * 1024,
        max_undelivered_bytes: 64 * 1024,
        ..SessionConfig::default()
    }
}

/// A 100-byte message that starts with its number.
fn numbered(n: u16) -> Vec<u8> {
    let mut payload = n.to_le_bytes().to_vec();
    payload.resize(100, 0);
    payload
}

fn from(sender: usize, range: std::ops::Range<u16>) -> Vec<(PeerId, u16)> {
    range.map(|n| (at(sender), n)).collect()
}

#[test]
fn joiners_meet_through_the_host_and_what_they_send_each_other_arrives_once_in_order() {
    let mut mesh = star_of(4);
    // Only the host's links exist: one per joiner.
    for i in 1..4 {
        assert_eq!(mesh.room(i).peers.len(), 1, "a joiner holds one session");
        assert_eq!(mesh.room(i).peers().count(), 3, "and sees the whole room");
    }
    stream(&mut mesh, 1, 4, 0..300); // socket 1 to socket 3's peer
    stream(&mut mesh, 3, 2, 0..50); // socket 3 to socket 1's peer
    mesh.room(2)
        .send(at(0), 1, &7u16.to_le_bytes(), Delivery::Reliable)
        .unwrap();
    mesh.run(200);
    let (got, other) = received(&mut mesh, 3);
    assert_eq!(got, from(1, 0..300));
    assert!(other.is_empty(), "{other:?}");
    assert_eq!(received(&mut mesh, 1).0, from(3, 0..50));
    assert_eq!(received(&mut mesh, 0).0, from(2, 7..8), "only its own");
    assert!(received(&mut mesh, 2).0.is_empty());
    assert_eq!(mesh.room(0).relay_counts().relayed, 350);
}

#[test]
fn a_joiners_broadcast_reaches_the_host_and_every_other_joiner_with_every_delivery() {
    let mut mesh = star_of(4);
    for (n, delivery) in [
        (1u16, Delivery::Reliable),
        (2, Delivery::Unreliable),
        (3, Delivery::UnreliableSequenced),
    ] {
        mesh.room(2)
            .broadcast(n as u32, &n.to_le_bytes(), delivery, &mut |p, e| {
                panic!("{p}: {e}")
            });
        mesh.run(20);
    }
    mesh.room(0)
        .broadcast(9, &9u16.to_le_bytes(), Delivery::Reliable, &mut |p, e| {
            panic!("{p}: {e}")
        });
    mesh.run(20);
    for i in [0, 1, 3] {
        let mut got = received(&mut mesh, i).0;
        let host_part: Vec<_> = got.iter().filter(|(p, _)| *p == at(0)).copied().collect();
        got.retain(|(p, _)| *p != at(0));
        assert_eq!(got, from(2, 1..4), "socket {i}");
        let want = if i == 0 { vec![] } else { vec![(at(0), 9)] };
        assert_eq!(host_part, want, "socket {i} from the host");
    }
    assert_eq!(
        received(&mut mesh, 2).0,
        vec![(at(0), 9)],
        "not its own back"
    );
}

#[test]
fn relayed_streams_survive_packet_loss_and_an_outage_of_the_receiver() {
    let mut mesh = star_of(4);
    for i in 0..4 {
        mesh.room(i).set_retransmit(true);
    }
    mesh.loss = Some((crate::core::rng::Rng::new(7), 0.15));
    stream(&mut mesh, 1, 3, 0..200);
    mesh.run(300);
    // Socket 2 is cut off from the host for 3 s (links stay up), then back.
    mesh.blocked.push((0, 2));
    stream(&mut mesh, 1, 3, 200..400);
    mesh.run(3_000);
    let (_, other) = received(&mut mesh, 1);
    assert!(
        other.contains(&RoomEvent::Reconnecting { peer: at(2) }),
        "the others hear it is away: {other:?}"
    );
    mesh.blocked.clear();
    stream(&mut mesh, 1, 3, 400..500);
    mesh.run(3_000);
    mesh.loss = None;
    mesh.run(2_000);
    let (got, _) = received(&mut mesh, 2);
    assert_eq!(got, from(1, 0..500), "exactly once, in order");
    let (_, other) = received(&mut mesh, 1);
    assert!(
        other
            .iter()
            .any(|e| matches!(e, RoomEvent::Reconnected { peer, .. } if *peer == at(2))),
        "and that it is back: {other:?}"
    );
}

#[test]
fn a_slow_joiner_waits_in_its_own_backlog_and_one_that_cannot_keep_up_is_dropped() {
    let mut mesh = star_with(4, small_buffers(), false);
    // Socket 3 is cut off; socket 1 broadcasts 40 KiB in 400 messages.
    mesh.blocked.push((0, 3));
    for n in 0..400u16 {
        let payload = numbered(n);
        mesh.room(1)
            .broadcast(1, &payload, Delivery::Reliable, &mut |p, e| {
                panic!("{p}: {e}")
            });
        mesh.run(1);
    }
    mesh.run(300);
    // Socket 2 got all of it at once: the backlog is socket 3's alone.
    assert_eq!(received(&mut mesh, 2).0, from(1, 0..400));
    assert!(mesh.room(0).relay_counts().queued > 0, "socket 3's waited");
    mesh.blocked.clear();
    mesh.run(2_000);
    assert_eq!(received(&mut mesh, 3).0, from(1, 0..400), "then socket 3's");

    // Past `max_undelivered_bytes` waiting, the laggard is dropped; the others carry on.
    mesh.blocked.push((0, 3));
    for n in 0..1_000u16 {
        let payload = numbered(n);
        mesh.room(1)
            .broadcast(1, &payload, Delivery::Reliable, &mut |_, _| {});
        mesh.run(1);
    }
    mesh.run(300);
    let host_events = mesh.take_events(0);
    assert!(
        errors(&host_events)
            .iter()
            .any(|e| matches!(e, PeerErrorKind::Send(SendError::Backpressure { peer, .. }) if *peer == at(3))),
        "{host_events:?}"
    );
    assert_eq!(received(&mut mesh, 2).0, from(1, 0..1_000));
    let (_, other) = received(&mut mesh, 1);
    assert!(other.contains(&RoomEvent::Disconnected {
        peer: at(3),
        reason: DisconnectReason::ConnectionLost
    }));
}

#[test]
fn the_host_filters_relayed_messages_and_drops_a_sender_its_filter_refuses() {
    let mut mesh = star_of(4);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    mesh.room(0)
        .set_relay_filter(Some(RelayFilter(Arc::new(move |r: &RelayView<'_>| {
            log.lock().unwrap().push((r.from, r.to, r.kind));
            match r.kind {
                7 => Ok(false),
                66 => Err(PeerErrorKind::Decode {
                    type_name: "Evil",
                    error: crate::core::codec::CodecError::Decode("no".into()),
                }),
                _ => Ok(true),
            }
        }))));
    for kind in [1, 7, 1] {
        mesh.room(1)
            .send(
                at(2),
                kind,
                &(kind as u16).to_le_bytes(),
                Delivery::Reliable,
            )
            .unwrap();
    }
    mesh.room(1)
        .send(at(0), 7, &7u16.to_le_bytes(), Delivery::Reliable)
        .unwrap();
    mesh.run(50);
    assert_eq!(received(&mut mesh, 2).0, vec![(at(1), 1), (at(1), 1)]);
    assert_eq!(received(&mut mesh, 0).0, vec![(at(1), 7)], "the host's own");
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            (at(1), Some(at(2)), 1),
            (at(1), Some(at(2)), 7),
            (at(1), Some(at(2)), 1)
        ]
    );
    assert_eq!(mesh.room(0).relay_counts().filtered, 1);
    // The filter's error drops the sender; everyone else carries on.
    mesh.room(3)
        .broadcast(66, &66u16.to_le_bytes(), Delivery::Reliable, &mut |_, _| {});
    mesh.run(50);
    let (_, host) = received(&mut mesh, 0);
    assert!(
        errors(&host)
            .iter()
            .any(|e| matches!(e, PeerErrorKind::Decode { .. }))
    );
    for i in [1, 2] {
        let (got, other) = received(&mut mesh, i);
        assert!(got.is_empty());
        assert!(
            other.contains(&RoomEvent::Disconnected {
                peer: at(3),
                reason: DisconnectReason::Evicted
            }),
            "socket {i}: {other:?}"
        );
    }
    stream(&mut mesh, 1, 3, 0..10);
    mesh.run(50);
    assert_eq!(received(&mut mesh, 2).0, from(1, 0..10));
}

/// Sends `payload` from socket `i` to its host raw: no route added (a peer that lies).
fn raw_to_host(mesh: &mut Mesh, i: usize, kind: u32, payload: &[u8]) {
    let room = mesh.room(i);
    let host = room.host().expect("a host");
    let remote = room.peers.get_mut(&host).expect("the host's session");
    remote
        .session
        .send(kind, payload, Delivery::Reliable)
        .unwrap();
}

#[test]
fn joiners_that_lie_about_routes_are_dropped_and_the_others_carry_on() {
    let mut mesh = star_of(4);
    let mut to_self = vec![2u8];
    to_self.extend_from_slice(&at(1).0.to_le_bytes());
    to_self.extend_from_slice(&[1, 0]);
    for (liar, payload) in [
        (1, to_self),
        (2, vec![9u8, 0, 0]),
        (3, vec![2u8, 1, 2, 3]), // a route cut short
    ] {
        raw_to_host(&mut mesh, liar, 1, &payload);
        mesh.run(50);
        let (_, host) = received(&mut mesh, 0);
        assert!(
            errors(&host).contains(&PeerErrorKind::Violation(Violation::BadRoute)),
            "{host:?}"
        );
        assert!(!mesh.room(0).peers.contains_key(&at(liar)));
    }
    // A fourth joiner, after all that, still reaches the host.
    let mut mesh = star_of(3);
    raw_to_host(&mut mesh, 1, 1, &[9]);
    mesh.run(50);
    stream(&mut mesh, 2, 1, 0..5);
    mesh.run(50);
    assert_eq!(received(&mut mesh, 0).0, from(2, 0..5));
}

#[test]
fn a_host_that_lies_to_its_joiners_is_dropped() {
    let mut mesh = star_of(3);
    // A host may not send "for everyone", nor news of joiners with a reason that is none.
    let remote = mesh.room(0).peers.get_mut(&at(1)).unwrap();
    remote
        .session
        .send(1, &[1, 1, 0], Delivery::Reliable)
        .unwrap();
    let remote = mesh.room(0).peers.get_mut(&at(2)).unwrap();
    let left = super::control::Control::Left {
        peer: at(1),
        reason: 99,
    };
    remote
        .session
        .send(CONTROL_KIND, &left.encode(), Delivery::Reliable)
        .unwrap();
    mesh.run(50);
    let (_, one) = received(&mut mesh, 1);
    assert!(errors(&one).contains(&PeerErrorKind::Violation(Violation::BadRoute)));
    let (_, two) = received(&mut mesh, 2);
    assert!(errors(&two).contains(&PeerErrorKind::Violation(Violation::BadControl)));
    for i in [1, 2] {
        assert_eq!(mesh.room(i).peers().count(), 0, "socket {i} left the room");
    }
}

#[test]
fn joiners_linked_by_a_mesh_signaling_server_still_talk_through_the_host() {
    let mut mesh = star_with(4, SessionConfig::default(), true);
    mesh.run(100);
    for i in 1..4 {
        assert_eq!(mesh.room(i).peers.len(), 1, "socket {i}: the host only");
        let (_, other) = received(&mut mesh, i);
        assert!(other.is_empty(), "quietly: {other:?}");
    }
    stream(&mut mesh, 3, 2, 0..20);
    mesh.run(50);
    assert_eq!(received(&mut mesh, 1).0, from(3, 0..20));
}

#[test]
fn joiners_hear_who_leaves_and_the_room_ends_with_its_host() {
    let mut mesh = star_of(4);
    // Nothing migrates in a star.
    assert!(!mesh.room(0).hand_over(at(1)));
    let now = mesh.now;
    mesh.room(3).leave(now);
    mesh.run(50);
    for i in [1, 2] {
        let (_, other) = received(&mut mesh, i);
        assert_eq!(
            other,
            vec![RoomEvent::Disconnected {
                peer: at(3),
                reason: DisconnectReason::Left
            }]
        );
    }
    let now = mesh.now;
    mesh.room(0).leave(now);
    mesh.run(50);
    for i in [1, 2] {
        let (_, other) = received(&mut mesh, i);
        let other_joiner = at(3 - i);
        assert!(other.contains(&RoomEvent::Disconnected {
            peer: at(0),
            reason: DisconnectReason::Left
        }));
        assert!(
            other.contains(&RoomEvent::Disconnected {
                peer: other_joiner,
                reason: DisconnectReason::ConnectionLost
            }),
            "{other:?}"
        );
        assert!(
            !other
                .iter()
                .any(|e| matches!(e, RoomEvent::HostMigrated { .. })),
            "no migration"
        );
        assert_eq!(mesh.room(i).peers().count(), 0);
    }
}

#[test]
fn a_newcomer_meets_the_room_and_messages_over_the_limit_less_a_route_are_refused() {
    let mut mesh = star_of(3);
    // A newcomer at socket 3 hears of both joiners; they hear of it.
    mesh.rooms.push(star_room(3, SessionConfig::default()));
    mesh.events.push(Vec::new());
    mesh.link(0, 3);
    mesh.run(100);
    let (_, other) = received(&mut mesh, 3);
    assert_eq!(other.len(), 3, "{other:?}");
    for i in [1, 2] {
        let (_, other) = received(&mut mesh, i);
        assert_eq!(other, vec![connected(4, Role::Joiner)]);
    }
    let limit = mesh.room(1).config().max_message_size;
    let too_big = vec![0u8; limit - ROUTE_MAX + 1];
    assert!(matches!(
        mesh.room(1).send(at(2), 1, &too_big, Delivery::Reliable),
        Err(SendError::TooLarge { .. })
    ));
    assert!(matches!(
        mesh.room(1).send(at(0), 1, &too_big, Delivery::Reliable),
        Err(SendError::TooLarge { .. })
    ));
    let fits = vec![5u8; limit - ROUTE_MAX];
    mesh.room(1)
        .send(at(2), 1, &fits, Delivery::Reliable)
        .unwrap();
    mesh.run(500);
    let (got, _) = received(&mut mesh, 2);
    assert_eq!(got.len(), 1, "the largest message, relayed whole");
}

#[test]
fn news_of_a_leaving_joiner_waits_behind_its_last_messages_and_empty_ones_cost_too() {
    let mut mesh = star_with(4, small_buffers(), false);
    // Socket 3 is cut off while socket 1 streams to it and leaves.
    mesh.blocked.push((0, 3));
    for n in 0..200u16 {
        let payload = numbered(n);
        mesh.room(1)
            .send(at(3), 1, &payload, Delivery::Reliable)
            .unwrap();
        mesh.run(1);
    }
    let now = mesh.now;
    mesh.room(1).leave(now);
    mesh.run(300);
    mesh.blocked.clear();
    mesh.run(2_000);
    let (got, other) = received(&mut mesh, 3);
    assert_eq!(got, from(1, 0..200), "every message of the leaver");
    assert!(
        other.contains(&RoomEvent::Disconnected {
            peer: at(1),
            reason: DisconnectReason::Left
        }),
        "then its goodbye: {other:?}"
    );

    // Empty messages queue at a cost: a flood of them drops the laggard, not the host.
    mesh.blocked.push((0, 3));
    let mut sent = 0;
    // (Until socket 2 hears it is gone.)
    while mesh.room(2).send(at(3), 1, &[], Delivery::Reliable).is_ok() {
        sent += 1;
        assert!(sent < 5_000, "never dropped");
        mesh.run(1);
    }
    let host = mesh.take_events(0);
    assert!(
        errors(&host)
            .iter()
            .any(|e| matches!(e, PeerErrorKind::Send(SendError::Backpressure { peer, .. }) if *peer == at(3))),
        "{host:?}"
    );
}

#[test]
fn a_relay_too_large_to_forward_drops_its_sender_and_a_joiner_mutes_a_peer_it_refuses() {
    let mut mesh = star_of(4);
    // Route "everyone" (1 byte) then as much as a message holds: 16 bytes too many to relay.
    let limit = mesh.room(1).config().max_message_size;
    let mut payload = vec![1u8];
    payload.resize(limit, 7);
    raw_to_host(&mut mesh, 1, 1, &payload);
    mesh.run(1_000);
    let (_, host) = received(&mut mesh, 0);
    assert!(
        errors(&host).contains(&PeerErrorKind::Violation(Violation::BadRoute)),
        "{host:?}"
    );
    assert!(received(&mut mesh, 2).0.is_empty(), "nothing of it relayed");

    // Socket 2 refuses what socket 3 sent (say, it did not decode): it stops listening to it.
    let refused = PeerErrorKind::UnknownMessage(9);
    mesh.room(2).drop_peer(at(3), refused.clone());
    let mut events = Vec::new();
    while let Some(e) = mesh.room(2).poll_event() {
        events.push(e);
    }
    assert!(events.contains(&RoomEvent::Disconnected {
        peer: at(3),
        reason: DisconnectReason::ProtocolViolation
    }));
    stream(&mut mesh, 3, 3, 0..5); // socket 3 to socket 2
    mesh.run(50);
    assert!(received(&mut mesh, 2).0.is_empty(), "muted");
    assert!(mesh.room(0).peers.contains_key(&at(3)), "still in the room");
}
