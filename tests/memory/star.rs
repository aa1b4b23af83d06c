//! The star topology on the Bevy side, in memory: joiners (some there before the host) meet
//! the whole room through the host, `send`/`broadcast`/`send_to_host` keep working, the host's
//! game filters what it relays, an away joiner gets what was sent meanwhile, a mesh peer is
//! refused, and the room ends with its host.

use super::*;
use bevy_peer_message::internals::describe;

fn star() -> PeerMessagePlugin {
    PeerMessagePlugin::default().topology(Topology::Star)
}

/// Links each app's room has bound (its own sessions).
fn bound_links(app: &mut App) -> usize {
    describe(app.world_mut()).matches("bound to").count()
}

/// Two joiners first, then `host` (app 1), then the third joiner: everyone connected.
fn star_of_four(network: &MemoryNetwork, host: App) -> Vec<App> {
    let mut apps: Vec<App> = vec![host];
    apps.extend((2..=4).map(|n| app(network, n, star())));
    for app in &mut apps[1..3] {
        net(app, |n| n.join("room"));
    }
    let mut refs: Vec<&mut App> = apps.iter_mut().collect();
    run(network, &mut refs, SECOND / 2);
    net(&mut apps[0], |n| n.host("room"));
    apps[0].update();
    let mut refs: Vec<&mut App> = apps.iter_mut().collect();
    run(network, &mut refs, SECOND / 2);
    net(&mut apps[3], |n| n.join("room"));
    let mut refs: Vec<&mut App> = apps.iter_mut().collect();
    run_until(network, &mut refs, 5 * SECOND, "star", |apps| {
        apps.iter()
            .all(|app| inbox::<PeerConnected>(app).len() == 3)
    });
    apps
}

fn senders(app: &App) -> Vec<(PeerId, u32)> {
    inbox::<Received<Numbered>>(app)
        .iter()
        .map(|r| (r.from, r.message.0))
        .collect()
}

#[test]
fn joiners_meet_the_whole_room_through_the_host_and_send_and_broadcast_keep_working() {
    let network = MemoryNetwork::default();
    let mut apps = star_of_four(&network, app(&network, 1, star()));
    assert_eq!(
        bound_links(&mut apps[0]),
        3,
        "the host links to every joiner"
    );
    for (i, app) in apps.iter_mut().enumerate().skip(1) {
        assert_eq!(bound_links(app), 1, "app {}: only to the host", i + 1);
        assert_eq!(net_peers(app), 3, "app {}: a Peer for everyone", i + 1);
        assert_eq!(net(app, |n| n.peers().count()), 3);
        assert_eq!(net(app, |n| n.host_id()), Some(pid(1)));
        assert_eq!(state(app), ConnectionState::Connected);
    }
    for n in 0..50 {
        net(&mut apps[1], |net| net.send(pid(3), Numbered(n)));
    }
    net(&mut apps[2], |net| net.broadcast(Numbered(100)));
    net(&mut apps[3], |net| net.send_to_host(Numbered(200)));
    net(&mut apps[0], |net| net.send(pid(4), Numbered(300)));
    let mut refs: Vec<&mut App> = apps.iter_mut().collect();
    run(&network, &mut refs, SECOND / 2);
    assert_eq!(
        senders(&apps[2]),
        (0..50).map(|n| (pid(2), n)).collect::<Vec<_>>()
    );
    assert_eq!(senders(&apps[1]), vec![(pid(3), 100)]);
    // (Order holds per sender; a relayed message takes one hop more than the host's own.)
    let mut four = senders(&apps[3]);
    four.sort();
    let mut want = vec![(pid(3), 100), (pid(1), 300)];
    want.sort();
    assert_eq!(four, want);
    assert_eq!(senders(&apps[0]), vec![(pid(3), 100), (pid(4), 200)]);
    let all: Vec<&App> = apps.iter().collect();
    assert_no_errors(&all);
}

#[test]
fn the_hosts_game_filters_what_it_relays() {
    let network = MemoryNetwork::default();
    let mut host = app(&network, 1, star());
    host.filter_relayed::<Numbered>(|r: &Relayed<Numbered>| r.message.0.is_multiple_of(2));
    let mut apps = star_of_four(&network, host);
    for n in 0..10 {
        net(&mut apps[1], |net| net.broadcast(Numbered(n)));
        net(&mut apps[1], |net| net.send(pid(4), Numbered(n + 100)));
    }
    let mut refs: Vec<&mut App> = apps.iter_mut().collect();
    run(&network, &mut refs, SECOND / 2);
    assert_eq!(
        numbers(&apps[2]),
        vec![0, 2, 4, 6, 8],
        "only what the filter let by"
    );
    assert_eq!(
        numbers(&apps[3]),
        vec![0, 100, 2, 102, 4, 104, 6, 106, 8, 108],
        "in order"
    );
    assert_eq!(
        numbers(&apps[0]),
        (0..10).collect::<Vec<_>>(),
        "the host's own copies, whatever the filter says"
    );
}

