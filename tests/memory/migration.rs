//! Host migration on the Bevy side, in memory: the game's view of a host that vanishes and of
//! one that hands over a snapshot and leaves (roles, `host_id`, `send_to_host`, states, peer
//! components), and a newcomer admitted by the new host.

use super::*;

/// A host (app 1) and three joiners (apps 2, 3, 4), all connected to all.
fn room_of_four(network: &MemoryNetwork) -> Vec<App> {
    let mut apps: Vec<App> = (1..=4)
        .map(|n| app(network, n, PeerMessagePlugin::default()))
        .collect();
    net(&mut apps[0], |n| n.host("room"));
    apps[0].update();
    for app in &mut apps[1..] {
        net(app, |n| n.join("room"));
    }
    let mut refs: Vec<&mut App> = apps.iter_mut().collect();
    run_until(network, &mut refs, 3 * SECOND, "mesh", |apps| {
        apps.iter()
            .all(|app| inbox::<PeerConnected>(app).len() == 3)
    });
    apps
}

fn role_of(app: &App, peer: PeerId) -> Option<Role> {
    app.world()
        .iter_entities()
        .filter_map(|e| e.get::<Peer>().copied())
        .find(|p| p.id == peer)
        .map(|p| p.role)
}

#[test]
fn a_host_gone_for_good_is_succeeded_and_the_game_goes_on() {
    let network = MemoryNetwork::default();
    let mut apps = room_of_four(&network);
    let heir = (2..=4).min_by_key(|n| pid(*n)).expect("three joiners");
    let old = apps.remove(0);
    // The host's machine dies: it never speaks again.
    network.set_online(pid(1), false);
    drop(old);
    let mut refs: Vec<&mut App> = apps.iter_mut().collect();
    run_until(&network, &mut refs, 6 * SECOND, "migration", |apps| {
        apps.iter().all(|a| !inbox::<HostMigrated>(a).is_empty())
    });
    run(&network, &mut refs, SECOND / 2);
    let migrated = HostMigrated {
        old: pid(1),
        new: pid(heir),
    };
    for (i, app) in apps.iter_mut().enumerate() {
        let n = i as u128 + 2;
        assert_eq!(inbox::<HostMigrated>(app), vec![migrated], "app {n}");
        assert_eq!(net(app, |n| n.host_id()), Some(pid(heir)), "app {n}");
        if n == heir {
            assert_eq!(net(app, |n| n.role()), Some(Role::Host));
            assert_eq!(state(app), ConnectionState::Connected, "signaling is up");
        } else {
            assert_eq!(net(app, |n| n.role()), Some(Role::Joiner));
            assert_eq!(role_of(app, pid(heir)), Some(Role::Host));
            assert_eq!(state(app), ConnectionState::Connected);
            net(app, |net| net.send_to_host(Numbered(n as u32)));
        }
        assert_eq!(role_of(app, pid(1)), Some(Role::Joiner), "app {n}");
        assert!(inbox::<PeerDisconnected>(app).is_empty(), "app {n}");
    }
    let mut refs: Vec<&mut App> = apps.iter_mut().collect();
    run(&network, &mut refs, SECOND / 2);
    let heir_app = &apps[heir as usize - 2];
    let mut got = numbers(heir_app);
    got.sort();
    let expected: Vec<u32> = (2..=4).filter(|n| *n != heir as u32).collect();
    assert_eq!(got, expected, "send_to_host reaches the new host");

    // A newcomer joins the room the new host holds now.
    let mut newcomer = app(&network, 5, PeerMessagePlugin::default());
    net(&mut newcomer, |n| n.join("room"));
    apps.push(newcomer);
    let mut refs: Vec<&mut App> = apps.iter_mut().collect();
    run_until(&network, &mut refs, 3 * SECOND, "newcomer", |apps| {
        inbox::<PeerConnected>(apps[3]).len() == 3
            && apps[..3]
                .iter()
                .all(|a| inbox::<PeerConnected>(a).len() == 4)
    });
    let newcomer = &mut apps[3];
    assert_eq!(state(newcomer), ConnectionState::Connected);
    assert_eq!(net(newcomer, |n| n.host_id()), Some(pid(heir)));
    // The old host's session runs out with the resume timeout; nobody leaves the room over it.
    let mut refs: Vec<&mut App> = apps.iter_mut().collect();
    run(&network, &mut refs, 31 * SECOND);
    for app in &apps[..3] {
        assert_eq!(
            inbox::<PeerDisconnected>(app),
            vec![PeerDisconnected {
                peer: pid(1),
                reason: DisconnectReason::Timeout
            }]
        );
        assert_ne!(state(app), ConnectionState::Offline);
    }
    assert_no_errors(&apps.iter().collect::<Vec<_>>());
}

