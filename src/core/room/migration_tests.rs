//! Host migration on the simulated clock: a host that vanishes, one that hands over (with a
//! snapshot) and leaves, a partition that heals with a host on each side, agreement under
//! packet loss, and peers that lie about who hosts.

use super::control::Control;
use super::sim::*;
use super::testing::{key, peer};
use super::*;

/// Host at socket 0 (peer 1), joiners at sockets 1.. (peers 2..), every link up.
fn mesh_of(n: usize) -> Mesh {
    let rooms = (0..n)
        .map(|i| {
            let role = if i == 0 { Role::Host } else { Role::Joiner };
            room(i as u128 + 1, role, open())
        })
        .collect();
    let mut mesh = Mesh::new(rooms);
    for a in 0..n {
        for b in a + 1..n {
            mesh.link(a, b);
        }
    }
    mesh.run(100);
    for i in 0..n {
        assert_eq!(mesh.take_events(i).len(), n - 1, "everyone meets everyone");
    }
    mesh
}

/// The peer at socket `i`.
fn at(i: usize) -> PeerId {
    peer(i as u128 + 1)
}

/// The socket of the peer with the lowest id among `sockets`.
fn lowest(sockets: impl IntoIterator<Item = usize>) -> usize {
    sockets.into_iter().min_by_key(|i| at(*i)).expect("some")
}

fn migrations(events: &[RoomEvent]) -> Vec<(PeerId, PeerId)> {
    events
        .iter()
        .filter_map(|e| match e {
            RoomEvent::HostMigrated { old, new } => Some((*old, *new)),
            _ => None,
        })
        .collect()
}

/// Who socket `i` thinks hosts the room (itself included).
fn host_seen_by(mesh: &mut Mesh, i: usize) -> Option<PeerId> {
    let room = mesh.room(i);
    if room.local().role == Role::Host {
        Some(room.local().id)
    } else {
        room.host()
    }
}

fn assert_hosted_by(mesh: &mut Mesh, sockets: &[usize], host: usize) {
    for &i in sockets {
        assert_eq!(host_seen_by(mesh, i), Some(at(host)), "socket {i}'s view");
        let role = if i == host { Role::Host } else { Role::Joiner };
        assert_eq!(mesh.room(i).local().role, role, "socket {i}'s role");
    }
}

#[test]
fn a_vanished_host_is_succeeded_by_the_lowest_joiner_and_streams_between_survivors_go_on() {
    let mut mesh = mesh_of(4);
    stream(&mut mesh, 1, 3, 0..100);
    mesh.run(20);
    // The host's process dies: it says nothing more, and its links never say down.
    mesh.rooms[0] = None;
    stream(&mut mesh, 1, 3, 100..200);
    // Liveness (1 s), then the grace (3 s), then the votes.
    mesh.run(4_200);
    stream(&mut mesh, 1, 3, 200..300);
    mesh.run(100);
    let heir = lowest(1..4);
    for i in 1..4 {
        let (got, events) = mesh.split(i);
        if i == 2 {
            assert_eq!(got, (0..300).collect::<Vec<_>>(), "exactly once, in order");
        }
        assert_eq!(migrations(&events), vec![(at(0), at(heir))], "socket {i}");
        assert_eq!(
            events[0],
            RoomEvent::Reconnecting { peer: at(0) },
            "socket {i} saw the host go away first"
        );
        assert_eq!(events.len(), 2, "and nothing else: {events:?}");
    }
    assert_hosted_by(&mut mesh, &[1, 2, 3], heir);
    assert_eq!(mesh.room(heir).host_epoch(), 1);
    // The old host stays a joiner, away, until its resume window is over.
    mesh.run(30_000);
    for i in 1..4 {
        let (_, events) = mesh.split(i);
        assert_eq!(
            events,
            vec![RoomEvent::Disconnected {
                peer: at(0),
                reason: DisconnectReason::Timeout
            }]
        );
    }
    assert_hosted_by(&mut mesh, &[1, 2, 3], heir);
}

#[test]
fn the_new_host_admits_newcomers_and_the_survivors_bind_them_on_its_word() {
    let mut mesh = mesh_of(4);
    mesh.rooms[0] = None;
    mesh.run(4_200);
    let heir = lowest(1..4);
    for i in 1..4 {
        mesh.take_events(i);
    }
    mesh.rooms.push(room(5, Role::Joiner, open()));
    mesh.events.push(Vec::new());
    for i in 1..4 {
        mesh.link(i, 4);
    }
    mesh.run(200);
    let newcomer = mesh.take_events(4);
    assert_eq!(
        newcomer.len(),
        3,
        "it meets all three survivors: {newcomer:?}"
    );
    assert!(newcomer.contains(&RoomEvent::Connected {
        peer: at(heir),
        role: Role::Host
    }));
    assert_eq!(mesh.room(4).host(), Some(at(heir)));
    assert_eq!(
        mesh.room(4).host_epoch(),
        1,
        "it learns the epoch from its host"
    );
    for i in 1..4 {
        assert_eq!(
            mesh.take_events(i),
            vec![RoomEvent::Connected {
                peer: at(4),
                role: Role::Joiner
            }]
        );
    }
}