#[test]
fn an_away_joiner_gets_what_was_sent_to_it_meanwhile_and_the_others_see_it_come_back() {
    let network = MemoryNetwork::default();
    let mut apps = star_of_four(&network, app(&network, 1, star()));
    network.set_online(pid(4), false);
    for n in 0..20 {
        net(&mut apps[1], |net| net.send(pid(4), Numbered(n)));
    }
    let mut refs: Vec<&mut App> = apps.iter_mut().collect();
    run(&network, &mut refs, 2 * SECOND);
    for n in 20..40 {
        net(&mut apps[1], |net| net.send(pid(4), Numbered(n)));
    }
    assert!(
        inbox::<PeerReconnecting>(&apps[2])
            .iter()
            .any(|r| r.peer == pid(4)),
        "a fellow joiner hears it is away"
    );
    network.set_online(pid(4), true);
    let mut refs: Vec<&mut App> = apps.iter_mut().collect();
    run_until(&network, &mut refs, 5 * SECOND, "back", |apps| {
        numbers(apps[3]).len() >= 40
    });
    assert_eq!(numbers(&apps[3]), (0..40).collect::<Vec<_>>());
    assert!(
        inbox::<PeerReconnected>(&apps[2])
            .iter()
            .any(|r| r.peer == pid(4))
    );
    for app in &apps {
        assert!(inbox::<PeerDisconnected>(app).is_empty());
    }
}

#[test]
fn a_mesh_peer_is_refused_by_a_star_room() {
    let network = MemoryNetwork::default();
    let mut host = app(&network, 1, star());
    let mut joiner = app(&network, 2, PeerMessagePlugin::default());
    net(&mut host, |n| n.host("room"));
    host.update();
    net(&mut joiner, |n| n.join("room"));
    run_until(
        &network,
        &mut [&mut host, &mut joiner],
        3 * SECOND,
        "refusal",
        |a| !inbox::<PeerError>(a[1]).is_empty(),
    );
    let errors = inbox::<PeerError>(&joiner);
    assert!(
        matches!(errors[0].error, PeerErrorKind::ProtocolMismatch { .. }),
        "{errors:?}"
    );
    assert!(inbox::<PeerConnected>(&host).is_empty());
}

#[test]
fn a_star_room_does_not_migrate_and_ends_with_its_host() {
    let network = MemoryNetwork::default();
    let mut apps = star_of_four(&network, app(&network, 1, star()));
    net(&mut apps[0], |n| n.hand_over(pid(2)));
    let mut refs: Vec<&mut App> = apps.iter_mut().collect();
    run(&network, &mut refs, SECOND / 2);
    assert_eq!(
        net(&mut apps[0], |n| n.role()),
        Some(Role::Host),
        "no hand-over"
    );
    net(&mut apps[0], |n| n.leave());
    let mut refs: Vec<&mut App> = apps.iter_mut().collect();
    run(&network, &mut refs, SECOND);
    for app in &mut apps[1..] {
        assert!(inbox::<HostMigrated>(app).is_empty());
        let gone: Vec<PeerId> = inbox::<PeerDisconnected>(app)
            .iter()
            .map(|d| d.peer)
            .collect();
        assert_eq!(gone.len(), 3, "the host and, with it, the others: {gone:?}");
        assert_eq!(net_peers(app), 0);
    }
}

#[test]
fn a_star_room_takes_more_joiners_by_default_than_a_mesh() {
    let network = MemoryNetwork::default();
    let mut apps: Vec<App> = (1..=41).map(|n| app(&network, n, star())).collect();
    net(&mut apps[0], |n| n.host("big"));
    apps[0].update();
    for app in &mut apps[1..] {
        net(app, |n| n.join("big"));
    }
    let mut refs: Vec<&mut App> = apps.iter_mut().collect();
    run_until(&network, &mut refs, 5 * SECOND, "a room of 41", |apps| {
        apps.iter()
            .all(|app| inbox::<PeerConnected>(app).len() == 40)
    });
    net(&mut apps[40], |net| net.broadcast(Numbered(7)));
    let mut refs: Vec<&mut App> = apps.iter_mut().collect();
    run(&network, &mut refs, SECOND / 2);
    for (i, app) in apps.iter().enumerate().take(40) {
        assert_eq!(numbers(app), vec![7], "app {}", i + 1);
    }
    let all: Vec<&App> = apps.iter().collect();
    assert_no_errors(&all);
}

#[test]
fn after_the_hosts_outage_every_joiner_resumes_and_nothing_is_lost() {
    let network = MemoryNetwork::default();
    let mut apps = star_of_four(&network, app(&network, 1, star()));
    network.set_online(pid(1), false);
    for n in 0..20 {
        net(&mut apps[1], |net| net.send(pid(3), Numbered(n)));
    }
    let mut refs: Vec<&mut App> = apps.iter_mut().collect();
    run(&network, &mut refs, 3 * SECOND);
    for n in 20..40 {
        net(&mut apps[1], |net| net.send(pid(3), Numbered(n)));
    }
    network.set_online(pid(1), true);
    let mut refs: Vec<&mut App> = apps.iter_mut().collect();
    run_until(&network, &mut refs, 10 * SECOND, "resumed", |apps| {
        numbers(apps[2]).len() >= 40
            && apps[1..]
                .iter()
                .all(|a| !inbox::<PeerReconnected>(a).is_empty())
    });
    assert_eq!(numbers(&apps[2]), (0..40).collect::<Vec<_>>());
    for app in &apps {
        assert!(inbox::<PeerDisconnected>(app).is_empty());
    }
    for app in &mut apps[1..] {
        assert_eq!(bound_links(app), 1, "one connection, to the host");
    }
}