#[test]
fn a_host_hands_its_successor_a_snapshot_and_leaves() {
    let network = MemoryNetwork::default();
    let mut apps = room_of_four(&network);
    let heir = 3;
    net(&mut apps[0], |n| {
        n.send(pid(heir), Numbered(99));
        n.hand_over(pid(heir));
        n.leave();
    });
    let mut refs: Vec<&mut App> = apps.iter_mut().collect();
    run_until(&network, &mut refs, SECOND, "hand-over", |apps| {
        let heir_app = &apps[heir as usize - 1];
        if !inbox::<HostMigrated>(heir_app).is_empty() && !numbers(heir_app).contains(&99) {
            // (Checked in every frame: the snapshot is never behind the hand-over.)
            return true;
        }
        apps[1..]
            .iter()
            .all(|a| !inbox::<HostMigrated>(a).is_empty())
    });
    assert_eq!(
        numbers(&apps[heir as usize - 1]),
        vec![99],
        "the snapshot came with or before the hand-over"
    );
    let migrated = HostMigrated {
        old: pid(1),
        new: pid(heir),
    };
    let mut refs: Vec<&mut App> = apps.iter_mut().collect();
    run(&network, &mut refs, SECOND / 10);
    assert_eq!(inbox::<HostMigrated>(&apps[0]), vec![migrated]);
    assert_eq!(state(&apps[0]), ConnectionState::Offline);
    for (i, app) in apps.iter_mut().enumerate().skip(1) {
        let n = i as u128 + 1;
        assert_eq!(inbox::<HostMigrated>(app), vec![migrated], "app {n}");
        assert_eq!(
            inbox::<PeerDisconnected>(app),
            vec![PeerDisconnected {
                peer: pid(1),
                reason: DisconnectReason::Left
            }],
            "app {n}"
        );
        assert_eq!(net(app, |n| n.host_id()), Some(pid(heir)), "app {n}");
        assert_eq!(state(app), ConnectionState::Connected, "app {n}");
    }
    assert_eq!(net(&mut apps[2], |n| n.role()), Some(Role::Host));
    assert_no_errors(&apps.iter().collect::<Vec<_>>());
}

#[test]
fn without_migration_the_room_ends_with_its_host() {
    let network = MemoryNetwork::default();
    let plugin = || PeerMessagePlugin::default().host_grace(None).rejoin(false);
    let mut host = app(&network, 1, plugin());
    let mut a = app(&network, 2, plugin());
    let mut b = app(&network, 3, plugin());
    net(&mut host, |n| n.host("room"));
    host.update();
    net(&mut a, |n| n.join("room"));
    net(&mut b, |n| n.join("room"));
    run_until(
        &network,
        &mut [&mut host, &mut a, &mut b],
        2 * SECOND,
        "mesh",
        |apps| apps.iter().all(|a| inbox::<PeerConnected>(a).len() == 2),
    );
    net(&mut host, |n| n.leave());
    run(&network, &mut [&mut host, &mut a, &mut b], SECOND);
    for app in [&a, &b] {
        assert!(inbox::<HostMigrated>(app).is_empty());
        assert_eq!(state(app), ConnectionState::Offline);
    }
}