#[test]
fn a_host_hands_over_with_a_snapshot_and_leaves_and_everyone_follows_in_order() {
    let mut mesh = mesh_of(3);
    let heir = lowest(1..3);
    let other = 3 - heir;
    mesh.room(0)
        .send(at(heir), 1, &7u16.to_le_bytes(), Delivery::Reliable)
        .unwrap();
    assert!(
        !mesh.room(other).hand_over(at(heir)),
        "only a host hands over"
    );
    assert!(mesh.room(0).hand_over(at(heir)));
    assert_eq!(mesh.room(0).local().role, Role::Joiner, "at once");
    let now = mesh.now;
    mesh.room(0).leave(now);
    mesh.run(50);
    let migrated = RoomEvent::HostMigrated {
        old: at(0),
        new: at(heir),
    };
    let left = RoomEvent::Disconnected {
        peer: at(0),
        reason: DisconnectReason::Left,
    };
    let heir_events = mesh.take_events(heir);
    assert!(
        matches!(&heir_events[0], RoomEvent::Message { payload, .. } if payload[..] == 7u16.to_le_bytes()),
        "the snapshot first: {heir_events:?}"
    );
    assert_eq!(heir_events[1..], [migrated.clone(), left.clone()]);
    assert_eq!(mesh.take_events(other), vec![migrated.clone(), left]);
    let old = mesh.take_events(0);
    assert_eq!(old[0], migrated);
    assert_eq!(old.len(), 3, "then both peers, as we left: {old:?}");
    assert_hosted_by(&mut mesh, &[1, 2], heir);
}

#[test]
fn a_leaving_host_hands_the_room_to_its_lowest_joiner_unless_migration_is_off() {
    for migration in [true, false] {
        let mut mesh = mesh_of(3);
        if !migration {
            for i in 0..3 {
                let mut policy = mesh.room(i).policy;
                policy.host_grace = None;
                mesh.room(i).policy = policy;
            }
        }
        let now = mesh.now;
        mesh.room(0).leave(now);
        mesh.run(50);
        let heir = lowest(1..3);
        for i in 1..3 {
            let events = mesh.take_events(i);
            if migration {
                assert_eq!(migrations(&events), vec![(at(0), at(heir))]);
            } else {
                assert_eq!(migrations(&events), vec![]);
                assert_eq!(mesh.room(i).host(), None, "the room ended with its host");
            }
        }
        if migration {
            assert_hosted_by(&mut mesh, &[1, 2], heir);
        }
    }
}

#[test]
fn a_partition_that_heals_with_two_hosts_ends_with_one_and_nothing_lost() {
    let mut mesh = mesh_of(4);
    stream(&mut mesh, 1, 4, 0..100);
    mesh.run(20);
    // {host, 1} | {2, 3}: the far side loses its host and elects one of its own.
    for (a, b) in [(0, 2), (0, 3), (1, 2), (1, 3)] {
        mesh.unlink(a, b);
    }
    stream(&mut mesh, 1, 4, 100..200);
    mesh.run(5_000);
    let far = lowest(2..4);
    assert_eq!(host_seen_by(&mut mesh, 0), Some(at(0)));
    assert_eq!(host_seen_by(&mut mesh, 1), Some(at(0)));
    assert_hosted_by(&mut mesh, &[2, 3], far);
    let (mut got, _) = mesh.split(3);
    for i in 0..3 {
        mesh.take_events(i);
    }
    // The partition heals: sessions resume, the claim crosses, the old host steps down.
    for (a, b) in [(0, 2), (0, 3), (1, 2), (1, 3)] {
        mesh.link(a, b);
    }
    stream(&mut mesh, 1, 4, 200..300);
    mesh.run(2_000);
    assert_hosted_by(&mut mesh, &[0, 1, 2, 3], far);
    for i in 0..2 {
        let (_, events) = mesh.split(i);
        assert_eq!(migrations(&events), vec![(at(0), at(far))], "socket {i}");
    }
    for i in 2..4 {
        let (more, events) = mesh.split(i);
        assert_eq!(migrations(&events), vec![], "socket {i} had moved already");
        if i == 3 {
            got.extend(more);
            assert_eq!(got, (0..300).collect::<Vec<_>>(), "exactly once, in order");
        }
    }
    // A newcomer meets one host.
    mesh.rooms.push(room(9, Role::Joiner, open()));
    mesh.events.push(Vec::new());
    for i in 0..4 {
        mesh.link(i, 4);
    }
    mesh.run(200);
    assert_eq!(mesh.take_events(4).len(), 4);
    assert_eq!(mesh.room(4).host(), Some(at(far)));
}

#[test]
fn survivors_agree_on_one_host_under_packet_loss() {
    for seed in 1..=12u64 {
        let mut mesh = mesh_of(5);
        for i in 0..5 {
            mesh.room(i).set_retransmit(true);
        }
        mesh.loss = Some((crate::core::rng::Rng::new(seed), 0.15));
        stream(&mut mesh, 4, 2, 0..200);
        mesh.rooms[0] = None;
        mesh.run(8_000);
        stream(&mut mesh, 4, 2, 200..300);
        mesh.run(2_000);
        let heir = lowest(1..5);
        assert_hosted_by(&mut mesh, &[1, 2, 3, 4], heir);
        let (got, _) = mesh.split(1);
        assert_eq!(
            got,
            (0..300).collect::<Vec<_>>(),
            "seed {seed}: exactly once, in order"
        );
        for i in 1..5 {
            let events = mesh.take_events(i);
            let last = migrations(&events).last().map(|m| m.1);
            assert!(
                last.is_none() || last == Some(at(heir)),
                "seed {seed}, socket {i}: {events:?}"
            );
        }
    }
}

#[test]
fn a_lone_joiner_keeps_waiting_for_its_host() {
    let mut mesh = mesh_of(2);
    mesh.rooms[0] = None;
    mesh.run(10_000);
    assert_eq!(
        mesh.take_events(1),
        vec![RoomEvent::Reconnecting { peer: at(0) }]
    );
    assert_eq!(mesh.room(1).local().role, Role::Joiner);
}

#[test]
fn a_joiner_claiming_a_live_hosts_room_is_dropped_and_changes_nothing() {
    let mut mesh = mesh_of(3);
    let claim = Control::Claim { epoch: 1 }.encode();
    for to in [0, 2] {
        mesh.room(1)
            .send(at(to), CONTROL_KIND, &claim, Delivery::Reliable)
            .unwrap();
    }
    mesh.run(50);
    let host = mesh.take_events(0);
    assert_eq!(
        host,
        vec![
            RoomEvent::Error {
                peer: Some(at(1)),
                error: PeerErrorKind::Violation(Violation::FalseHostClaim)
            },
            RoomEvent::Disconnected {
                peer: at(1),
                reason: DisconnectReason::ProtocolViolation
            }
        ]
    );
    assert_eq!(
        mesh.take_events(2),
        vec![RoomEvent::Disconnected {
            peer: at(1),
            reason: DisconnectReason::Evicted
        }],
        "the other joiner took no word of it"
    );
    assert_hosted_by(&mut mesh, &[0, 2], 0);
    // A claim at the first epoch is a lie whoever hears it.
    let mut mesh = mesh_of(3);
    let claim = Control::Claim { epoch: 0 }.encode();
    mesh.room(2)
        .send(at(0), CONTROL_KIND, &claim, Delivery::Reliable)
        .unwrap();
    mesh.run(50);
    assert_eq!(
        errors(&mesh.take_events(0)),
        vec![PeerErrorKind::Violation(Violation::FalseHostClaim)]
    );
}

#[test]
fn the_old_host_restarted_as_a_host_is_told_the_room_moved() {
    let mut mesh = mesh_of(3);
    mesh.rooms[0] = None;
    mesh.run(4_200);
    let heir = lowest(1..3);
    for i in 1..3 {
        mesh.take_events(i);
    }
    // The same key, a new app (incarnation), hosting again.
    let restarted = LocalIdentity::new(key(1), Role::Host, 999, HASH);
    mesh.rooms[0] = Some(Room::new(restarted, SessionConfig::default(), 8));
    for i in 1..3 {
        // (The old socket's links are reported down; the new one's come up.)
        mesh.unlink(0, i);
        mesh.link(0, i);
    }
    mesh.run(100);
    // The joiner says the room moved; the new host and the restarted one refuse each other
    // (each sees a second host), whichever proves itself first.
    let errors = errors(&mesh.take_events(0));
    let moved = PeerErrorKind::RefusedByPeer(ByeReason::HostMoved);
    assert!(errors.contains(&moved), "{errors:?}");
    assert!(
        errors
            .iter()
            .all(|e| *e == moved || *e == PeerErrorKind::DuplicateHost),
        "{errors:?}"
    );
    assert_hosted_by(&mut mesh, &[1, 2], heir);
}

#[test]
fn without_signaling_survivors_come_back_on_the_links_they_had() {
    let mut mesh = mesh_of(4);
    mesh.rooms[0] = None;
    mesh.run(4_200);
    for i in 1..4 {
        mesh.take_events(i);
    }
    // Two survivors hear nothing of each other for 5 s, their links never reported down (no
    // signaling server is left to make new ones): each takes the other for away, and both
    // resume on the old link when its packets flow again.
    stream(&mut mesh, 1, 3, 0..100);
    mesh.run(10);
    mesh.blocked.push((1, 2));
    stream(&mut mesh, 1, 3, 100..200);
    mesh.run(5_000);
    let mut got = Vec::new();
    for (i, other) in [(1, 2), (2, 1)] {
        let (messages, events) = mesh.split(i);
        got.extend(messages);
        assert_eq!(events, vec![RoomEvent::Reconnecting { peer: at(other) }]);
    }
    mesh.blocked.clear();
    stream(&mut mesh, 1, 3, 200..300);
    mesh.run(500);
    let (more, events) = mesh.split(2);
    assert!(
        matches!(events[..], [RoomEvent::Reconnected { peer, .. }] if peer == at(1)),
        "{events:?}"
    );
    assert!(matches!(
        mesh.take_events(1)[..],
        [RoomEvent::Reconnected { .. }]
    ));
    let all: Vec<u16> = got.into_iter().chain(more).collect();
    assert_eq!(all, (0..300).collect::<Vec<_>>(), "exactly once, in order");
}

#[test]
fn after_a_migration_a_newcomer_cannot_claim_the_room_at_its_epoch_or_beyond() {
    let mut mesh = mesh_of(4);
    mesh.rooms[0] = None;
    mesh.run(4_200);
    let heir = lowest(1..4);
    // A newcomer whose id is lower than the new host's: at the same epoch it would win a tie
    // between two hosts, had it taken the room too; it did not.
    let liar = (5..200u128)
        .find(|n| peer(*n) < at(heir))
        .expect("a lower id");
    mesh.rooms.push(room(liar, Role::Joiner, open()));
    mesh.events.push(Vec::new());
    for i in 1..4 {
        mesh.link(i, 4);
    }
    mesh.run(200);
    for i in 1..5 {
        mesh.take_events(i);
    }
    for epoch in [1, 2, 3] {
        let claim = Control::Claim { epoch }.encode();
        let to = mesh.room(heir).local().id;
        let _ = mesh
            .room(4)
            .send(to, CONTROL_KIND, &claim, Delivery::Reliable);
    }
    mesh.run(50);
    assert_eq!(
        errors(&mesh.take_events(heir)),
        vec![PeerErrorKind::Violation(Violation::FalseHostClaim)]
    );
    let others: Vec<usize> = (1..4).filter(|i| *i != heir).collect();
    assert_hosted_by(&mut mesh, &[1, 2, 3], heir);
    for i in others {
        assert_eq!(
            mesh.take_events(i),
            vec![RoomEvent::Disconnected {
                peer: peer(liar),
                reason: DisconnectReason::Evicted
            }]
        );
    }
}

#[test]
fn a_snapshot_larger_than_the_send_window_reaches_the_heir_before_the_hand_over() {
    let mut mesh = mesh_of(3);
    let heir = lowest(1..3);
    // 200 KiB: many fragments, three times the in-flight window (a leaving host sends up to
    // four; a larger snapshot needs `hand_over`, its transfer done, then `leave`).
    let snapshot: Vec<u8> = (0..200 * 1024).map(|i| (i % 251) as u8).collect();
    mesh.room(0)
        .send(at(heir), 1, &snapshot, Delivery::Reliable)
        .unwrap();
    let now = mesh.now;
    mesh.room(0).leave(now);
    mesh.run(100);
    let events = mesh.take_events(heir);
    let summary: Vec<String> = events
        .iter()
        .map(|e| match e {
            RoomEvent::Message { payload, .. } => format!("message of {}", payload.len()),
            e => format!("{e:?}"),
        })
        .collect();
    assert!(
        matches!(&events[0], RoomEvent::Message { payload, .. } if payload[..] == snapshot[..]),
        "the whole snapshot first: {summary:?}"
    );
    assert_eq!(
        events[1],
        RoomEvent::HostMigrated {
            old: at(0),
            new: at(heir)
        }
    );
    assert_hosted_by(&mut mesh, &[1, 2], heir);
}
